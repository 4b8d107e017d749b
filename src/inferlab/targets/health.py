"""Waiting for a server this workspace started (vLLM, nginx) to answer its health URL."""

from __future__ import annotations

import subprocess
import time
from typing import Literal

import httpx


def wait_for_health(proc: subprocess.Popen, url: str, deadline: float, interval_s: float = 1.0,
                    request_timeout_s: float = 2.0) -> Literal["healthy", "exited", "timeout"]:
    """Poll ``url`` until it returns 200 ("healthy"), ``proc`` exits ("exited") or
    ``time.monotonic()`` passes ``deadline`` ("timeout"). Callers turn the outcome into their
    own error with their own diagnostics (log tail, stderr)."""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return "exited"
        try:
            if httpx.get(url, timeout=request_timeout_s).status_code == 200:
                return "healthy"
        except httpx.HTTPError:
            pass
        time.sleep(interval_s)
    return "timeout"
