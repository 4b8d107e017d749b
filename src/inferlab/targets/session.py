"""The session every target yields: base URL, key, what the manifest records, and the calls
sweeps, probes and reports make on a server (health, /metrics, preflight). Targets live one per
module (``local``, ``url``, ``k8s``); :func:`inferlab.targets.open.open_target` picks one.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import httpx

from ..runs.manifest import TargetInfo

def trust(ca_file: str) -> ssl.SSLContext:
    """A TLS context that verifies servers against ``ca_file`` only (the local edge's CA)."""
    return ssl.create_default_context(cafile=ca_file)


class TargetError(RuntimeError):
    """The target cannot be used (unreachable, key rejected, wrong model)."""


@dataclass
class TargetSession:
    kind: str
    base_url: str
    api_key: str | None
    info: TargetInfo
    vllm_version: str | None = None
    pids: dict[str, int | None] = field(default_factory=dict)
    verify_tls: bool | ssl.SSLContext = True  # httpx's verify: trust(<CA>) for the local edge's project CA
    ca_file: str | None = None  # that CA for k6 (SSL_CERT_FILE), None: the system's
    in_cluster: object | None = None  # kube.KubeExec when k6 runs in the cluster (load.incluster)
    pod_scraper: Callable[[], dict[str, bytes]] | None = None  # k8s: /metrics of every vLLM pod
    # k8s through the ingress: the controller's access log for a window (since, until) -> raw text
    edge_log: Callable[[datetime, datetime], str] | None = None
    # k8s with the tracing component: a command run in its Collector pod's reader container -> stdout
    # (sweep.span_collection reads the run's spans from the Collector's files with it)
    span_reader: Callable[[list[str]], bytes] | None = None

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.base_url}/health", timeout=5, verify=self.verify_tls).status_code == 200
        except httpx.HTTPError:
            return False

    def scrape_pods(self) -> dict[str, bytes]:
        """{pod name: /metrics text} of every serving pod; {} where not applicable or unreachable."""
        try:
            return self.pod_scraper() if self.pod_scraper else {}
        except Exception:  # noqa: BLE001 - the Service-level scrape still stands; the report says pods are missing
            return {}

    def scrape_metrics(self) -> bytes | None:
        try:
            r = httpx.get(f"{self.base_url}/metrics", headers=self.headers(), timeout=30, verify=self.verify_tls)
            return r.content if r.status_code == 200 else None
        except httpx.HTTPError:
            return None


def preflight(session: TargetSession, model: str) -> str | None:
    """Check reachability, the key and the model; return the server's vLLM version (or None)."""
    url = f"{session.base_url}/v1/models"
    try:
        r = httpx.get(url, headers=session.headers(), timeout=15, verify=session.verify_tls)
    except httpx.HTTPError as exc:
        raise TargetError(f"cannot reach {session.base_url}: {type(exc).__name__}: {exc}") from None
    if r.status_code == 401:
        raise TargetError(f"{url}: API key rejected (401). Set INFERLAB_API_KEY (or `make secrets` for k8s).")
    if r.status_code != 200:
        raise TargetError(f"{url}: HTTP {r.status_code}: {r.text[:200]}")
    served = [m.get("id") for m in r.json().get("data", [])]
    if model not in served:
        raise TargetError(f"{url}: model {model!r} is not served (served: {served}); set `model:` in the spec")
    try:
        return httpx.get(f"{session.base_url}/version", timeout=5, verify=session.verify_tls).json().get("version")
    except (httpx.HTTPError, ValueError):
        return None


