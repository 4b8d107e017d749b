"""A request-level queueing simulator of an LLM server, for estimator and decision tests.

The server runs at most ``slots`` requests at once (vLLM's ``max_num_seqs``); more wait in a
FIFO queue. Running requests share the engine as in continuous batching: with ``b`` of them
running, each advances at ``1 / (1 + alpha (b - 1))`` work units per second, so the time per
token grows with the batch while the server's total rate ``b / (1 + alpha (b - 1))`` still
rises. A request's work is ``work_mean`` (``sigma`` = 0: every answer the same length, the
batches stay in lock-step) or lognormal with that mean and log-sd ``sigma``.

Two load shapes, as k6 drives them:
- ``closed_loop``: ``vus`` users share ``n`` iterations (k6 ``shared-iterations``, no think
  time): a user starts its next request the moment its last one ends, while iterations remain.
- ``open_loop``: arrivals at fixed times (a constant-rate step), whatever the backlog.

Both return a k6-shaped frame (``start_ts``, ``end_ts``, ``duration_ms``, ``ok``, ``vu``) plus
the ground truth the tests compare against (``true_closed_rate``: the long-run completion rate).
Time is in seconds inside, milliseconds/timestamps outside. Exact event-driven simulation.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import pandas as pd

T0 = pd.Timestamp("2026-12-01", tz="UTC")


class Server:
    """Processor sharing over at most ``slots`` running requests; FIFO queue behind them."""

    def __init__(self, slots: int, alpha: float, sigma: float, work_mean: float, rng: np.random.Generator):
        self.slots, self.alpha, self.sigma, self.work_mean, self.rng = slots, alpha, sigma, work_mean, rng
        self.running: dict[int, float] = {}  # request -> remaining work
        self.queue: deque[tuple[int, float]] = deque()

    def work(self) -> float:
        if self.sigma <= 0:
            return self.work_mean
        return float(self.rng.lognormal(np.log(self.work_mean) - self.sigma ** 2 / 2, self.sigma))

    def admit(self, i: int) -> None:
        w = self.work()
        if len(self.running) < self.slots:
            self.running[i] = w
        else:
            self.queue.append((i, w))

    def rate(self) -> float:
        return 1.0 / (1.0 + self.alpha * (len(self.running) - 1))

    def next_completion_in(self) -> float:
        return min(self.running.values()) / self.rate() if self.running else np.inf

    def advance(self, dt: float) -> list[int]:
        """Run for ``dt`` seconds; returns the requests that finished (then refills slots)."""
        if not self.running:
            return []
        r = self.rate()
        for k in self.running:
            self.running[k] -= dt * r
        done = [k for k, w in self.running.items() if w <= 1e-9]
        for k in done:
            del self.running[k]
        while self.queue and len(self.running) < self.slots:
            j, w = self.queue.popleft()
            self.running[j] = w
        return done


def _frame(vu, start, end) -> pd.DataFrame:
    start, end = np.asarray(start, float), np.asarray(end, float)
    return pd.DataFrame({"vu": np.asarray(vu, int), "start_ts": T0 + pd.to_timedelta(start, "s"),
                         "end_ts": T0 + pd.to_timedelta(end, "s"), "duration_ms": (end - start) * 1000.0,
                         "ok": True})


def closed_loop(vus: int, n: int, slots: int, alpha: float = 0.05, sigma: float = 0.0, work_mean: float = 1.0,
                seed: int = 0) -> pd.DataFrame:
    """``vus`` users, ``n`` shared iterations, no think time (see the module docstring)."""
    srv = Server(slots, alpha, sigma, work_mean, np.random.default_rng(seed))
    vu, start, end = [], [], []
    t = 0.0

    def issue(v: int) -> None:
        if len(vu) < n:
            vu.append(v), start.append(t), end.append(np.nan)
            srv.admit(len(vu) - 1)

    for v in range(vus):
        issue(v)
    while srv.running:
        dt = srv.next_completion_in()
        t += dt
        for k in srv.advance(dt):
            end[k] = t
            issue(vu[k])
    return _frame(vu, start, end)


def open_loop(arrivals_s: np.ndarray, slots: int, alpha: float = 0.05, sigma: float = 0.0, work_mean: float = 1.0,
              seed: int = 0) -> pd.DataFrame:
    """Requests arrive at ``arrivals_s`` (sorted, seconds) whatever the backlog."""
    srv = Server(slots, alpha, sigma, work_mean, np.random.default_rng(seed))
    arrivals_s = np.asarray(arrivals_s, float)
    end = np.full(len(arrivals_s), np.nan)
    t, i = 0.0, 0
    while i < len(arrivals_s) or srv.running:
        to_arrival = arrivals_s[i] - t if i < len(arrivals_s) else np.inf
        dt = min(srv.next_completion_in(), to_arrival)
        t += dt
        for k in srv.advance(dt):
            end[k] = t
        if i < len(arrivals_s) and t >= arrivals_s[i] - 1e-12:
            srv.admit(i)
            i += 1
    return _frame(np.zeros(len(arrivals_s)), arrivals_s, end)


def true_closed_rate(vus: int, slots: int, alpha: float = 0.05, sigma: float = 0.0, work_mean: float = 1.0) -> float:
    """The long-run completion rate of the closed system: a 40,000-request run, both ends cut."""
    if sigma <= 0:  # deterministic: lock-step rounds of min(vus, slots) requests
        b = min(vus, slots)
        return b / (work_mean * (1 + alpha * (b - 1)))
    e = np.sort(closed_loop(vus, 40_000, slots, alpha, sigma, work_mean, seed=12345)["end_ts"].to_numpy())
    lo, hi = e[5000], e[-5000]
    return (len(e) - 10_000) / ((hi - lo) / np.timedelta64(1, "s"))


def open_loop_batch(arrivals_s: np.ndarray, slots: int, alpha: float = 0.05, sigma: float = 0.0,
                    work_mean: float = 1.0, prefill_share: float = 0.1, speed=1.0, seed: int = 0) -> dict:
    """The ``open_loop`` server run for many independent replicates at once, with per-request
    TTFT and TPOT: the same processor sharing over ``slots`` with a FIFO queue, exact and
    event-driven, vectorized over replicates (each keeps its own clock).

    ``arrivals_s``: (replicates, n) sorted arrival times (a (n,) array is one replicate);
    ``speed``: the engine speed factor of each replicate (scalar or (replicates,)): a
    replicate's service rate is multiplied by it, so its latencies at rate ``r`` equal those of
    a speed-1 engine at rate ``r / speed``, divided by ``speed``. A request's first
    ``prefill_share`` of its work is its prefill: TTFT = queue wait + the time to do that part;
    TPOT = the time for the rest / the rest (work units stand for tokens). Returns seconds,
    (replicates, n) arrays: ``ttft``, ``tpot``, ``e2e``, ``end`` (completion time).
    """
    arr = np.atleast_2d(np.asarray(arrivals_s, float))
    n_rep, n = arr.shape
    rng = np.random.default_rng(seed)
    if sigma > 0:
        work = rng.lognormal(np.log(work_mean) - sigma ** 2 / 2, sigma, size=(n_rep, n))
    else:
        work = np.full((n_rep, n), float(work_mean))
    decode = work * (1 - prefill_share)
    speed = np.broadcast_to(np.asarray(speed, float), (n_rep,))
    rows = np.arange(n_rep)
    rem = np.full((n_rep, slots), np.inf)  # remaining work per slot (inf: empty)
    dec = np.full((n_rep, slots), np.inf)  # the slot's request's decode work (inf: empty)
    who = np.full((n_rep, slots), -1)  # request index in each slot
    t = np.zeros(n_rep)
    arrived = np.zeros(n_rep, int)  # requests arrived so far (queue = [admitted, arrived))
    admitted = np.zeros(n_rep, int)
    first = np.full((n_rep, n), np.nan)
    end = np.full((n_rep, n), np.nan)
    arr_pad = np.concatenate([arr, np.full((n_rep, 1), np.inf)], axis=1)
    b = np.zeros(n_rep, int)
    while True:
        live = (arrived < n) | (b > 0)
        if not live.any():
            break
        rate = speed / (1.0 + alpha * np.maximum(b - 1, 0))
        # next event: a completion, a prefill finishing (rem reaching dec), or an arrival
        gap = rem - dec
        to_work = np.where(gap > 0, gap, rem).min(axis=1)  # empty slots: inf - inf = nan -> rem = inf
        dt = np.minimum(to_work / rate, arr_pad[rows, arrived] - t)
        dt[~live] = 0.0
        t += dt
        rem -= (dt * rate)[:, None]
        hit = (gap > 0) & (rem <= dec + 1e-9)
        if hit.any():
            r_, s_ = np.nonzero(hit)
            first[r_, who[r_, s_]] = t[r_]
        done = rem <= 1e-9
        if done.any():
            r_, s_ = np.nonzero(done)
            end[r_, who[r_, s_]] = t[r_]
            rem[done], dec[done], who[done] = np.inf, np.inf, -1
            b = b - done.sum(axis=1)
        arrived += (arrived < n) & (arr_pad[rows, arrived] <= t + 1e-12)
        while True:  # fill free slots from the FIFO queue
            can = (b < slots) & (admitted < arrived)
            if not can.any():
                break
            r_ = np.nonzero(can)[0]
            s_ = (who[r_] < 0).argmax(axis=1)
            k = admitted[r_]
            who[r_, s_], rem[r_, s_], dec[r_, s_] = k, work[r_, k], decode[r_, k]
            admitted += can
            b += can
    return {"ttft": first - arr, "tpot": (end - first) / np.maximum(decode, 1e-12), "e2e": end - arr, "end": end}


def v_schedule(kind: str, n: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` scheduled send times (seconds from 0) at mean ``rate``: ``constant`` (k6's grid),
    ``poisson`` (exponential gaps, CV 1) or ``trace`` (bursty lognormal gaps, CV about 2, as a
    replayed trace's own gaps)."""
    if kind == "constant":
        return np.arange(n) / rate
    if kind == "poisson":
        gaps = rng.exponential(1 / rate, n - 1)
    elif kind == "trace":
        s = np.sqrt(np.log(1 + 2.0 ** 2))  # lognormal log-sd for CV 2
        gaps = rng.lognormal(np.log(1 / rate) - s ** 2 / 2, s, n - 1)
    else:
        raise ValueError(kind)
    return np.concatenate([[0.0], np.cumsum(gaps)])


def v_send_lags_ms(n: int, rng: np.random.Generator, mean_ms: float = 0.5) -> np.ndarray:
    """A clean client's send lags (ms): exponential, mean ``mean_ms``, far inside a 10 ms bound."""
    return rng.exponential(mean_ms, n)
