"""``make perf``: the load generator's own ceiling on this machine.

The real k6 (load/k6.py's cell runner, load/chat.js) drives constant-rate steps against the
stand-in server (inferlab.standin) set up never to be the limit: unlimited slots, answers of
4 tokens at 0.01 ms a token, no prefill time. Each step is judged as validity.py judges a
capacity step: send lag p99 against k6's constant-rate grid (:func:`~inferlab.analysis.validity.grid_lag_ms`)
under ``LAG_P99_MS`` = 10 ms (inference-perf's bar; the first second, k6 starting its VUs, left out)
and no dropped sends. Rates double from
``START_RATE`` until a step fails twice in a row (a failing step runs once more: on a shared
machine one burst of another process is not k6's limit); the ceiling is the highest rate that
passed, with every slower one. Above it the client, not the server, sets the arrivals: a capacity result near or
above the ceiling measures k6. Prints one row per step (with k6's own CPU, % of one core) and
the ceiling; about a minute or two on 2 cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

from ..analysis.validity import LAG_P99_MS, grid_lag_ms
from ..ingest import read_k6_tables
from ..load.k6 import run_cell
from ..runs.layout import segment_files
from ..specs import LoadSpec
from ..specs.models import Capacity, Payload
from ..specs.planning import CellPlan
from ..standin import StandIn
from ..telemetry.samplers import HostSampler

START_RATE = 5.0
MAX_RATE = 2560.0
STEP_S = 8
PAYLOAD = "tiny"


def _spec() -> LoadSpec:
    return LoadSpec(name="k6-ceiling", payloads={PAYLOAD: Payload(prompt="hi", max_tokens=4)}, use_payloads=[PAYLOAD],
                    warmup_requests=0, capacity=Capacity(payload=PAYLOAD, pre_allocated_vus=200, max_vus=2000))


def _k6_pids() -> list[int]:
    return [p.pid for p in psutil.Process().children(recursive=True) if p.name().startswith("k6")]


def step(spec: LoadSpec, base_url: str, rate: float, work: Path, seconds: int = STEP_S) -> dict:
    """One constant-rate step: sends, dropped, send lag p50/p99/max (ms), k6's CPU, pass."""
    cell = CellPlan(cell_id=f"rate{rate:g}", payload=PAYLOAD, executor="constant-arrival-rate", rate=rate,
                    duration_s=seconds)
    d = work / cell.cell_id
    d.mkdir(parents=True)
    with HostSampler(d / "host.csv", lambda: {"k6": _k6_pids()}, interval_s=0.5):
        run_cell(spec, cell, base_url, None, d, run_id="k6-ceiling")
    ndjson = d / segment_files(0, 1)["ndjson"]
    req, points = read_k6_tables(ndjson)
    dropped = int(points.loc[points["metric"] == "dropped_iterations", "value"].sum()) if not points.empty else 0
    starts = (req["start_ts"] - req["start_ts"].min()).dt.total_seconds().to_numpy(float)
    lag = grid_lag_ms(starts, rate) if len(starts) else np.array([np.nan])
    host = pd.read_csv(d / "host.csv")
    cpu = host.loc[(host["process"] == "k6") & (host["metric"] == "cpu_pct"), "value"]
    p99 = float(np.quantile(lag, 0.99))
    return {"rate": rate, "sent": len(req), "failed": int((~req["ok"]).sum()), "dropped": dropped,
            "lag_p50_ms": float(np.median(lag)), "lag_p99_ms": p99, "lag_max_ms": float(np.max(lag)),
            "k6_cpu_pct": float(cpu.mean()) if len(cpu) else np.nan,
            "passed": bool(p99 <= LAG_P99_MS and dropped == 0 and len(req) > 0)}


def measure(start_rate: float = START_RATE, max_rate: float = MAX_RATE, seconds: int = STEP_S) -> pd.DataFrame:
    """Steps from ``start_rate``, doubling, until one fails or ``max_rate`` is passed."""
    rows, rate, spec = [], start_rate, _spec()
    with tempfile.TemporaryDirectory(prefix="k6-ceiling-") as tmp_dir, \
            StandIn(process=True, slots=100_000, tpot_ms=0.01, batch_alpha=0, prefill_base_ms=0,
                    prefill_ms_per_token=0, enable_prefix_caching=False) as server:
        tmp = Path(tmp_dir)
        while rate <= max_rate:
            for attempt in (1, 2):  # a failing step runs once more: one burst of another process is not k6's limit
                rows.append({**step(spec, server.base_url, rate, tmp / str(attempt), seconds), "attempt": attempt})
                if rows[-1]["passed"]:
                    break
            if not rows[-1]["passed"]:
                break
            rate *= 2
    return pd.DataFrame(rows)


def ceiling(table: pd.DataFrame) -> float | None:
    """The highest rate that passed (on its last attempt) with every slower rate; None when the first failed."""
    last = table.groupby("rate", sort=True)["passed"].last()
    ok = last.cumprod().astype(bool)
    return float(last.index[ok].max()) if ok.any() else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--start-rate", type=float, default=START_RATE)
    ap.add_argument("--max-rate", type=float, default=MAX_RATE)
    ap.add_argument("--step-s", type=int, default=STEP_S)
    a = ap.parse_args()
    t = time.perf_counter()
    table = measure(a.start_rate, a.max_rate, a.step_s)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    top = ceiling(table)
    where = f"{psutil.cpu_count()} CPUs"
    if top is None:
        print(f"k6 ceiling: below {a.start_rate:g} req/s on this machine ({where}): send lag p99 > {LAG_P99_MS:g} ms")
    else:
        last_passed = bool(table["passed"].iloc[-1])
        more = " (the highest rate tried)" if top == float(table["rate"].max()) and last_passed else ""
        print(f"k6 ceiling: {top:g} req/s{more} with send lag p99 <= {LAG_P99_MS:g} ms and no dropped sends, "
              f"on this machine ({where}), against the stand-in; {time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    main()
