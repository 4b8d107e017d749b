"""Deploy an overlay with the kubernetes Python client: server-side apply in dependency order,
rollout wait with progress and a timeout, diagnostics into a run directory on failure.

Where no cluster is reachable it renders and validates the overlay, says so, and stops cleanly
(exit 0 with ``--dry-run``, 3 otherwise). The rendered objects hold the API key (the Secret);
they are applied from memory and never written to disk or printed.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from .. import paths
from .validate import kustomize_build, validate_overlay

# Apply order: cluster-scoped and config first, workloads after, routing and monitoring last.
ORDER = ["Namespace", "ClusterIssuer", "Secret", "ConfigMap", "PersistentVolumeClaim", "Service", "Deployment", "DaemonSet",
         "Certificate", "Ingress", "ServiceMonitor", "PrometheusRule", "ScaledObject", "Job"]
NO_CLUSTER = 3


def ordered(docs: list[dict]) -> list[dict]:
    return sorted(docs, key=lambda d: ORDER.index(d["kind"]) if d["kind"] in ORDER else len(ORDER))


def cluster_client():
    """A DynamicClient for the current kube context, or None when no cluster is reachable."""
    try:
        from kubernetes import client, config, dynamic

        config.load_kube_config()
        api = client.ApiClient()
        client.VersionApi(api).get_code(_request_timeout=5)
        return dynamic.DynamicClient(api)
    except Exception:  # noqa: BLE001 - any failure here means "no usable cluster"
        return None


def apply(dyn, doc: dict) -> None:
    res = dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
    ns = doc["metadata"].get("namespace")
    res.server_side_apply(body=doc, name=doc["metadata"]["name"], namespace=ns, field_manager="inferlab",
                          force_conflicts=True)


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


def deploy(overlay: str, dry_run: bool = False, timeout_s: int = 900) -> int:
    n, errs = validate_overlay(overlay)
    if errs:
        print("\n".join(errs))
        return 1
    print(f"overlay {overlay}: {n} objects rendered and validated offline")
    dyn = None if dry_run else cluster_client()
    if dyn is None:
        print("dry run: nothing applied" if dry_run else
              "no Kubernetes cluster reachable (KUBECONFIG / current context): rendered and validated only; stopping")
        return 0 if dry_run else NO_CLUSTER
    docs = ordered(kustomize_build(overlay))
    for d in docs:
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
    dyn = cluster_client()
    if dyn is None:
        print("no Kubernetes cluster reachable: nothing to delete")
        return NO_CLUSTER
    for d in reversed(ordered(kustomize_build(overlay))):
        if d["kind"] in ("Namespace", "ClusterIssuer"):
            continue  # shared or holding other things; delete by hand if wanted
        res = dyn.resources.get(api_version=d["apiVersion"], kind=d["kind"])
        try:
            res.delete(name=d["metadata"]["name"], namespace=d["metadata"].get("namespace"))
            print(f"deleted {d['kind']}/{d['metadata']['name']}")
        except Exception as exc:  # noqa: BLE001 - already gone is fine
            print(f"skip {d['kind']}/{d['metadata']['name']}: {type(exc).__name__}")
    return 0
