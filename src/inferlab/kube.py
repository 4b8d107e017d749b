"""Kubernetes client helpers shared by deploy, the k8s target and in-cluster load: a leaf
module (it imports only the kubernetes client, lazily), so nothing above it forms a cycle."""

from __future__ import annotations


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
    """Server-side apply of one object, owned by the field manager ``inferlab``."""
    res = dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
    ns = doc["metadata"].get("namespace")
    res.server_side_apply(body=doc, name=doc["metadata"]["name"], namespace=ns, field_manager="inferlab",
                          force_conflicts=True)
