"""The steady-state window of a cell, and one repeat's metrics inside it.

Closed loop (``shared-iterations``/``constant-vus``): from the first measured start to the last
measured start. Inside it exactly ``vus`` requests are in flight (each completion is replaced at
once); after the last start the cell drains and concurrency falls, so those seconds are cut.
Latency counts requests whose whole life lies inside the window (they saw ``vus`` concurrent
requests throughout); throughput counts successful completions inside the window over its
length. Warm-up requests (``phase=warmup``) finished before the window opened (k6 ``setup()``).

Open loop (``constant-arrival-rate``): from the first to the last scheduled start; latency counts
every request started inside it, throughput the successful completions up to the last start.
A ramp (``ramping-arrival-rate``) has no steady state: it is an exploratory view only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

OPEN_LOOP = ("constant-arrival-rate",)
QUANTILES = {"latency_p50": 0.50, "latency_p95": 0.95, "latency_p99": 0.99}


def steady_window(requests: pd.DataFrame) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(start, end) of the steady state of one repeat's measured requests."""
    t0, t1 = requests["start_ts"].min(), requests["start_ts"].max()
    if t1 <= t0:  # one request, or all started together: the window is their life
        t1 = requests["end_ts"].max()
    return t0, t1


def window_requests(requests: pd.DataFrame, executor: str = "shared-iterations") -> pd.DataFrame:
    """The requests whose latency the window's statistics use (see module docstring)."""
    if requests.empty:
        return requests
    t0, t1 = steady_window(requests)
    if executor in OPEN_LOOP:
        return requests[(requests["start_ts"] >= t0) & (requests["start_ts"] <= t1)]
    return requests[(requests["start_ts"] >= t0) & (requests["end_ts"] <= t1)]


def min_requests(q: float) -> int:
    """Fewest requests for a q-quantile to be more than the sample maximum: n (1-q) >= 1
    (p50: 2, p95: 20, p99: 100)."""
    return max(2, int(np.ceil(1 / (1 - q) - 1e-9)))


def repeat_metrics(requests: pd.DataFrame, slo_e2e_ms: float, executor: str = "shared-iterations") -> dict:
    """One repeat of one cell: throughput and goodput (successful requests/s in the window; a
    failed request never counts), error rate over every measured request, latency quantiles of
    the window's successful requests (NaN where too few for that quantile)."""
    out = {"requests": len(requests), "errors": int((~requests["ok"]).sum()) if len(requests) else 0}
    out["error_rate"] = out["errors"] / out["requests"] if out["requests"] else np.nan
    if requests.empty:
        return {**out, "window_s": np.nan, "window_requests": 0, "throughput": np.nan, "goodput": np.nan,
                **{k: np.nan for k in QUANTILES}}
    t0, t1 = steady_window(requests)
    span = max((t1 - t0).total_seconds(), 1e-9)
    done = requests[(requests["end_ts"] > t0) & (requests["end_ts"] <= t1) & requests["ok"]]
    win = window_requests(requests, executor)
    ok = win.loc[win["ok"], "duration_ms"].to_numpy(float)
    out.update(window_s=span, window_requests=len(win), throughput=len(done) / span,
               goodput=int((done["duration_ms"] <= slo_e2e_ms).sum()) / span)
    for name, q in QUANTILES.items():
        out[name] = float(np.quantile(ok, q)) if len(ok) >= min_requests(q) else np.nan
    return out
