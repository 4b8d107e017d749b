"""Before deploy applies anything: does the API server serve every kind the overlay renders?

A fresh Minikube has no cert-manager, Prometheus operator or KEDA; applying anyway would stop
at the first custom resource with a client exception, half applied. Instead each missing API
group is named with what to install and which components of the overlay to leave out.

Kinds the overlay does not render but inferlab uses later are :data:`OPTIONAL`: a missing one is
a note, not a problem (deploy goes on). The k6-operator's TestRun is one: ``--in-cluster`` runs
k6 as a TestRun where the cluster serves it, else as a plain Indexed Job (load/incluster.py).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ..kube import K6_OPERATOR_INSTALL, K6_OPERATOR_KIND, serves
from .render import platform_dir

# API group -> what serves it. Helm charts: the usual install; pin --version for repeatable setups.
INSTALL = {
    "cert-manager.io": "cert-manager (helm install cert-manager jetstack/cert-manager -n cert-manager "
                       "--create-namespace --set crds.enabled=true)",
    "monitoring.coreos.com": "the Prometheus operator, e.g. kube-prometheus-stack (helm install kps "
                             "prometheus-community/kube-prometheus-stack -n monitoring --create-namespace; "
                             "docs/kubernetes.md: the values inferlab needs)",
    "keda.sh": "KEDA (helm install keda kedacore/keda -n keda --create-namespace)",
    "k6.io": K6_OPERATOR_INSTALL,
}
# kind -> what it is for, when the cluster lacks it (deploy notes it and goes on)
OPTIONAL = {K6_OPERATOR_KIND: "`--in-cluster` runs each cell's k6 as a plain Indexed Job instead of a "
                              "k6-operator TestRun (docs/kubernetes.md#in-cluster-load)"}


def group_of(api_version: str) -> str:
    return api_version.rpartition("/")[0]  # "" for the core group (v1)


def kinds_of(docs: list[dict]) -> list[tuple[str, str]]:
    """(apiVersion, kind) pairs, each once, in order of first appearance."""
    return list(dict.fromkeys((d["apiVersion"], d["kind"]) for d in docs))


def unserved(dyn, kinds: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The kinds the API server does not serve, asked through the client's discovery
    (``dyn.resources.get``); errors other than "not found" (network, auth) propagate."""
    return [(api_version, kind) for api_version, kind in kinds if not serves(dyn, api_version, kind)]


def component_kinds() -> dict[str, set[tuple[str, str]]]:
    """component name -> (apiVersion, kind) of the objects it adds (its ``resources`` files)."""
    out = {}
    for k in sorted((platform_dir() / "components").glob("*/kustomization.yaml")):
        kinds = set()
        for r in yaml.safe_load(k.read_text()).get("resources", []):
            if (k.parent / r).is_file():
                kinds |= {(d["apiVersion"], d["kind"]) for d in yaml.safe_load_all((k.parent / r).read_text()) if d}
        out[k.parent.name] = kinds
    return out


def components_in(overlay: str) -> dict[str, Path]:
    """Components the overlay uses, directly or through what it builds on -> the
    kustomization file that lists each."""
    found: dict[str, Path] = {}

    def walk(d: Path) -> None:
        k = d / "kustomization.yaml"
        if not k.is_file():
            return
        spec = yaml.safe_load(k.read_text()) or {}
        for c in spec.get("components", []):
            found.setdefault((d / c).resolve().name, k)
        for r in spec.get("resources", []):
            if (d / r).is_dir():
                walk((d / r).resolve())

    walk((platform_dir() / "overlays" / overlay).resolve())
    return found


def _shown(path: Path) -> str:
    """``platform/...`` for files in the platform tree, else the full path."""
    root = platform_dir().resolve().parent
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def preflight(dyn, docs: list[dict], overlay: str) -> list[str]:
    """Problem lines, one per API group the cluster lacks ([] when everything is served)."""
    missing = unserved(dyn, kinds_of(docs))
    used, provides = components_in(overlay), component_kinds()
    by_group: dict[str, list[tuple[str, str]]] = {}
    for api_version, kind in missing:
        by_group.setdefault(group_of(api_version), []).append((api_version, kind))
    lines = []
    for group, kinds in by_group.items():
        names = ", ".join(f"{kind} ({api_version})" for api_version, kind in kinds)
        install = INSTALL.get(group, f"whatever serves the API group {group or 'core'!r}")
        comps = sorted(c for c in used if provides.get(c, set()) & set(kinds))
        files = sorted({_shown(used[c]) for c in comps})
        leave_out = (f"; or leave out component{'s' if len(comps) > 1 else ''} {', '.join(comps)} "
                     f"(the `components:` list of {', '.join(files)})") if comps else ""
        lines.append(f"{names}: not served by this cluster; install {install}{leave_out}")
    return lines


def optional_notes(dyn) -> list[str]:
    """Note lines, one per :data:`OPTIONAL` kind the cluster does not serve: what changes, and
    what to install for it."""
    return [f"{kind} ({api_version}): not served by this cluster: {OPTIONAL[(api_version, kind)]}; "
            f"install {INSTALL[group_of(api_version)]} for it"
            for api_version, kind in unserved(dyn, list(OPTIONAL))]
