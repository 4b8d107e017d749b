"""The steady-state window of a cell, and one repeat's metrics inside it.

Closed loop (``shared-iterations``/``constant-vus``), ``vus`` users: warm-up ran in k6's
``setup()`` and finished before the window opens at the first measured start; it closes at the
last measured start, after which the cell drains (concurrency falls). Latency percentiles use
every successful request started inside the window, whenever it ends (dropping the ones still
running at the close would drop the longest). Throughput is Little's law with exactly ``vus``
requests in flight: ``vus x success share / mean latency`` of the window's requests. Counting
completions inside a window of two or three rounds reads how synchronized the rounds are, not
the server: 16 batched answers finishing together read as 1.0x or 1.6x their rate depending on
where the window cuts. A failed request holds its VU for its whole time and never counts.

Open loop (``constant-arrival-rate``): from the first to the last scheduled start; latency counts
every successful request started inside it, throughput the successful completions inside it
over its length. A ramp (``ramping-arrival-rate``) has no steady state: exploratory view only.
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


def window_requests(requests: pd.DataFrame) -> pd.DataFrame:
    """The requests started inside the window (whenever they end)."""
    if requests.empty:
        return requests
    t0, t1 = steady_window(requests)
    return requests[(requests["start_ts"] >= t0) & (requests["start_ts"] <= t1)]


def min_requests(q: float) -> int:
    """Fewest requests for a q-quantile to be more than the sample maximum: n (1-q) >= 1
    (p50: 2, p95: 20, p99: 100)."""
    return max(2, int(np.ceil(1 / (1 - q) - 1e-9)))


def repeat_metrics(requests: pd.DataFrame, slo_e2e_ms: float, executor: str = "shared-iterations",
                   vus: int | None = None) -> dict:
    """One repeat of one cell: throughput and goodput (successful requests/s; goodput: within the
    SLO's e2e bound), the error rate over every measured request, latency quantiles of the window's
    successful requests (NaN where too few for that quantile). See the module docstring."""
    out = {"requests": len(requests), "errors": int((~requests["ok"]).sum()) if len(requests) else 0}
    out["error_rate"] = out["errors"] / out["requests"] if out["requests"] else np.nan
    if requests.empty:
        return {**out, "window_s": np.nan, "window_requests": 0, "throughput": 0.0, "goodput": 0.0,
                **{k: np.nan for k in QUANTILES}}
    t0, t1 = steady_window(requests)
    span = max((t1 - t0).total_seconds(), 1e-9)
    win = window_requests(requests)
    good = win["ok"] & (win["duration_ms"] <= slo_e2e_ms)
    if executor in OPEN_LOOP or not vus:
        done = requests[(requests["end_ts"] > t0) & (requests["end_ts"] <= t1) & requests["ok"]]
        throughput = len(done) / span
        goodput = int((done["duration_ms"] <= slo_e2e_ms).sum()) / span
    else:  # Little's law, vus in flight: each request holds a VU for its duration, failed ones too
        per_s = vus / (float(win["duration_ms"].mean()) / 1000)
        throughput, goodput = per_s * float(win["ok"].mean()), per_s * float(good.mean())
    ok = win.loc[win["ok"], "duration_ms"].to_numpy(float)
    out.update(window_s=span, window_requests=len(win), throughput=throughput, goodput=goodput)
    for name, q in QUANTILES.items():
        out[name] = float(np.quantile(ok, q)) if len(ok) >= min_requests(q) else np.nan
    return out
