"""Child processes this workspace starts (vLLM, nginx, nvidia-smi, kubectl port-forward,
Chromium in tests): wait until one answers its health URL; stop one politely, then firmly."""

from __future__ import annotations

import signal
import ssl
import subprocess
import time
from typing import Literal

import httpx


def wait_for_health(proc: subprocess.Popen, url: str, deadline: float, interval_s: float = 1.0,
                    request_timeout_s: float = 2.0, verify: bool | ssl.SSLContext = True
                    ) -> Literal["healthy", "exited", "timeout"]:
    """Poll ``url`` until it returns 200 ("healthy"), ``proc`` exits ("exited") or
    ``time.monotonic()`` passes ``deadline`` ("timeout"). Callers turn the outcome into their
    own error with their own diagnostics (log tail, stderr). ``verify``: httpx's (a context
    trusting the project CA for the local edge)."""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return "exited"
        try:
            if httpx.get(url, timeout=request_timeout_s, verify=verify).status_code == 200:
                return "healthy"
        except httpx.HTTPError:
            pass
        time.sleep(interval_s)
    return "timeout"


def stop_process(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, grace_s: float = 10) -> None:
    """Send ``sig``; after ``grace_s`` without exit, SIGKILL. The child is reaped either way
    (no zombie). A process that already ended is left as it is."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
