"""The steady-state window of a cell, and one repeat's metrics inside it: one estimator per
metric, used by the cell summary, compare, capacity, tune, plan and the reports.

Closed loop (``shared-iterations``/``constant-vus``, ``vus`` users, no think time). All users
start together, so the first round meets an empty server (short latencies where it queues);
with shared iterations the last round runs fewer than ``vus`` requests at once (the drain).
Neither is the server's steady state, so the window opens at the ``vus``-th completion (the
fill: as many answers as users have come back) and closes at the last start (after it the pool
is empty and concurrency falls). Throughput counts answers completed inside the window as
each request's share of its own life spent inside it (a request half inside counts half):
whole completions miscount a batching server, whose 16 answers come back within milliseconds of
each other, wherever the window's edge cuts such a cluster (a 36-request cell at 16 VUs read
0.86/s for a 3.4/s server); shares accrue smoothly and sum to the completions of the window in
the long run. Goodput and tokens/s are the same sum over the in-SLO requests and weighted by
each request's tokens; latency quantiles use the requests that complete inside ``(open,
close]``. A failed request frees its user like a success but never counts.
Why completions and not Little's law (``vus / mean latency``): Little's law over the whole cell
read a 1-slot server at 16 users 26 % high (the first round's short waits), and +9 % where the
last round ran 4 of 8; the window estimator reads lock-step and clustered batching servers within
2 % at the shipped cell sizes, and lognormal (sigma 0.5) service within +1-3 % (a count over ~20
answers reads high by ~CV^2/n; heavy tails, mixed answer lengths and many fast failures read more:
a known gap) (tests/analysis/test_throughput_estimator.py, a queueing simulator with 1-16
slots, lock-step and near-lock-step batching, lognormal service). Little's law stays as a check: the mean number in
flight measured from the window's own timestamps against throughput x mean latency
(``little_ratio``); a cell where they disagree by more than ``LITTLE_TOLERANCE`` is flagged.
Cells are sized for it: ``2 x vus + min_window_requests`` requests (specs/planning.py).

Open loop (``constant-arrival-rate``): from the first to the last scheduled start; latency counts
every successful request started inside it, throughput the successful completions inside it
over its length. A ramp (``ramping-arrival-rate``) has no steady state: exploratory view only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

OPEN_LOOP = ("constant-arrival-rate",)
QUANTILES = {"latency_p50": 0.50, "latency_p95": 0.95, "latency_p99": 0.99}
LITTLE_TOLERANCE = 0.05  # |throughput x mean latency / measured in-flight - 1| above this: flagged


def steady_window(requests: pd.DataFrame, executor: str = "constant-arrival-rate", vus: int | None = None
                  ) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(open, close] of one repeat's steady state (see the module docstring). Closed loop with
    too few requests for a window (fewer than ``vus + 1`` completions before the last start):
    open = close (an empty window)."""
    if executor in OPEN_LOOP or not vus:
        t0, t1 = requests["start_ts"].min(), requests["start_ts"].max()
        if t1 <= t0:  # one request, or all started together: the window is their life
            t1 = requests["end_ts"].max()
        return t0, t1
    ends = np.sort(requests["end_ts"].to_numpy())
    t_close = requests["start_ts"].max()
    if len(ends) < vus:
        return t_close, t_close
    t_open = pd.Timestamp(ends[vus - 1])
    return (t_open, t_close) if t_close > t_open else (t_close, t_close)


def window_requests(requests: pd.DataFrame, executor: str = "constant-arrival-rate", vus: int | None = None
                    ) -> pd.DataFrame:
    """The window's requests: started inside it (open loop), completed inside it (closed loop)."""
    if requests.empty:
        return requests
    t0, t1 = steady_window(requests, executor, vus)
    if executor in OPEN_LOOP or not vus:
        return requests[(requests["start_ts"] >= t0) & (requests["start_ts"] <= t1)]
    return requests[(requests["end_ts"] > t0) & (requests["end_ts"] <= t1)]


def min_requests(q: float) -> int:
    """Fewest requests for a q-quantile to be more than the sample maximum: n (1-q) >= 1
    (p50: 2, p95: 20, p99: 100)."""
    return max(2, int(np.ceil(1 / (1 - q) - 1e-9)))


def _seconds_inside(requests: pd.DataFrame, t0: pd.Timestamp, t1: pd.Timestamp) -> pd.Series:
    """Per request, the seconds of its life (start to end) that lie inside [t0, t1]."""
    s = requests["start_ts"].clip(lower=t0, upper=t1)
    e = requests["end_ts"].clip(lower=t0, upper=t1)
    return (e - s).dt.total_seconds()


def in_flight(requests: pd.DataFrame, t0: pd.Timestamp, t1: pd.Timestamp) -> float:
    """Mean number of requests in flight over [t0, t1], from the requests' own start/end times."""
    span = (t1 - t0).total_seconds()
    return float(_seconds_inside(requests, t0, t1).sum()) / span if span > 0 else np.nan


def _life_share(requests: pd.DataFrame, t0: pd.Timestamp, t1: pd.Timestamp) -> pd.Series:
    """Per request, the share of its life (start to end) that lies inside [t0, t1]."""
    life = (requests["end_ts"] - requests["start_ts"]).dt.total_seconds().clip(lower=1e-9)
    return _seconds_inside(requests, t0, t1) / life


def repeat_metrics(requests: pd.DataFrame, slo_e2e_ms: float, executor: str = "shared-iterations",
                   vus: int | None = None, tokens: pd.Series | None = None) -> dict:
    """One repeat of one cell: throughput and goodput (successful requests/s; goodput: within the
    SLO's e2e bound) and tokens/s (``tokens``: output tokens per request, indexed like
    ``requests``) over the window's requests, the error rate over every measured request, latency
    quantiles of the window's successful requests (NaN where too few for that quantile), and the
    Little's-law check (closed loop). See the module docstring."""
    out = {"requests": len(requests), "errors": int((~requests["ok"]).sum()) if len(requests) else 0}
    out["error_rate"] = out["errors"] / out["requests"] if out["requests"] else np.nan
    empty = {"window_s": np.nan, "window_requests": 0, "throughput": np.nan, "goodput": np.nan,
             "tokens_per_s": np.nan, "little_ratio": np.nan, **{k: np.nan for k in QUANTILES}}
    if requests.empty:
        return {**out, **empty, "throughput": 0.0, "goodput": 0.0}
    t0, t1 = steady_window(requests, executor, vus)
    span = (t1 - t0).total_seconds()
    win = window_requests(requests, executor, vus)
    if span <= 0 or win.empty:
        return {**out, **empty}
    little = np.nan
    if executor not in OPEN_LOOP and vus:  # each request's share of its life inside the window (module docstring)
        share = _life_share(requests, t0, t1)
        ok = requests["ok"]
        throughput = float(share[ok].sum()) / span
        goodput = float(share[ok & (requests["duration_ms"] <= slo_e2e_ms)].sum()) / span
        tok = np.nan if tokens is None else float((share * tokens.reindex(requests.index))[ok].sum()) / span
        # Little's law: measured in flight vs what the completion rate and latency imply (failed
        # requests hold a VU too, so all of them count here)
        implied = float(share.sum()) / span * float(win["duration_ms"].mean()) / 1000
        held = in_flight(requests, t0, t1)
        little = implied / held if held > 0 else np.nan  # a cell cut by a dead target can hold none
    else:
        done_ok = requests[(requests["end_ts"] > t0) & (requests["end_ts"] <= t1) & requests["ok"]]
        throughput = len(done_ok) / span
        goodput = int((done_ok["duration_ms"] <= slo_e2e_ms).sum()) / span
        tok = np.nan if tokens is None else float(tokens.reindex(done_ok.index).sum()) / span
    ok = win.loc[win["ok"], "duration_ms"].to_numpy(float)
    out.update(window_s=span, window_requests=len(win), throughput=throughput, goodput=goodput,
               tokens_per_s=tok, little_ratio=little)
    for name, q in QUANTILES.items():
        out[name] = float(np.quantile(ok, q)) if len(ok) >= min_requests(q) else np.nan
    return out
