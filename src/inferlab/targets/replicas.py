"""Several engine replicas behind Debian's nginx (round-robin), as one target: the two-replica
check of a capacity plan (analysis/plan.py).

Each replica is a :class:`LocalEngine` with the spec's engine arguments, on its own device:
``devices="gpu"``: replica i sees GPU i only (``CUDA_VISIBLE_DEVICES=i``); ``devices="cpu"``: replica
i runs on one core of its own (``taskset``), which on a small machine shows the mechanics, not a
scaling result (k6 shares those cores). nginx balances requests round-robin over the replicas
(``upstream`` with keep-alive, buffering off, 600 s timeouts) and passes the client's
Authorization header through: the key is in no config, argv or log (every replica reads it from
``VLLM_API_KEY``, as the local engine does). Its access log, with the replica that served each
request, is written into the run (``engine/replicas-access.log``).

The session's /metrics is one replica's (round-robin); every replica's own /metrics comes from
``pod_scraper`` as ``replica-<i>``, so the runner records them per replica (``pods/``) and a
replica restarting mid-cell is seen as a pod restart. ``engine_python`` / ``model``: a vLLM other
than ``.venv-engine`` (e.g. a GPU build) and a model path or id; defaults: the local CPU engine
and its SmolLM2 checkpoint.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import httpx

from .. import credentials
from ..nginx import NginxProcess, main_config
from ..runs.manifest import TargetInfo
from ..specs import EngineSpec, LoadSpec
from .engine import EngineError, LocalEngine
from .pinning import cpu_list
from .session import TargetError, TargetSession

Devices = Literal["cpu", "gpu"]


def replica_specs(spec: EngineSpec, n: int, devices: Devices) -> list[tuple[EngineSpec, list[str]]]:
    """(engine spec, command prefix) per replica: a GPU each, or a core each (round-robin over
    this process's cores when there are fewer cores than replicas)."""
    if n < 1:
        raise ValueError(f"replicas must be >= 1, got {n}")
    out = []
    cores = sorted(os.sched_getaffinity(0))
    for i in range(n):
        if devices == "gpu":
            out.append((spec.model_copy(update={"env": {**spec.env, "CUDA_VISIBLE_DEVICES": str(i)}}), []))
        else:
            out.append((spec, ["taskset", "-c", cpu_list((cores[i % len(cores)],))]))
    return out


def balancer_http(listen_port: int, upstreams: list[str], access_log: Path) -> str:
    """The ``http {}`` body: round-robin over ``upstreams`` (host:port), no buffering, 600 s timeouts."""
    servers = "".join(f"    server {u} max_fails=0;\n" for u in upstreams)
    # keepalive_timeout below uvicorn's 5 s (a reset was seen on the 2xH100 check)
    return ('  log_format replicas \'$time_iso8601 $status $request_time $upstream_addr "$request"\';\n'
            f"  access_log {access_log} replicas;\n"
            f"  upstream vllm_replicas {{\n{servers}    keepalive 64;\n    keepalive_timeout 4s;\n  }}\n"
            f"  server {{\n    listen 127.0.0.1:{listen_port};\n"
            "    location / {\n      proxy_pass http://vllm_replicas;\n      proxy_http_version 1.1;\n"
            '      proxy_set_header Connection "";\n      proxy_buffering off;\n      proxy_request_buffering off;\n'
            "      proxy_read_timeout 600s;\n      proxy_send_timeout 600s;\n    }\n  }")


class Balancer(NginxProcess):
    """nginx in front of ``upstreams`` on ``self.url``; its access log names the replica that
    served each request."""

    def __init__(self, upstreams: list[str], access_log: Path) -> None:
        self.upstreams, self.access_log = upstreams, access_log
        self.port: int | None = None  # leased at start (procs.lease_port)
        self.url: str | None = None
        super().__init__(name="nginx in front of the replicas", error=TargetError)

    def prepare(self) -> None:
        self.port = self.lease_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.health = f"{self.url}/health"
        work = self.work_dir("inferlab-replicas-")
        self.access_log.parent.mkdir(parents=True, exist_ok=True)
        conf = work / "nginx.conf"
        conf.write_text(main_config(work, balancer_http(self.port, self.upstreams, self.access_log), 4096))
        self.use_config(conf)


@contextlib.contextmanager
def replicas_target(spec: LoadSpec, run_dir: Path, n: int = 2, devices: Devices = "cpu",
                    engine_python: str | None = None, model: str | None = None,
                    engine_log: str = "engine/engine.log") -> Iterator[TargetSession]:
    """Start ``n`` replicas (in parallel) and nginx; yield one session; stop everything on exit."""
    key = credentials.api_key("local")
    assert key
    started_at = datetime.now(UTC)
    log = Path(engine_log)
    engines = [LocalEngine(s, key, run_dir / log.with_name(f"{log.stem}-replica{i}{log.suffix}"),
                           cpu_prefix=prefix, python=engine_python, model=model)  # each leases its port
               for i, (s, prefix) in enumerate(replica_specs(spec.engine, n, devices))]
    with contextlib.ExitStack() as stack:
        for e in engines:
            stack.callback(e.stop)
        with ThreadPoolExecutor(max_workers=n) as pool:
            errors = [f.exception() for f in [pool.submit(e.start) for e in engines]]
        failed = [f"replica {i}: {err}" for i, err in enumerate(errors) if err]
        if failed:
            raise EngineError("; ".join(failed))
        nginx = stack.enter_context(Balancer([e.base_url.removeprefix("http://") for e in engines],
                                             run_dir / "engine" / "replicas-access.log"))
        url = nginx.url
        placement = [f"replica {i}: " + (f"GPU {i}" if devices == "gpu" else " ".join(e.cpu_prefix))
                     for i, e in enumerate(engines)]
        info = TargetInfo(kind="local", base_url=url, model=model or "SmolLM2-135M-Instruct (local engine)",
                          served_model_name=spec.engine.served_model_name, engine_args=engines[0].engine_args,
                          engine_env=engines[0].engine_env, startup_s=max(e.startup_s or 0 for e in engines),
                          deployment={"replicas": n, "balancer": "nginx round-robin (Debian)", "devices": devices,
                                      "placement": placement},
                          process={"pid": nginx.pid, "replica_pids": [e.proc.pid if e.proc else None for e in engines],
                                   "started_at": started_at.isoformat()})

        def scrape() -> dict[str, bytes]:
            out = {}
            for i, e in enumerate(engines):
                r = httpx.get(f"{e.base_url}/metrics", headers={"Authorization": f"Bearer {key}"}, timeout=30)
                if r.status_code == 200:
                    out[f"replica-{i}"] = r.content
            return out

        pids = {"nginx": nginx.pid, **{f"engine-{i}": e.proc.pid if e.proc else None for i, e in enumerate(engines)}}
        yield TargetSession("local", url, key, info, engines[0].version(), pids, pod_scraper=scrape)
