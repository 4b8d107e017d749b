"""Write measured results back as kustomize components in ``platform/components/<name>/``.

- :func:`write_engine_component`: a tune's winner. Like ``engine-tuned``, a strategic-merge
  patch on container ``vllm`` (by name) that gives the whole argument list: the overlay's own
  arguments with the searched flags removed and the winner's flags added, so what runs is read
  in one place. The header names each flag it changes against that overlay and where the
  winner came from.
- :func:`write_autoscale_component`: a KEDA ScaledObject whose trigger and threshold come from
  a capacity run (analysis/plan.py ``autoscale_trigger``); the header says which run, which
  steps and what value. Use it instead of ``autoscale`` (both name the ScaledObject ``vllm``).

Each is validated before it is kept (:func:`validate_component`): in a temporary copy of
platform/ (throwaway secret inputs), an overlay of ``resources: [../<overlay>]`` plus the
component is built with plain ``kubectl kustomize`` and checked by ``inferlab.platform.validate``
(schemas, policy, PromQL names); a component that fails is removed and the error raised.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

from ..credentials import create_private
from ..platform.render import SECRET_INPUTS, engine_of, platform_dir
from ..specs.tune import engine_args
from ..tools import find_tool

WRITTEN = "Written by inferlab (sweep/components.py); regenerate rather than edit."
VALIDATED_WITH = re.compile(r"^# Validated with overlay '([^']+)'", re.M)


def eq_form(args: list[str]) -> list[str]:
    """``["--a", "1", "--b"]`` -> ``["--a=1", "--b"]``: the platform's spelling of flags."""
    out: list[str] = []
    for a in args:
        if out and not a.startswith("--") and out[-1].startswith("--") and "=" not in out[-1]:
            out[-1] = f"{out[-1]}={a}"
        else:
            out.append(a)
    return out


def _comment(lines: list[str]) -> str:
    return "".join(f"# {ln}\n" for ln in lines)


def _flag_diff(before: list[str], after: list[str]) -> list[str]:
    added = [a for a in after if a not in before]
    removed = [a for a in before if a not in after]
    return [f"sets {a}" for a in added] + [f"drops {a}" for a in removed]


def engine_component_text(overlay_args: list[str], space: dict, point: dict, provenance: list[str],
                          overlay: str) -> tuple[str, list[str]]:
    """(kustomization.yaml text, the vllm args it sets) for a winner."""
    args = eq_form(engine_args(space, eq_form(overlay_args), point))
    changes = _flag_diff(eq_form(overlay_args), args) or ["nothing: the winner's flags equal the overlay's"]
    head = [WRITTEN, f"Validated with overlay {overlay!r}.", *provenance,
            f"Against overlay {overlay!r}, this component {changes[0]}", *[f"  and {c}" for c in changes[1:]],
            "The vllm container's whole argument list, by container name (see engine-baseline)."]
    patch = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "vllm"},
             "spec": {"template": {"spec": {"containers": [{"name": "vllm", "args": args}]}}}}
    body = yaml.safe_dump(patch, sort_keys=False, default_flow_style=False).rstrip("\n")
    text = (_comment(head) + "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\npatches:\n"
            "  - target: {kind: Deployment, name: vllm}\n    patch: |-\n"
            + "".join(f"      {ln}\n" for ln in body.splitlines()))
    return text, args


def write_engine_component(name: str, overlay: str, space: dict, point: dict, provenance: list[str],
                           root: Path | None = None) -> Path:
    """``<root>/components/<name>/kustomization.yaml`` for a winner, validated; returns the folder."""
    root = root or platform_dir()
    overlay_args = engine_of(build_with(root, overlay))["args"]
    text, args = engine_component_text(overlay_args, space, point, provenance, overlay)
    d = root / "components" / name
    _write(d, {"kustomization.yaml": text})
    _validated(d, root, overlay, expect_args=args)
    return d


def scaledobject(query: str, threshold: float, metric_type: str | None, min_replicas: int = 1,
                 max_replicas: int = 4) -> dict:
    trigger = {"type": "prometheus",
               "metadata": {"serverAddress": "http://prometheus-operated.monitoring.svc:9090", "query": query,
                            "threshold": f"{threshold:g}"}}
    if metric_type:
        trigger["metricType"] = metric_type
    return {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "vllm"},
            "spec": {"scaleTargetRef": {"name": "vllm"}, "minReplicaCount": min_replicas,
                     "maxReplicaCount": max_replicas, "cooldownPeriod": 300, "triggers": [trigger]}}


def write_autoscale_component(name: str, trigger, overlay: str = "tuned", root: Path | None = None,
                              max_replicas: int = 4) -> Path:
    """``<root>/components/<name>/`` with a ScaledObject from ``trigger`` (analysis.plan.Trigger)."""
    root = root or platform_dir()
    head = [WRITTEN, f"Validated with overlay {overlay!r}.",
            "Autoscaling on vLLM with KEDA's Prometheus scaler; needs KEDA and a Prometheus at",
            "prometheus-operated.monitoring.svc scraping vLLM. The trigger comes from a measurement:",
            *trigger.origin_lines()]
    so = scaledobject(trigger.query, trigger.threshold, trigger.metric_type, max_replicas=max_replicas)
    files = {"kustomization.yaml": _comment(head) + "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\n"
                                   "resources:\n  - vllm-scaledobject.yaml\n",
             "vllm-scaledobject.yaml": _comment(trigger.origin_lines()) + yaml.safe_dump(so, sort_keys=False)}
    d = root / "components" / name
    _write(d, files)
    _validated(d, root, overlay)
    return d


def written_components(root: Path | None = None) -> dict[str, str]:
    """{component name: the overlay it was validated with} of every component this module wrote."""
    out = {}
    for k in sorted((root or platform_dir()).glob("components/*/kustomization.yaml")):
        m = VALIDATED_WITH.search(k.read_text())
        if WRITTEN in k.read_text() and m:
            out[k.parent.name] = m.group(1)
    return out


def _write(d: Path, files: dict[str, str]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for fname, text in files.items():
        (d / fname).write_text(text)


def _validated(d: Path, root: Path, overlay: str, expect_args: list[str] | None = None) -> None:
    errors = validate_component(d.name, overlay, root, expect_args)
    if errors:
        shutil.rmtree(d)
        raise ValueError(f"component {d} failed validation (removed):\n  " + "\n  ".join(errors))


def build_with(root: Path, overlay: str, component: str | None = None) -> list[dict]:
    """Plain ``kubectl kustomize`` of ``overlay`` (+ ``component``) in a temporary copy of ``root``
    with throwaway secret inputs (the checkout is never written); RuntimeError when it fails."""
    with tempfile.TemporaryDirectory(prefix="inferlab-component-") as tmp:
        tree = Path(tmp) / "platform"
        shutil.copytree(root, tree, ignore=lambda src, names: ["values"] if Path(src) == root / "secrets" else [])
        (tree / "secrets" / "values").mkdir(mode=0o700)
        for secret in SECRET_INPUTS:
            create_private(tree / "secrets" / "values" / secret, "throwaway-for-validation")
        check = tree / "overlays" / "inferlab-component-check"
        check.mkdir()
        (check / "kustomization.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "namespace": "inferlab",
            "labels": [{"pairs": {"app.kubernetes.io/part-of": "inferlab", "app.kubernetes.io/managed-by": "inferlab"},
                        "includeSelectors": False}],  # as every overlay does (platform/overlays/*)
            "resources": [f"../{overlay}"], "components": [f"../../components/{component}"] if component else []}))
        proc = subprocess.run([find_tool("kubectl"), "kustomize", str(check)], capture_output=True, text=True)
    if proc.returncode != 0:
        what = f"overlay {overlay!r}" + (f" + component {component!r}" if component else "")
        raise RuntimeError(f"kustomize build of {what} failed: {proc.stderr[-1500:]}")
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def validate_component(name: str, overlay: str, root: Path | None = None,
                       expect_args: list[str] | None = None) -> list[str]:
    """Errors of ``overlay`` + component ``name`` (module docstring); [] when it is valid."""
    from ..platform.validate import overlay_errors  # a dev dependency (kubernetes-validate): only here

    try:
        docs = build_with(root or platform_dir(), overlay, name)
    except RuntimeError as exc:
        return [str(exc)]
    errors = overlay_errors(f"{overlay}+{name}", docs)
    if expect_args is not None:
        got = engine_of(docs)["args"]
        if got != expect_args:
            errors.append(f"vllm args after the component are {got}, expected {expect_args}")
    return errors
