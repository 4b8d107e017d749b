"""Helpers shared by the device-side drivers (stdlib only: they run on the GPU host's python3).

Everything lives under GPU_WORK (/tmp/gpu): the unpacked site-packages, model, k6, nginx, the
frozen copies of the project's modules (``frozen/``), the API key (``key``, 0600) and the outputs
(``out/``). Nothing here contacts anything but 127.0.0.1.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
import types
import urllib.error
import urllib.request
from pathlib import Path

WORK = Path(os.environ.get("GPU_WORK", "/tmp/gpu"))
OUT = WORK / "out"
FROZEN = WORK / "frozen"  # copies of src/inferlab modules taken when the payload was packed
MODEL = "smollm2"
# the project's short payload (inferlab.specs.models.DEFAULT_PAYLOADS["short"])
SHORT = {"prompt": "Explain what a GPU is in two sentences.", "max_tokens": 64, "ignore_eos": True, "temperature": 0.7}


def api_key() -> str:
    return (WORK / "key").read_text().strip()


def wait_health(base_urls: list[str], timeout_s: float) -> dict[str, float]:
    """Block until every ``<base>/health`` answers 200; returns seconds waited per URL.
    Raises TimeoutError naming the ones that did not."""
    t0, done = time.monotonic(), {}
    pids = [int((WORK / f"engine-{n}.pid").read_text()) for n in os.environ.get("ENGINES", "").split()]
    while time.monotonic() - t0 < timeout_s:
        for pid in pids:  # fail fast: an engine that died will never answer
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                raise RuntimeError(f"engine process {pid} exited before answering /health") from None
        for base in base_urls:
            if base in done:
                continue
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                    if r.status == 200:
                        done[base] = round(time.monotonic() - t0, 1)
            except (urllib.error.URLError, OSError):
                pass
        if len(done) == len(base_urls):
            return done
        time.sleep(1)
    raise TimeoutError(f"not healthy after {timeout_s:.0f} s: {sorted(set(base_urls) - set(done))}")


def scrape(url: str, path: Path) -> None:
    """Save one Prometheus text scrape (vLLM /metrics needs no key)."""
    with urllib.request.urlopen(url, timeout=10) as r:
        path.write_bytes(r.read())


def load_frozen(name: str, relpath: str):
    """Import one frozen project module by file path (its package's __init__ is not run:
    inferlab.ingest's imports polars, which the device lacks)."""
    spec = importlib.util.spec_from_file_location(name, FROZEN / relpath)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def project_packages() -> None:
    """Register bare ``inferlab``/``inferlab.ingest``/``inferlab.telemetry`` packages over the
    frozen tree, so ``inferlab.telemetry.otlp`` imports its siblings without running package
    ``__init__`` files (see load_frozen)."""
    for name, sub in (("inferlab", ""), ("inferlab.ingest", "ingest"), ("inferlab.telemetry", "telemetry")):
        mod = types.ModuleType(name)
        mod.__path__ = [str(FROZEN / "inferlab" / sub)]
        sys.modules[name] = mod
