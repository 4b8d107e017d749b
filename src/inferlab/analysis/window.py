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
the long run. Goodput is the same sum over the in-SLO requests; tokens/s is the throughput
times the mean answer's tokens (every success of the repeat: all complete, so their mean is not
biased to the short answers a window's completions favour); latency quantiles use the requests
that complete inside ``(open, close]``. A failed request frees its user like a success but never
counts.
Two corrections keep the count honest at the edges. Both edges are completion epochs of one
user: counted from its own completion a user's cycles are fresh draws, not the length-biased
cycle that spans an arbitrary instant, so the share sum reads high by the cycle's CV^2 requests
(renewal-reward theory, :func:`edge_excess`), which is subtracted. And the requests running at
the close finish in the drain, faster than at the steady state, so their shares come from the
window's completed lives that outlive their age at the close (:func:`_close_shares`).
Why completions and not Little's law (``vus / mean latency``): Little's law over the whole cell
read a 1-slot server at 16 users 26 % high (the first round's short waits), and +9 % where the
last round ran 4 of 8. The window estimator reads lock-step, clustered and lognormal (sigma up to
0.5) servers with 1-16 slots within 2 % at the shipped cell sizes, whether the batch slows each
request a little (GPU-like) or ten-fold (2-core CPU-like): -0.0..+1.0 % over 1,000 runs a shape,
the whole 95 % interval of each bias inside +-2 % (tests/analysis/test_throughput_estimator.py).
Not claimed (docs/decisions.md): heavier tails (sigma 1), a bimodal mix of answer lengths, and
many failed requests (fast failures or timeouts) at 16 users.
Little's law stays as a check: the mean number in
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
MIN_EXCESS_REQUESTS = 5  # fewest completed window lives that estimate the edge corrections (edge_excess, _close_shares)
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
    t_close = requests["start_ts"].max()
    if len(requests) < vus:
        return t_close, t_close
    # the vus-th completion: sorted as datetime64 (NaT last), read back from the column (its tz)
    k = np.argpartition(_ns(requests["end_ts"]), vus - 1)[vus - 1]
    t_open = requests["end_ts"].iloc[k]
    return (t_open, t_close) if t_close > t_open else (t_close, t_close)


def window_requests(requests: pd.DataFrame, executor: str = "constant-arrival-rate", vus: int | None = None
                    ) -> pd.DataFrame:
    """The window's requests: started inside it (open loop), completed inside it (closed loop)."""
    if requests.empty:
        return requests
    t0, t1 = steady_window(requests, executor, vus)
    return requests[_in_window(*_times(requests), t0, t1, executor, vus)]


def _in_window(start: np.ndarray, end: np.ndarray, t0: pd.Timestamp, t1: pd.Timestamp, executor: str,
               vus: int | None) -> np.ndarray:
    """The mask of :func:`window_requests` for the window (t0, t1] (``start``, ``end``: :func:`_times`)."""
    if executor in OPEN_LOOP or not vus:
        return (start >= _at(t0)) & (start <= _at(t1))
    return (end > _at(t0)) & (end <= _at(t1))


def min_requests(q: float) -> int:
    """Fewest requests for a q-quantile to be more than the sample maximum: n (1-q) >= 1
    (p50: 2, p95: 20, p99: 100)."""
    return max(2, int(np.ceil(1 / (1 - q) - 1e-9)))


# The window's arithmetic runs on numpy arrays: repeat_metrics is called once per repeat x cell
# by compare, capacity and tune, and thousands of times by the statistics simulations
# (tests/analysis/test_stats.py), where pandas' per-call overhead on 20-50 rows was most of the
# cost. The numbers are pandas' to the bit (tests/analysis/test_window.py): seconds as pandas'
# total_seconds computes them, sums that skip NaN as pandas' do (NaN filled with 0, then numpy's
# sum over the same values in the same order).

def _ns(col: pd.Series) -> np.ndarray:
    """A datetime column (tz-aware or not, any unit) as datetime64[ns] (UTC); NaT stays NaT."""
    return col.to_numpy(dtype="datetime64[ns]")


def _at(t: pd.Timestamp) -> np.datetime64:
    """A window edge as datetime64[ns] (UTC), comparable with :func:`_ns`."""
    return np.datetime64(pd.Timestamp(t).value, "ns")


def _seconds(td: np.ndarray) -> np.ndarray:
    """timedelta64[ns] as float seconds (NaT: NaN), computed as pandas' ``total_seconds`` does:
    whole seconds + the rest / 1e9."""
    whole, rest = np.divmod(td.view("i8"), 1_000_000_000)
    return np.where(np.isnat(td), np.nan, whole + rest / 1e9)


def _sum(x: np.ndarray) -> float:
    """pandas' ``Series.sum()`` (NaN skipped) of a float array."""
    return float(np.where(np.isnan(x), 0.0, x).sum())


def _mean(x: np.ndarray) -> float:
    """pandas' ``Series.mean()`` (NaN skipped; none left: NaN) of a float array."""
    n = int(np.count_nonzero(~np.isnan(x)))
    return _sum(x) / n if n else np.nan


def _times(requests: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) of every request as datetime64[ns] (:func:`_ns`)."""
    return _ns(requests["start_ts"]), _ns(requests["end_ts"])


def _seconds_inside(start: np.ndarray, end: np.ndarray, t0: pd.Timestamp, t1: pd.Timestamp) -> np.ndarray:
    """Per request, the seconds of its life (``start`` to ``end``, :func:`_times`) inside [t0, t1]."""
    lo, hi = sorted((_at(t0), _at(t1)))
    return _seconds(np.clip(end, lo, hi) - np.clip(start, lo, hi))


def _close_shares(share: np.ndarray, inside: np.ndarray, life: np.ndarray, start: np.ndarray, end: np.ndarray,
                  t1: pd.Timestamp, in_win: np.ndarray) -> np.ndarray:
    """``share`` with the requests still running at the close re-estimated. After the last start
    the batch shrinks as users run out of work, so those requests finish faster than at the steady
    state and their observed lives understate it (16 users on a server whose time per token grows
    ten-fold with the batch read +3.5 % with observed lives, sigma 0.5). Their lives after the close are not
    used: a request of age ``a`` at the close is a steady-state life known to exceed ``a``, so its
    share is the mean of ``inside / x`` over the window's completed lives ``x > a`` (the steady
    lives this repeat measured). Where no completed life exceeds its age, or the window has fewer
    than :data:`MIN_EXCESS_REQUESTS` completed lives to draw on, its own life is kept."""
    hi = _at(t1)
    at_close = (start <= hi) & (end > hi)  # a cut request (no end) is not among them: its share stays NaN
    x = life[in_win]
    x = x[~np.isnan(x)]
    if not at_close.any() or len(x) < MIN_EXCESS_REQUESTS:
        return share
    age = _seconds(hi - start[at_close])
    longer = x[None, :] > age[:, None]
    k = longer.sum(axis=1)
    mean_inv = np.where(longer, 1.0 / np.maximum(x[None, :], 1e-9), 0.0).sum(axis=1) / np.maximum(k, 1)
    out = share.copy()
    out[at_close] = np.where(k > 0, inside[at_close] * mean_inv, share[at_close])
    return out


def edge_excess(life: np.ndarray, reward: np.ndarray) -> float:
    """The expected excess of a closed-loop window's reward-weighted share sum over the reward the
    window's length earns at the steady rate, estimated from the window's requests (``life``:
    seconds each request took, start to end; ``reward``: what each counts, e.g. 1 per success).

    Both edges of the window are completion epochs of a user (the ``vus``-th completion opens it;
    the last start, which is a user's completion, closes it). Seen from one of its own completions,
    a user's cycles are fresh draws, not the length-biased cycle that spans an arbitrary instant, so
    the reward it accrues from that edge reads high by ``(E[R] var(X) - E[X] cov(R, X)) / (2
    E[X]^2)`` (renewal-reward theory; X: a cycle, the request's life, as there is no think time).
    Two edges: twice that. For a count (R = 1) it is the cycle's CV^2, ~0.28 requests for
    lognormal sigma 0.5 over a window of ~20: +1.4 %; for tokens proportional to time it is 0.
    Sample moments (ddof 1); fewer than :data:`MIN_EXCESS_REQUESTS`: 0 (the correction is ~1 % of
    a shipped window's count, and a CV^2 from two answers is noise that clamped the rate to 0 in
    1-5 % of simulated runs)."""
    ok = ~np.isnan(life)
    x, r = life[ok], np.nan_to_num(reward[ok])
    if len(x) < MIN_EXCESS_REQUESTS or x.mean() <= 0:
        return 0.0
    cov = np.cov(np.vstack([r, x]))  # [[var R, cov RX], [cov RX, var X]]
    return float((r.mean() * cov[1, 1] - x.mean() * cov[0, 1]) / x.mean() ** 2)


def in_flight(requests: pd.DataFrame, t0: pd.Timestamp, t1: pd.Timestamp) -> float:
    """Mean number of requests in flight over [t0, t1], from the requests' own start/end times."""
    span = (t1 - t0).total_seconds()
    return _sum(_seconds_inside(*_times(requests), t0, t1)) / span if span > 0 else np.nan


def repeat_metrics(requests: pd.DataFrame, slo_e2e_ms: float, executor: str = "shared-iterations",
                   vus: int | None = None, tokens: pd.Series | None = None) -> dict:
    """One repeat of one cell: throughput and goodput (successful requests/s; goodput: within the
    SLO's e2e bound) and tokens/s (``tokens``: output tokens per request, indexed like
    ``requests``) over the window's requests, the error rate over every measured request, latency
    quantiles of the window's successful requests (NaN where too few for that quantile), and the
    Little's-law check (closed loop). See the module docstring."""
    ok = requests["ok"].to_numpy(bool)
    out = {"requests": len(requests), "errors": int(np.count_nonzero(~ok))}
    out["error_rate"] = out["errors"] / out["requests"] if out["requests"] else np.nan
    empty = {"window_s": np.nan, "window_requests": 0, "throughput": np.nan, "goodput": np.nan,
             "tokens_per_s": np.nan, "little_ratio": np.nan, **{k: np.nan for k in QUANTILES}}
    if requests.empty:
        return {**out, **empty, "throughput": 0.0, "goodput": 0.0}
    t0, t1 = steady_window(requests, executor, vus)
    span = (t1 - t0).total_seconds()
    start, end = _times(requests)
    in_win = _in_window(start, end, t0, t1, executor, vus)
    if span <= 0 or not in_win.any():
        return {**out, **empty}
    duration = requests["duration_ms"].to_numpy(float)
    tok_each = None if tokens is None else tokens.reindex(requests.index).to_numpy(float)
    little = np.nan
    if executor not in OPEN_LOOP and vus:  # each request's share of its life inside the window (module docstring)
        inside = _seconds_inside(start, end, t0, t1)
        life = _seconds(end - start)
        share = _close_shares(inside / np.maximum(life, 1e-9), inside, life, start, end, t1, in_win)  # no end: NaN

        def rate(reward: np.ndarray) -> float:  # shares weighted by reward, less the edges' excess
            return max(0.0, _sum(share * reward) - edge_excess(life[in_win], reward[in_win])) / span

        in_slo = ok & (duration <= slo_e2e_ms)
        throughput, goodput = rate(ok.astype(float)), rate(in_slo.astype(float))
        # tokens/s: the same rate x the mean answer's tokens (module docstring)
        tok = np.nan if tok_each is None else throughput * _mean(tok_each[ok])
        # Little's law: measured in flight vs what the completion rate and latency imply (failed
        # requests hold a VU too, so all of them count here)
        implied = rate(np.ones(len(ok))) * _mean(duration[in_win]) / 1000
        held = _sum(inside) / span  # in_flight()
        little = implied / held if held > 0 else np.nan  # a cell cut by a dead target can hold none
    else:
        done_ok = (end > _at(t0)) & (end <= _at(t1)) & ok
        throughput = int(done_ok.sum()) / span
        goodput = int((done_ok & (duration <= slo_e2e_ms)).sum()) / span
        tok = np.nan if tok_each is None else _sum(tok_each[done_ok]) / span
    ok_ms = duration[in_win & ok]
    out.update(window_s=span, window_requests=int(in_win.sum()), throughput=throughput, goodput=goodput,
               tokens_per_s=tok, little_ratio=little, **{k: np.nan for k in QUANTILES})
    have = [k for k, q in QUANTILES.items() if len(ok_ms) >= min_requests(q)]
    if have:  # one sort for the quantiles that have enough requests
        out.update(zip(have, np.quantile(ok_ms, [QUANTILES[k] for k in have]).tolist()))
    return out
