"""Checks on rendered objects that need only the main dependencies, so ``inferlab deploy`` runs
them before applying: policy, cross-object consistency, the project's custom-resource schemas,
and no plaintext Secret in git. ``make validate`` adds Kubernetes schemas and promtool.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ..formats.edge_log import INGRESS_CONFIGMAP, INGRESS_CONTROLLER_DIR, edge_log_source
from ..offline import K6_ENV, VLLM_ENV
from ..paths import platform_dir
from .render import is_vllm_image, pod_containers, split_image
from .schema import validator
from .tracing import tracing_errors

SCHEMAS = Path(__file__).with_name("schemas")
REQUIRED_LABELS = ("app.kubernetes.io/part-of", "app.kubernetes.io/managed-by")
CLUSTER_SCOPED = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "ClusterIssuer",
                  "StorageClass", "IngressClass", "PriorityClass", "PersistentVolume"}
SECRETISH = ("KEY", "TOKEN", "PASSWORD", "SECRET")
ISSUER_ANNOTATIONS = {"cert-manager.io/issuer", "cert-manager.io/cluster-issuer"}
LONG_RUNNING = ("Deployment", "StatefulSet", "DaemonSet")  # their regular containers need probes
K6_IMAGE_REPO = "grafana/k6"


def _where(doc: dict) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def container_errors(where: str, c: dict, probes: bool, k6: bool = False) -> list[str]:
    """Pinned image, requests and limits, the three probes (``probes``), no literal secret,
    for vLLM images the usage-statistics opt-out (every variable of offline.VLLM_ENV, the
    same list the local engine gets), and for k6 images or ``k6`` (a k6-operator pod) k6's
    (offline.K6_ENV)."""
    image, name = c.get("image", ""), c.get("name")
    repo, tag, digest = split_image(image)
    errs = []
    if not digest and (not tag or tag.startswith("latest")):  # latest, and floating ones like the k6-operator's latest-starter
        errs.append(f"{where}: container {name} image {image!r} must be pinned to a tag (not latest)")
    res = c.get("resources", {})
    if not res.get("requests") or not res.get("limits"):
        errs.append(f"{where}: container {name} needs resource requests and limits")
    if probes:
        errs += [f"{where}: container {name} has no {p}" for p in ("startupProbe", "readinessProbe", "livenessProbe")
                 if p not in c]
    env = c.get("env", [])
    errs += [f"{where}: env {e['name']} holds a literal; use secretKeyRef" for e in env
             if any(s in e["name"].upper() for s in SECRETISH) and "value" in e]
    if is_vllm_image(image):
        have = {e["name"]: e.get("value") for e in env}
        errs += [f"{where}: container {name} runs vLLM without {k}={v} (offline.VLLM_ENV: no usage reports)"
                 for k, v in VLLM_ENV.items() if have.get(k) != v]
    if k6 or repo == K6_IMAGE_REPO:
        have = {e["name"]: e.get("value") for e in env}
        errs += [f"{where}: {name} runs without {k}={v} (offline.K6_ENV: k6 sends no usage report)"
                 for k, v in K6_ENV.items() if have.get(k) != v]
    return errs


def policy_errors(doc: dict) -> list[str]:
    """Standard labels, a namespace on namespaced kinds, and :func:`container_errors` for every
    container of a workload, bare Pod or k6-operator TestRun (probes on long-running workloads'
    regular containers only; k6's no-usage-report switch on every pod a TestRun makes)."""
    where, meta = _where(doc), doc.get("metadata", {})
    errs = [f"{where}: missing label {label}" for label in REQUIRED_LABELS if label not in (meta.get("labels") or {})]
    if doc.get("kind") not in CLUSTER_SCOPED and not meta.get("namespace"):
        errs.append(f"{where}: no namespace (overlays set `namespace:` so component objects get it)")
    pod = doc.get("spec", {}).get("template", {}).get("spec") or {}
    regular = pod.get("containers", [])
    for c in pod_containers(doc):
        errs += container_errors(where, c, probes=doc["kind"] in LONG_RUNNING and c in regular,
                                 k6=doc["kind"] == "TestRun")
    return errs


def tls_errors(docs: list[dict]) -> list[str]:
    """With a cert-manager issuer in the overlay, every Ingress has a tls section and names the
    issuer (the tls component patches Ingresses by name: listed before `ui`, it misses one)."""
    issuers = [d for d in docs if d.get("kind") in ("Issuer", "ClusterIssuer")]
    if not issuers:
        return []
    errs = []
    for d in docs:
        if d.get("kind") == "Ingress":
            notes = set(d["metadata"].get("annotations") or {})
            if not d.get("spec", {}).get("tls") or not ISSUER_ANNOTATIONS & notes:
                errs.append(f"{_where(d)}: no TLS although the overlay has {_where(issuers[0])} "
                            "(list the tls component after ui)")
    return errs


def custom_schema_errors(doc: dict) -> list[str] | None:
    """Errors against ``schemas/<Kind>.json``; None when the project keeps no schema for the kind."""
    f = SCHEMAS / f"{doc.get('kind')}.json"
    if not f.is_file():
        return None
    v = validator(f)
    return [f"{_where(doc)}: {'.'.join(map(str, e.path))}: {e.message}" for e in v.iter_errors(doc)]


def plaintext_secret_errors() -> list[str]:
    """No Secret object with data in tracked platform files: secrets come from the generator."""
    errs = []
    for f in platform_dir().rglob("*.yaml"):
        for doc in yaml.safe_load_all(f.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "Secret" and (doc.get("data") or doc.get("stringData")):
                errs.append(f"{f}: a Secret with data is committed; use a secretGenerator on platform/secrets/values/")
    return errs


def deploy_errors(docs: list[dict]) -> list[str]:
    """What deploy checks before applying: policy, TLS consistency, project CR schemas, the
    tracing component's Collector configuration and wiring."""
    return ([e for d in docs for e in policy_errors(d) + (custom_schema_errors(d) or [])] + tls_errors(docs)
            + tracing_errors(docs))


def ingress_controller_errors(docs: list[dict]) -> list[str]:
    """The built controller kustomization: exactly the controller's ConfigMap, in a namespace
    other than inferlab's, JSON-escaped, and with the log format and time maps of the one
    source (a kustomize patch must not make the cluster's log differ from the local edge's)."""
    cms = [d for d in docs if d.get("kind") == "ConfigMap" and d["metadata"].get("name") == INGRESS_CONFIGMAP]
    if len(cms) != 1:
        return [f"expected one ConfigMap/{INGRESS_CONFIGMAP}, found {len(cms)}"]
    cm, errs = cms[0], []
    where = f"ConfigMap/{INGRESS_CONFIGMAP}"
    if cm["metadata"].get("namespace") in (None, "inferlab"):
        errs.append(f"{where}: namespace {cm['metadata'].get('namespace')!r}: it belongs in the controller's namespace")
    data = cm.get("data") or {}
    if data.get("log-format-escape-json") != "true":
        errs.append(f'{where}: log-format-escape-json must be "true" (request ids and URIs are JSON-escaped)')
    for key, want in edge_log_source().items():
        if data.get(key) != want:
            errs.append(f"{where}: {key} differs from the local edge's (platform/{INGRESS_CONTROLLER_DIR}/"
                        f"{INGRESS_CONFIGMAP}-configmap.yaml)")
    return errs
