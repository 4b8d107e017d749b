"""Deploy an overlay with the kubernetes Python client: offline checks, a preflight that the
cluster serves every kind the overlay uses (and a note for each optional one it lacks, such as
the k6-operator's TestRun), server-side apply in dependency order, rollout wait
with progress and a timeout, diagnostics into a run directory on failure.

Where no cluster is reachable it renders and checks the overlay, says so, and stops cleanly
(exit 0 with ``--dry-run``, 3 otherwise). Deploy runs the checks that need only the main
dependencies (checks.py); ``make validate`` adds the Kubernetes schemas and promtool. The
rendered objects hold the API key (the Secret); they are applied from memory and never written
to disk or printed.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from .. import paths
from ..kube import apply, cluster_client
from .checks import deploy_errors
from .preflight import group_of, optional_notes, preflight
from .render import engine_container, kustomize_build, missing_secret_inputs, secret_inputs_dir

NO_CLUSTER = 3
MISSING_PREREQUISITES = 4
# built-in API groups; anything else is a custom resource, which needs its CRD first
BUILTIN_GROUPS = {"", "apps", "batch", "autoscaling", "policy", "networking.k8s.io", "rbac.authorization.k8s.io",
                  "storage.k8s.io", "apiextensions.k8s.io", "scheduling.k8s.io", "coordination.k8s.io",
                  "discovery.k8s.io", "admissionregistration.k8s.io", "certificates.k8s.io", "node.k8s.io"}
# built-in kinds in apply order: namespaces and CRDs, then config, services, workloads, routing
BUILTIN_ORDER = ["Namespace", "CustomResourceDefinition", "ServiceAccount", "Role", "RoleBinding", "Secret",
                 "ConfigMap", "PersistentVolumeClaim", "Service", "Deployment", "StatefulSet", "DaemonSet", "Job",
                 "Ingress"]


def apply_rank(doc: dict) -> tuple[int, int]:
    """Known built-in kinds in BUILTIN_ORDER, then other built-in kinds, then custom resources
    (Issuer, ServiceMonitor, ScaledObject, ...), whose namespace and CRD exist by then."""
    builtin = group_of(doc["apiVersion"]) in BUILTIN_GROUPS
    if builtin and doc["kind"] in BUILTIN_ORDER:
        return 0, BUILTIN_ORDER.index(doc["kind"])
    return (1, 0) if builtin else (2, 0)


def ordered(docs: list[dict]) -> list[dict]:
    return sorted(docs, key=apply_rank)  # stable: kustomize's order within a rank


def wait_rollout(dyn, namespace: str, name: str, timeout_s: int) -> tuple[bool, str]:
    deps = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    deadline, last = time.monotonic() + timeout_s, ""
    while time.monotonic() < deadline:
        d = deps.get(name=name, namespace=namespace)
        want = d.spec.replicas or 1
        st = d.status
        msg = f"{name}: {st.readyReplicas or 0}/{want} ready, {st.updatedReplicas or 0} updated"
        if msg != last:
            print(msg, flush=True)
            last = msg
        if (st.readyReplicas or 0) >= want and (st.updatedReplicas or 0) >= want and st.observedGeneration >= d.metadata.generation:
            return True, msg
        time.sleep(5)
    return False, f"timed out after {timeout_s}s: {last}"


def collect_diagnostics(dyn, namespace: str) -> str:
    """Pod events and container logs into data/runs/<ts>-k8s-deploy-failure/ (write-once files)."""
    from kubernetes import client

    out = paths.runs_dir() / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-k8s-deploy-failure"
    out.mkdir(parents=True)
    core = client.CoreV1Api(dyn.client)
    events = core.list_namespaced_event(namespace)
    (out / "events.json").write_text(json.dumps([{"reason": e.reason, "message": e.message, "object": e.involved_object.name,
                                                   "type": e.type} for e in events.items], indent=1))
    for pod in core.list_namespaced_pod(namespace).items:
        for c in pod.spec.containers:
            try:
                log = core.read_namespaced_pod_log(pod.metadata.name, namespace, container=c.name, tail_lines=500)
            except Exception as exc:  # noqa: BLE001 - a pod that never started has no log
                log = f"(no log: {exc})"
            (out / f"{pod.metadata.name}-{c.name}.log").write_text(log)
    return str(out)


def node_gpu_facts(dyn) -> list[dict]:
    """GPU product/driver from node labels (NVIDIA GPU feature discovery), for run manifests."""
    from kubernetes import client

    facts = []
    for n in client.CoreV1Api(dyn.client).list_node().items:
        labels = n.metadata.labels or {}
        facts.append({"node": n.metadata.name, "gpu_product": labels.get("nvidia.com/gpu.product"),
                      "driver": labels.get("nvidia.com/cuda.driver.major"),
                      "gpus": (n.status.capacity or {}).get("nvidia.com/gpu")})
    return facts


def deploy(overlay: str, dry_run: bool = False, timeout_s: int = 900, client=None,
           images: list[dict] | None = None) -> int:
    """Render, check, preflight, apply, wait. ``client``: a DynamicClient (default: the current
    kube context's). ``images``: kustomize image overrides on top of the overlay (a bisect's
    build, render.engine_image_override). Returns 0 (rolled out, or dry run), 1 (invalid
    overlay, no secrets, failed rollout), NO_CLUSTER, or MISSING_PREREQUISITES (nothing applied)."""
    missing = missing_secret_inputs()
    try:
        docs = kustomize_build(overlay, images=images)  # throwaway keys while `missing`: only checked, never applied
    except RuntimeError as exc:
        print(exc)
        return 1
    errs = deploy_errors(docs)
    if errs:
        print("\n".join(f"[{overlay}] {e}" for e in errs))
        return 1
    shown = f" (engine image {engine_container(docs)['image']})" if images else ""
    print(f"overlay {overlay}{shown}: {len(docs)} objects rendered and checked offline")
    dyn = None if dry_run else (client or cluster_client())
    if dyn is None:
        print("dry run: nothing applied" if dry_run else
              "no Kubernetes cluster reachable (KUBECONFIG / current context): rendered and checked only; stopping")
        return 0 if dry_run else NO_CLUSTER
    if missing:
        print(f"{secret_inputs_dir()}: no {', '.join(missing)}: run `make secrets` first "
              f"(it writes {paths.secrets_dir()}); nothing applied")
        return 1
    problems = preflight(dyn, docs, overlay)
    for note in optional_notes(dyn):  # what inferlab uses later, not the overlay: never a reason to stop
        print(f"note: {note}")
    if problems:
        print(f"overlay {overlay}: this cluster lacks what the overlay needs; nothing applied:")
        print("\n".join(f"  - {p}" for p in problems))
        return MISSING_PREREQUISITES
    for d in ordered(docs):
        apply(dyn, d)
        print(f"applied {d['kind']}/{d['metadata']['name']}")
    ns = next(d["metadata"]["name"] for d in docs if d["kind"] == "Namespace")
    ok, msg = wait_rollout(dyn, ns, "vllm", timeout_s)
    if not ok:
        print(f"rollout failed: {msg}; diagnostics in {collect_diagnostics(dyn, ns)}")
        return 1
    print(f"rollout complete: {msg}; nodes: {node_gpu_facts(dyn)}")
    return 0


def undeploy(overlay: str) -> int:
    """Delete what deploy applied, in reverse order; the Namespace stays (it may hold more).
    Without ``make secrets`` the generated Secret's hashed name cannot be matched and is kept."""
    dyn = cluster_client()
    if dyn is None:
        print("no Kubernetes cluster reachable: nothing to delete")
        return NO_CLUSTER
    for d in reversed(ordered(kustomize_build(overlay))):
        if d["kind"] == "Namespace":
            continue
        try:  # a kind the cluster does not serve was never applied either
            res = dyn.resources.get(api_version=d["apiVersion"], kind=d["kind"])
            res.delete(name=d["metadata"]["name"], namespace=d["metadata"].get("namespace"))
            print(f"deleted {d['kind']}/{d['metadata']['name']}")
        except Exception as exc:  # noqa: BLE001 - already gone (or never served) is fine
            print(f"skip {d['kind']}/{d['metadata']['name']}: {type(exc).__name__}")
    return 0
