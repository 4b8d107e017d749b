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
from collections.abc import Mapping

import numba
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
    """The long-run completion rate of the closed system, exact for any ``sigma``: with no think
    time every user always has a request in the system, so ``b = min(vus, slots)`` run at once
    and the server does ``b / (1 + alpha (b - 1))`` work units a second; each request needs
    ``work_mean`` of them on average (renewal-reward)."""
    b = min(vus, slots)
    return b / (work_mean * (1 + alpha * (b - 1)))


def open_loop_batch(arrivals_s: np.ndarray, slots: int, alpha: float = 0.05, sigma: float = 0.0,
                    work_mean: float = 1.0, prefill_share: float = 0.1, speed=1.0, seed: int = 0,
                    speed_path: tuple[np.ndarray, np.ndarray] | None = None) -> BatchTimes:
    """The ``open_loop`` server run for many independent replicates at once, with per-request
    TTFT and TPOT: the same processor sharing over ``slots`` with a FIFO queue, exact and
    event-driven, each replicate with its own clock (compiled: :func:`_ps_fifo_events`).

    ``arrivals_s``: (replicates, n) sorted arrival times (a (n,) array is one replicate);
    ``speed``: the engine speed factor of each replicate (scalar or (replicates,)): a
    replicate's service rate is multiplied by it, so its latencies at rate ``r`` equal those of
    a speed-1 engine at rate ``r / speed``, divided by ``speed``. A request's first
    ``prefill_share`` of its work is its prefill: TTFT = queue wait + the time to do that part;
    TPOT = the time for the rest / the rest (work units stand for tokens). Returns seconds, a
    :class:`BatchTimes` of (replicates, n) arrays: ``ttft``, ``tpot``, ``e2e``, ``end`` (completion time).

    ``speed_path``: ``(times, factors)``, each (replicates, m): from ``times[r, k]`` on (sorted,
    seconds), replicate ``r`` runs at ``speed[r] * factors[r, k]`` (an engine whose decode
    speed swings while it runs: :func:`telegraph_path`).
    """
    if slots < 1:  # the compiled loop does not check its bounds
        raise ValueError(f"slots must be at least 1, got {slots}")
    arr = np.atleast_2d(np.asarray(arrivals_s, float))
    n_rep, n = arr.shape
    rng = np.random.default_rng(seed)
    if sigma > 0:
        work = rng.lognormal(np.log(work_mean) - sigma ** 2 / 2, sigma, size=(n_rep, n))
    else:
        work = np.full((n_rep, n), float(work_mean))
    decode = work * (1 - prefill_share)
    speed = np.broadcast_to(np.asarray(speed, float), (n_rep,))
    if speed_path is not None:
        times, factors = (np.atleast_2d(np.asarray(x, float)) for x in speed_path)
        if np.isnan(times).any() or (np.diff(times, axis=1) < 0).any() or not (factors > 0).all():
            raise ValueError("speed_path: change times must be sorted per replicate and factors > 0")
    return _ps_fifo(arr, work, decode, speed, slots, alpha, speed_path)


def looks_at_speeds(rate: float, reps: int, look: int, n_looks: int, warm: int, sigma_look: float,
                    seed: int, **server) -> dict:
    """A constant-rate step run as ``n_looks`` separate looks, as the product runs them (each its
    own k6 schedule, the engine drained between): each look ``warm + look`` arrivals at ``rate``
    on a fresh server whose speed is drawn per look and replicate, lognormal with log-sd
    ``sigma_look`` (an engine that runs a few per cent faster or slower from one look to the
    next, as the CPU engine does: data/capacity-evidence/2026-12-04-local-cpu), the first
    ``warm`` requests of each look cut. Returns :func:`open_loop_batch`'s arrays, the looks
    side by side: (reps, n_looks * look)."""
    rng = np.random.default_rng(seed)
    parts = []
    for k in range(n_looks):
        speed = np.exp(rng.normal(0.0, sigma_look, reps)) if sigma_look > 0 else 1.0
        o = open_loop_batch(np.arange(warm + look)[None, :] / np.full((reps, 1), rate), speed=speed,
                            seed=seed * 100 + k, **server)
        parts.append({key: v[:, warm:] for key, v in o.items()})
    return {key: np.hstack([p[key] for p in parts]) for key in parts[0]}


def telegraph_path(n_rep: int, horizon_s: float, slow: float, mean_fast_s: float, mean_slow_s: float,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A speed path per replicate that alternates between 1 and ``slow``, staying in each state an
    exponential time of mean ``mean_fast_s`` / ``mean_slow_s`` (a random telegraph process),
    starting in its stationary state, up to ``horizon_s``: decode-speed excursions of a second
    or two, as the H200 records of session 7 show (data/gpu-evidence/2026-12-04-h200-session7)."""
    p_slow = mean_slow_s / (mean_fast_s + mean_slow_s)
    m = int(horizon_s / min(mean_fast_s, mean_slow_s) * 2 + 20)
    state = rng.random(n_rep) < p_slow  # True: slow
    means = np.where((np.arange(m)[None, :] % 2 == 0) == state[:, None], mean_slow_s, mean_fast_s)
    times = np.concatenate([np.zeros((n_rep, 1)), np.cumsum(rng.exponential(means), axis=1)[:, :-1]], axis=1)
    factors = np.where((np.arange(m)[None, :] % 2 == 0) == state[:, None], slow, 1.0)
    return times, factors


class BatchTimes(Mapping):
    """:func:`open_loop_batch`'s result: ``ttft``, ``tpot``, ``e2e`` and ``end`` (seconds,
    (replicates, n) arrays), each computed when it is read. A coverage test of 2,000 x 4,050
    requests reads one of them; computing all four there took ~40 % of the simulation's time,
    most of it the kernel's first touch of fresh memory on a VM. It holds the arrival array it
    was given, not a copy: changing that array later changes what is read."""

    KEYS = ("ttft", "tpot", "e2e", "end")

    def __init__(self, arr: np.ndarray, decode: np.ndarray, first: np.ndarray, end: np.ndarray):
        self._arr, self._decode, self._first, self._end = arr, decode, first, end

    def __getitem__(self, key: str) -> np.ndarray:
        if key == "ttft":
            return self._first - self._arr
        if key == "tpot":
            return (self._end - self._first) / np.maximum(self._decode, 1e-12)
        if key == "e2e":
            return self._end - self._arr
        if key == "end":
            return self._end.copy()
        raise KeyError(key)

    def __iter__(self):
        return iter(self.KEYS)

    def __len__(self) -> int:
        return len(self.KEYS)


def _ps_fifo(arr: np.ndarray, work: np.ndarray, decode: np.ndarray, speed: np.ndarray, slots: int,
             alpha: float, speed_path: tuple[np.ndarray, np.ndarray] | None = None) -> BatchTimes:
    """:func:`open_loop_batch`'s server on (replicates, n) arrivals, work and decode work: the
    arrays for :func:`_ps_fifo_events`, which fills the first-token and completion times."""
    n_rep, n = arr.shape
    denom = 1.0 + alpha * np.maximum(np.arange(slots + 1) - 1, 0)  # by requests running
    if speed_path is None:  # a replicate's speed-change times and factors, each row ending in inf
        chg_t, chg_v = np.full((n_rep, 1), np.inf), np.ones((n_rep, 1))
    else:
        chg_t = np.concatenate([np.asarray(speed_path[0], float), np.full((n_rep, 1), np.inf)], axis=1)
        chg_v = np.concatenate([np.asarray(speed_path[1], float), np.ones((n_rep, 1))], axis=1)
    arr, work, decode = (np.ascontiguousarray(x) for x in (arr, work, decode))
    first, end = np.full((n_rep, n), np.nan), np.full((n_rep, n), np.nan)
    _ps_fifo_events(arr, work, decode, np.array(speed, float), slots, denom, chg_t, chg_v, first, end)
    return BatchTimes(arr, decode, first, end)


# Compiled (numba) because the coverage tests simulate ~160 million request events per noise
# level: 2,000 searches of up to 4,000-request steps. The numpy version before it (one round of
# array operations per event, for every replicate at once) took ~55 s of CPU per noise level;
# this loop ~6 s, with the same floating-point operations in the same order, so its results are
# identical to the last bit (checked on 2,000 x 4,050 requests, with and without a speed path).
# cache=True keeps the machine code in __pycache__ (compiled once per checkout, ~2 s).
@numba.njit(cache=True)
def _ps_fifo_events(arr, work, decode, speed, slots, denom, chg_t, chg_v, first, end):
    """Fill ``first`` (first-token time) and ``end`` (completion time), (replicates, n), one
    replicate after another, event by event. A request's prefill work is its work less its
    decode work.

    Processor sharing advances every running request by the same work, so one clock (``w``: the
    work each running request has done since the start) serves them all: a request admitted at
    clock w0 ends its prefill at w0 + its prefill work and completes at w0 + its work. The rate
    (``speed / denom[b]`` with ``b`` running) changes only when a request is admitted or
    completes, or the speed path changes, so those are the events: the clock runs to the
    earliest of the next completion, the next arrival while a slot is free, and the next speed
    change; a prefill that ends inside the step is dated where the clock crosses it; a queued
    request is admitted at a completion. The running requests fill slots [0, b) (a finished
    one's slot takes the last one's); at a tie the lowest slot completes first and the next one
    at a step of zero."""
    n_rep, n = arr.shape
    inf = np.inf
    fin = np.empty(slots)  # clock at which the slot's request completes (inf: empty)
    pre = np.empty(slots)  # clock at which its prefill ends (inf: ended, or empty)
    who = np.zeros(slots, np.int64)  # request index in each slot
    for r in range(n_rep):
        fin[:] = inf
        pre[:] = inf
        w, t, b, adm = 0.0, 0.0, 0, 0  # clock, time, requests running, requests admitted so far
        sp, nxt = speed[r], 0
        while chg_t[r, nxt] <= 0:  # the changes at time 0
            sp = speed[r] * chg_v[r, nxt]
            nxt += 1
        while adm < n or b > 0:
            rate = sp / denom[b]
            j = 0  # the slot that completes next
            for s in range(1, slots):
                if fin[s] < fin[j]:
                    j = s
            t_new = t + (fin[j] - w) / rate  # inf when nothing runs
            if b < slots and adm < n and arr[r, adm] < t_new:
                t_new = arr[r, adm]
            if chg_t[r, nxt] < t_new:
                t_new = chg_t[r, nxt]
            w_old, t_old = w, t
            w = w + (t_new - t) * rate
            t = t_new
            if chg_t[r, nxt] <= t + 1e-12:
                sp = speed[r] * chg_v[r, nxt]
                nxt += 1
            thr = w + 1e-9
            for s in range(slots):  # prefills that ended inside the step
                if pre[s] <= thr:
                    first[r, who[s]] = t_old + (pre[s] - w_old) / rate
                    pre[s] = inf
            if fin[j] <= thr:  # the completion (one per step)
                last = b - 1
                end[r, who[j]] = t
                fin[j], pre[j], who[j] = fin[last], pre[last], who[last]
                fin[last], pre[last] = inf, inf
                b -= 1
            while b < slots and adm < n and arr[r, adm] <= t + 1e-12:  # admit while a slot is free
                who[b], fin[b], pre[b] = adm, w + work[r, adm], w + (work[r, adm] - decode[r, adm])
                adm += 1
                b += 1


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
