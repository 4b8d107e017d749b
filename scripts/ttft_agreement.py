"""Client TTFT/TPOT (k6 through the stream clock) against the engine's own spans, same requests.

Starts the local vLLM CPU engine (ci-tiny's engine arguments) exporting OTLP spans to a
receiver in this process, runs a short closed-loop sweep with k6 sending streamed requests
through the stream clock (inferlab.load.stream_clock), joins each request's clock record and
span by X-Request-Id, and prints per cell the differences client - span: median and p95 of
|diff| for TTFT and TPOT, beside k6's own ``http_req_waiting`` (the response headers, not TTFT).

    .venv/bin/python scripts/ttft_agreement.py [--vus 1 2] [--requests 12] [--max-tokens 32]
    .venv/bin/python scripts/ttft_agreement.py --standin   # the same against the stand-in (no engine)

The engine takes minutes to start on 2 cores and uses both: run it when nothing else does.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from inferlab.analysis.requests import join_requests
from inferlab.analysis.token_slo import with_stream_clock
from inferlab.ingest import read_k6, read_spans
from inferlab.ingest.stream_clock import read_stream_clock
from inferlab.load.k6 import run_cell
from inferlab.load.stream_clock import STREAM_CLOCK_FILE, StreamClock
from inferlab.specs import builtin_spec, load_spec, plan_cells
from inferlab.telemetry.otlp import OtlpReceiver


@contextlib.contextmanager
def target(rx: OtlpReceiver, use_standin: bool, work: Path):
    """(base_url, api_key) of the local engine, or of the stand-in, exporting spans to ``rx``."""
    if use_standin:
        from inferlab.standin import StandIn

        os.environ.update(rx.engine_env())  # the exporter's schedule, as the engine gets it (process mode inherits)
        with StandIn(process=True, slots=4, tpot_ms=20, prefill_base_ms=100, otlp_traces_endpoint=rx.endpoint) as s:
            yield s.base_url, None
        return
    from inferlab.targets.engine import LocalEngine

    spec = load_spec(builtin_spec("ci-tiny")).engine
    spec = spec.model_copy(update={"args": [*spec.args, *rx.engine_args()], "env": {**spec.env, **rx.engine_env()}})
    engine = LocalEngine(spec, secrets.token_urlsafe(24), work / "engine.log")
    engine.start()
    try:
        yield engine.base_url, engine.api_key
    finally:
        engine.stop()


def one_cell(base_url: str, api_key: str | None, rx: OtlpReceiver, vus: int, requests: int, max_tokens: int,
             work: Path, run_id: str) -> pd.DataFrame:
    """Run one streamed closed-loop cell through the clock; its requests joined to their spans."""
    spec = load_spec(builtin_spec("ci-tiny"), {
        "concurrency": [vus], "min_iterations": requests, "iterations_per_vu": 1, "min_window_requests": 1,
        "warmup_requests": 1, "stream": True,
        "payloads": {"short": {"prompt": "Explain what a GPU is in two sentences.", "max_tokens": max_tokens}}})
    cell = plan_cells(spec)[0]
    d = work / cell.cell_id
    d.mkdir()
    rx.drain()
    with StreamClock(base_url, d / STREAM_CLOCK_FILE) as clock:
        res = run_cell(spec, cell, clock.base_url, api_key, d, run_id=run_id)
    if res.exit_code not in (0, 99):
        raise SystemExit(f"k6 failed ({res.exit_code}): {res.stderr_tail}")
    k6 = read_k6(d / "k6.ndjson.gz").assign(cell_id=cell.cell_id)
    measured = int((k6["phase"] == "measure").sum())
    rx.wait_for(f"{run_id}.{cell.cell_id}.m", measured, timeout_s=60, idle_s=5)
    (d / "spans.ndjson").write_bytes(rx.drain())
    joined = join_requests(k6, read_spans(d / "spans.ndjson"))
    return with_stream_clock(joined, read_stream_clock(d / STREAM_CLOCK_FILE)).assign(vus=vus)


def agreement(rows: pd.DataFrame) -> pd.DataFrame:
    """Per cell: requests joined to both, and client - span for TTFT and TPOT (median, p95 of |diff|)."""
    out = []
    for vus, g in rows.groupby("vus"):
        both = g[g["joined_server"] & g["client_ttft_ms"].notna()]
        d_ttft = (both["client_ttft_ms"] - both["ttft_ms"]).to_numpy(float)
        d_tpot = (both["client_tpot_ms"] - both["tpot_ms"]).dropna().to_numpy(float)
        out.append({"vus": vus, "requests": len(g), "joined": len(both),
                    "span_ttft_median_ms": both["ttft_ms"].median(),
                    "ttft_diff_median_ms": np.median(d_ttft), "ttft_absdiff_p95_ms": np.quantile(abs(d_ttft), 0.95),
                    "k6_waiting_median_ms": both["waiting_ms"].median(),
                    "tpot_diff_median_ms": np.median(d_tpot) if len(d_tpot) else np.nan,
                    "tpot_absdiff_p95_ms": np.quantile(abs(d_tpot), 0.95) if len(d_tpot) else np.nan})
    return pd.DataFrame(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vus", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--requests", type=int, default=12, help="measured requests per cell")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--standin", action="store_true", help="the stand-in server instead of the engine")
    ap.add_argument("--out", type=Path, default=None, help="keep the raw files here (default: a temp folder)")
    a = ap.parse_args()
    work = a.out or Path(tempfile.mkdtemp(prefix="inferlab-ttft-agreement-"))
    work.mkdir(parents=True, exist_ok=True)
    run_id = "ttft-agreement"
    with OtlpReceiver() as rx, target(rx, a.standin, work) as (base_url, api_key):
        rows = pd.concat([one_cell(base_url, api_key, rx, v, a.requests, a.max_tokens, work, run_id) for v in a.vus])
    rows.to_csv(work / "requests.csv", index=False)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(agreement(rows).round(2).to_string(index=False))
    print(f"raw files: {work}")


if __name__ == "__main__":
    main()
