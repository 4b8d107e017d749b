"""TARGET=k8s: reach the vLLM Service through ``kubectl port-forward`` (opened here, always
closed), or through the ingress when BASE_URL is given (``https://llm.local``, TLS skip-verify
from the spec)."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
from collections.abc import Iterator

from .. import secrets
from ..load.spec import LoadSpec
from ..runs.manifest import TargetInfo

NAMESPACE, SERVICE, PORT = "inferlab", "vllm", 8000


@contextlib.contextmanager
def port_forward(namespace: str = NAMESPACE, service: str = SERVICE, port: int = PORT) -> Iterator[str]:
    kubectl = shutil.which("kubectl")
    if not kubectl:
        raise RuntimeError("kubectl not found: needed for TARGET=k8s port-forward")
    proc = subprocess.Popen([kubectl, "-n", namespace, "port-forward", f"svc/{service}", f"127.0.0.1:0:{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        m = re.search(r"127\.0\.0\.1:(\d+)", line)
        if not m:
            raise RuntimeError(f"kubectl port-forward failed: {line.strip() or 'no output'} (is a cluster reachable?)")
        yield f"http://127.0.0.1:{m.group(1)}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextlib.contextmanager
def k8s_target(spec: LoadSpec, base_url: str | None):
    from .base import TargetSession

    key = secrets.api_key("k8s")
    if base_url:
        info = TargetInfo(kind="k8s", base_url=base_url, model=spec.model, served_model_name=spec.model,
                          tls_skip_verify=spec.tls_skip_verify, deployment={"via": "ingress"})
        yield TargetSession("k8s", base_url.rstrip("/"), key, info, verify_tls=not spec.tls_skip_verify)
        return
    with port_forward() as url:
        info = TargetInfo(kind="k8s", base_url=url, model=spec.model, served_model_name=spec.model,
                          deployment={"via": f"port-forward svc/{SERVICE} -n {NAMESPACE}"})
        yield TargetSession("k8s", url, key, info)
