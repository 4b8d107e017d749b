"""Runs that prove their own validity: per cell (a capacity step is a cell), VALID or INVALID
with the reasons, from the tidy tables of :mod:`inferlab.runs.reader`.

Every check returns a :class:`Check`: its name, the measured value, the threshold, a status
(``pass``, ``fail`` or ``not checked``) and a one-line reason. A cell is INVALID when any check
fails; a check without its data says ``not checked (why)`` and never invalidates. The checks and
their thresholds (the decisions; tests/analysis/test_validity.py injects each failure into clean
simulated runs and requires clean ones VALID >= 95 % of the time, all checks combined):

- ``arrivals`` (open loop): the sends against their own schedule, by dispersion: the CV of the
  actual inter-send gaps must match the schedule's own CV (a constant rate: 0; a Poisson or
  trace schedule: the CV of its scheduled gaps; only where the schedule itself is not recorded,
  the kind's nominal CV: constant 0, Poisson 1, with its sampling error) within
  ``5 % x CV + sqrt(2) x LAG_P99_MS / mean gap``: the CV that jitter within the lag bound can add
  (a gap is the difference of two sends), so a clean client never fails it, while sends that
  bunch, or ignore the schedule's shape, do. Never tested against 1 (a constant-rate schedule is
  not Poisson).
- ``send_lag_p99``: the client's send lag (actual send - scheduled time) p99 <= ``LAG_P99_MS`` =
  10 ms, inference-perf's bar (interpolated between the two largest where fewer than 100). Workload
  cells: chat.js's own ``send_lag_ms``. Payload constant-rate cells record no schedule: k6 starts
  iteration i at scenario start + i / rate, so the lag is estimated against that grid, anchored
  at the least-late send (a lower bound of the true lag). Sends due in the first second
  (``STARTUP_S``) are not judged: a fresh k6 process sends its first few up to ~50 ms late while
  it starts its VUs, at any rate (measured by perf/k6_ceiling.py), a fixed start-up cost.
- ``dropped_sends``: k6's ``dropped_iterations`` (no free VU at a scheduled time), and for a
  workload the planned sessions not sent: any is a failure.
- ``in_flight`` (closed loop): the mean number of requests in flight over the steady window,
  from the requests' own timestamps, against the VUs the cell drove: a clean closed loop without
  think time holds exactly ``vus`` (k6's few microseconds between iterations aside), so the
  tolerance is tight (``IN_FLIGHT_TOLERANCE`` = 5 %) and a clean run essentially never fails
  it, while a stalled or starved client (VUs not sending) does. Chosen over Little's law alone,
  whose window boundaries make it noisy at the shipped cell sizes.
- ``little`` (closed loop): Little's law over the window (completions / span x their mean
  latency, against the measured mean in flight) within ``LITTLE_TOLERANCE`` plus the most the
  window's two boundaries can move it (``max latency / span``: requests straddling an end count
  whole in one term and in part in the other); it catches latencies that disagree with the
  timestamps and windows cut badly. Windows shorter than two mean latencies: not checked.
- ``stationarity``: a trend of latency against time inside the window (send time in an open
  loop, completion time in a closed loop, the way each window selects): OLS slope with a
  Newey-West (Bartlett) standard error, lag ``ceil(n^(1/3))``, since queued latencies are
  autocorrelated, on log latency (a relative change; latencies are skewed); windows with fewer
  than 30 requests or shorter than 3 mean latencies (one or two closed-loop rounds, whose
  structure is not a trend) are not checked; fails when ``|t| > TREND_T`` *and* the fitted
  change across the window exceeds
  ``TREND_CHANGE`` of the mean latency (a material drift, not a significant wiggle). An open-loop
  step whose completions fall behind its arrivals (< 95 %) is overloaded: its latency grows by
  construction and its verdict is a fail on the SLO, not a fault of the measurement: not checked.
- ``client_cpu``: the host sampler's k6 process CPU. On 2 cores the local engine takes every
  cycle it can (system CPU reads 190-200 % in every shipped local run), so total CPU > 95 % says
  nothing about the client; k6 itself reads 0-6 % of one core there. The client is the limit
  when k6 uses >= ``CLIENT_CPU_PCT`` = 50 % of one core in more than ``CLIENT_CPU_SHARE`` = 10 %
  of the window's samples: what k6 used where it broke down here (``python -m
  inferlab.perf.k6_ceiling`` on this 2-core machine: 34 % of a core at 320 req/s, its ceiling,
  50 % at 640 req/s, where it dropped sends and sent 67 ms late). A k6 starved by the engine
  shows as send lag, not as k6 CPU: the lag checks catch that.
- ``clocks``: every request ends after it starts and its duration matches its timestamps; no
  request outside the cell's recorded time range; where the server's spans exist (same host),
  each span lies inside its client request, all within ``CLOCK_TOLERANCE_MS`` = 50 ms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from ..specs.planning import OPEN_LOOP_EXECUTOR as SCHEDULED  # a workload's open loop
from .window import LITTLE_TOLERANCE, OPEN_LOOP, in_flight, steady_window, window_requests
from .workload import sent_table

LAG_P99_MS = 10.0
IN_FLIGHT_TOLERANCE = 0.05
TREND_T = 3.0
TREND_CHANGE = 0.25
CLIENT_CPU_PCT = 50.0
CLIENT_CPU_SHARE = 0.10
CLOCK_TOLERANCE_MS = 50.0
NOMINAL_CV = {"constant": 0.0, "poisson": 1.0}
RAMP = "ramping-arrival-rate"  # exploratory: no steady state, no fixed schedule
STARTUP_S = 1.0  # sends due in a cell's first second: k6 starting its VUs (50 ms late here), not judged
MIN_GAPS = 10  # fewer inter-send gaps: no dispersion test
MIN_TREND = 30  # fewer window requests: no trend test
MIN_TREND_LATENCIES = 3  # a window shorter than this many mean latencies is one or two rounds: no trend test
MIN_CPU_SAMPLES = 3

Status = Literal["pass", "fail", "not checked"]


@dataclass(frozen=True)
class Check:
    """One check of one cell."""

    name: str
    status: Status
    value: float | None
    threshold: str
    reason: str


@dataclass(frozen=True)
class CellValidity:
    """A cell's checks; ``valid`` unless one failed."""

    cell_id: str
    checks: tuple[Check, ...]
    run_id: str = ""

    @property
    def valid(self) -> bool:
        return not any(c.status == "fail" for c in self.checks)

    @property
    def verdict(self) -> str:
        return "VALID" if self.valid else "INVALID"

    @property
    def reasons(self) -> list[str]:
        return [f"{c.name}: {c.reason}" for c in self.checks if c.status == "fail"]

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)


@dataclass(frozen=True)
class CellInputs:
    """What the checks read for one cell; None where the run did not record it.

    ``requests``: the cell's measured k6 rows (start_ts, end_ts, duration_ms, ok; request_id
    where recorded). ``sends``: workload sends (sent_ms, scheduled_ms, send_lag_ms, turn, as
    :func:`inferlab.analysis.workload.sent_table`). ``dropped``: sends k6 dropped (or planned
    sessions not sent). ``host``: the host sampler's rows (ts, process, metric, value).
    ``spans``: server spans (request_id, start_ts, end_ts). ``cell_range``: the cell's recorded
    start and end. ``arrival``: the workload's arrival kind (constant, poisson, trace)."""

    requests: pd.DataFrame
    executor: str
    vus: int | None = None
    rate: float | None = None
    arrival: str | None = None
    sends: pd.DataFrame | None = None
    dropped: int | None = None
    host: pd.DataFrame | None = None
    spans: pd.DataFrame | None = None
    cell_range: tuple[pd.Timestamp, pd.Timestamp] | None = None
    cell_id: str = ""


def _skip(name: str, why: str, threshold: str = "") -> Check:
    return Check(name, "not checked", None, threshold, f"not checked ({why})")


def _verdict(name: str, ok: bool, value: float, threshold: str, good: str, bad: str) -> Check:
    return Check(name, "pass" if ok else "fail", float(value), threshold, good if ok else bad)


def is_open_loop(executor: str) -> bool:
    return executor in OPEN_LOOP or executor in (SCHEDULED, RAMP)


def _seconds(ts: pd.Series | np.ndarray) -> np.ndarray:
    t = pd.to_datetime(pd.Series(ts), utc=True)
    return ((t - t.min()).dt.total_seconds()).to_numpy(float) if len(t) else np.zeros(0)


def k6_interval_s(rate: float) -> float:
    """k6's gap between iterations of chat.js' constant-arrival-rate scenario: it sends
    ``round(rate x 100)`` per 100 s (load/chat.js)."""
    return 100.0 / max(1, round(rate * 100))


def grid_lag_ms(starts: np.ndarray, rate: float, skip_s: float = STARTUP_S) -> np.ndarray:
    """Send lag (ms) of a constant-rate cell against k6's grid (iteration i due at t0 + i x
    interval), ``starts`` in seconds: t0 is the least-late send, so the lags are a lower bound,
    >= 0. Sends due in the first ``skip_s`` are left out (k6 starting its VUs)."""
    s = np.sort(np.asarray(starts, float))
    due = np.arange(len(s)) * k6_interval_s(rate)
    off = s - due
    return ((off - off.min()) * 1000.0)[due >= skip_s] if len(s) else off


def _schedule(inp: CellInputs) -> tuple[np.ndarray, np.ndarray | None, np.ndarray] | None:
    """(actual send times s, scheduled times s or None, lags ms) of an open-loop cell's first sends."""
    if inp.executor == SCHEDULED:
        s = inp.sends
        if s is None or s.empty or "sent_ms" not in s.columns:
            return None
        first = s[s["turn"] == 0] if "turn" in s.columns else s
        first = first.dropna(subset=["sent_ms"]).sort_values("sent_ms")
        sent = first["sent_ms"].to_numpy("float64") / 1000.0
        sched = first["scheduled_ms"].to_numpy("float64") / 1000.0 if "scheduled_ms" in first else None
        sched = None if sched is None or np.isnan(sched).any() else np.sort(sched)
        lags = np.zeros(0)
        if {"send_lag_ms", "scheduled_ms"} <= set(s.columns):
            lags = s.loc[s["scheduled_ms"] >= STARTUP_S * 1000, "send_lag_ms"].dropna().to_numpy("float64")
        return sent, sched, lags
    if not inp.rate or inp.requests.empty:
        return None
    sent = np.sort(_seconds(inp.requests["start_ts"]))
    return sent, np.arange(len(sent)) * k6_interval_s(inp.rate), grid_lag_ms(sent, inp.rate)


def _cv(gaps: np.ndarray) -> float:
    m = float(np.mean(gaps))
    return float(np.std(gaps, ddof=1) / m) if m > 0 else np.nan


def check_arrivals(inp: CellInputs, lag_ms: float = LAG_P99_MS) -> Check:
    name = "arrivals"
    if not is_open_loop(inp.executor):
        return _skip(name, "closed loop: each send follows an answer, no schedule")
    if inp.executor == RAMP:
        return _skip(name, "a ramp: no fixed schedule recorded")
    sch = _schedule(inp)
    if sch is None or len(sch[0]) < MIN_GAPS + 1:
        return _skip(name, f"fewer than {MIN_GAPS + 1} sends recorded")
    sent, sched, _ = sch
    gaps = np.diff(sent)
    mean_gap = float(np.mean(gaps))
    if sched is not None:
        ref, where, sampling = _cv(np.diff(sched)), "the schedule's own CV", 0.0
    elif inp.arrival in NOMINAL_CV:  # the kind's nominal CV, with its sampling error (sd ~ CV / sqrt(n))
        ref, where = NOMINAL_CV[inp.arrival], f"{inp.arrival}'s nominal CV"
        sampling = 3.5 * max(ref, 1e-9) / np.sqrt(len(gaps)) if ref > 0 else 0.0
    else:
        return _skip(name, "no recorded schedule and no known arrival kind")
    cv = _cv(gaps)
    tol = 0.05 * ref + np.sqrt(2) * lag_ms / 1000.0 / mean_gap + sampling
    ok = abs(cv - ref) <= tol
    return _verdict(name, ok, cv, f"|CV - {ref:.3f}| <= {tol:.3f} ({where})",
                    f"inter-send CV {cv:.3f} matches {where} {ref:.3f}",
                    f"inter-send CV {cv:.3f} departs from {where} {ref:.3f} by more than {tol:.3f}")


def check_send_lag(inp: CellInputs, bound_ms: float = LAG_P99_MS) -> Check:
    name, thr = "send_lag_p99", f"<= {bound_ms:g} ms"
    if not is_open_loop(inp.executor):
        return _skip(name, "closed loop: no schedule to be late for", thr)
    if inp.executor == RAMP:
        return _skip(name, "a ramp: no fixed schedule recorded", thr)
    sch = _schedule(inp)
    if sch is None or not len(sch[2]):
        return _skip(name, "no send times recorded", thr)
    lags = sch[2]
    p99, how = float(np.quantile(lags, 0.99)), f"p99 of {len(lags)}"
    src = "chat.js send_lag_ms" if inp.executor == SCHEDULED else "vs k6's constant-rate grid"
    return _verdict(name, p99 <= bound_ms, p99, thr, f"send lag {how} {p99:.1f} ms ({src})",
                    f"send lag {how} {p99:.1f} ms > {bound_ms:g} ms ({src}): the client set the arrivals")


def check_dropped(inp: CellInputs) -> Check:
    name = "dropped_sends"
    if not is_open_loop(inp.executor):
        return _skip(name, "closed loop: nothing is scheduled, nothing dropped", "0")
    if inp.dropped is None:
        return _skip(name, "k6's dropped_iterations not recorded", "0")
    return _verdict(name, inp.dropped == 0, inp.dropped, "0", "no send dropped",
                    f"{inp.dropped} scheduled sends dropped (no free VU): the offered load was not sent")


def _closed_window(inp: CellInputs) -> tuple[pd.Timestamp, pd.Timestamp, pd.DataFrame] | None:
    t0, t1 = steady_window(inp.requests, inp.executor, inp.vus)
    if t1 <= t0:
        return None
    return t0, t1, window_requests(inp.requests, inp.executor, inp.vus)


def check_in_flight(inp: CellInputs, tol: float = IN_FLIGHT_TOLERANCE) -> Check:
    name, thr = "in_flight", f"within {tol:.0%} of the VUs"
    if is_open_loop(inp.executor) or not inp.vus:
        return _skip(name, "open loop: in flight follows the server, not the VUs", thr)
    w = _closed_window(inp) if not inp.requests.empty else None
    if w is None:
        return _skip(name, "no steady window (too few requests)", thr)
    ratio = in_flight(inp.requests, w[0], w[1]) / inp.vus
    return _verdict(name, abs(ratio - 1) <= tol, ratio, thr, f"mean in flight {ratio:.3f} x VUs",
                    f"mean in flight {ratio:.3f} x the {inp.vus} VUs: the client did not keep its VUs busy")


def check_little(inp: CellInputs) -> Check:
    name, thr = "little", f"within {LITTLE_TOLERANCE:.0%} + max latency / window"
    if is_open_loop(inp.executor) or not inp.vus:
        return _skip(name, "open loop: checked by the send checks", thr)
    w = _closed_window(inp) if not inp.requests.empty else None
    if w is None or w[2].empty:
        return _skip(name, "no steady window (too few requests)", thr)
    t0, t1, done = w
    span = (t1 - t0).total_seconds()
    lat = done["duration_ms"].to_numpy(float) / 1000.0
    if span < 2 * lat.mean():
        return _skip(name, f"window {span:.1f} s is under two mean latencies", thr)
    tol = LITTLE_TOLERANCE + lat.max() / span
    held = in_flight(inp.requests, t0, t1)
    if held <= 0:
        return _skip(name, "nothing in flight in the window (a cut cell)", thr)
    ratio = len(done) / span * lat.mean() / held
    return _verdict(name, abs(ratio - 1) <= tol, ratio, f"within {tol:.1%}",
                    f"throughput x latency / in flight = {ratio:.3f}",
                    f"throughput x latency / in flight = {ratio:.3f}: latencies disagree with the timestamps "
                    "or the window is cut badly")


def hac_trend(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """OLS slope of y on x and its t statistic with a Newey-West (Bartlett) standard error,
    lag ``ceil(n^(1/3))`` (rows in x order). t is 0 for a flat series."""
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    xc = x - x.mean()
    sxx = float(xc @ xc)
    if sxx <= 0:
        return 0.0, 0.0
    b = float(xc @ (y - y.mean())) / sxx
    u = (y - y.mean() - b * xc) * xc
    lag = int(np.ceil(len(x) ** (1 / 3)))
    s = float(u @ u)
    for k in range(1, min(lag, len(x) - 1) + 1):
        s += 2 * (1 - k / (lag + 1)) * float(u[k:] @ u[:-k])
    se = np.sqrt(max(s, 0.0)) / sxx
    return b, (b / se if se > 0 else 0.0)


def _overloaded(inp: CellInputs) -> bool:
    """An open-loop cell whose completions inside its window fall behind its arrivals (< 95 %)."""
    t0, t1 = steady_window(inp.requests, inp.executor, inp.vus)
    starts = inp.requests["start_ts"]
    arrived = int(((starts >= t0) & (starts <= t1)).sum())
    ends = inp.requests["end_ts"]
    done = int(((ends > t0) & (ends <= t1)).sum())
    return arrived > 0 and done < 0.95 * arrived


def check_stationarity(inp: CellInputs) -> Check:
    name, thr = "stationarity", f"not (|t| > {TREND_T:g} and change > {TREND_CHANGE:.0%})"
    if inp.requests.empty:
        return _skip(name, "no requests", thr)
    if inp.executor == RAMP:
        return _skip(name, "a ramp has no steady state (exploratory)", thr)
    if is_open_loop(inp.executor):
        win = window_requests(inp.requests, inp.executor, inp.vus)
        if _overloaded(inp):
            return _skip(name, "overloaded: completions fall behind arrivals, the step fails on its SLO", thr)
    else:
        w = _closed_window(inp)
        win = w[2] if w is not None else inp.requests.iloc[:0]
    win = win[win["ok"].astype(bool)]
    if len(win) < MIN_TREND:
        return _skip(name, f"fewer than {MIN_TREND} requests in the window", thr)
    # x: when the request was sent (open loop: the window is by start), or when it completed
    # (closed loop: the window is by completion, and latency against start time would be biased
    # by it: the window keeps the long requests that started before it opened and loses the
    # long ones that started just before it closed)
    x = _seconds(win["start_ts"] if is_open_loop(inp.executor) else win["end_ts"])
    y = win["duration_ms"].to_numpy(float)
    rounds = (x.max() - x.min()) / (y.mean() / 1000.0)
    if rounds < MIN_TREND_LATENCIES:
        return _skip(name, f"window spans {rounds:.1f} mean latencies (< {MIN_TREND_LATENCIES})", thr)
    b, t = hac_trend(x, np.log(np.maximum(y, 1e-3)))  # log: relative change, lognormal-ish latencies
    change = float(np.expm1(b * (x.max() - x.min())))
    ok = not (abs(t) > TREND_T and abs(change) > TREND_CHANGE)
    return _verdict(name, ok, change, thr, f"latency change across the window {change:+.0%} (t {t:.1f})",
                    f"latency drifts {change:+.0%} across the window (t {t:.1f}): not a steady state")


def _span(inp: CellInputs) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The cell's steady window; the whole cell where it has none."""
    t0, t1 = steady_window(inp.requests, inp.executor, inp.vus)
    return (t0, t1) if t1 > t0 else (inp.requests["start_ts"].min(), inp.requests["end_ts"].max())


def check_client_cpu(inp: CellInputs) -> Check:
    name, thr = "client_cpu", f"k6 >= {CLIENT_CPU_PCT:g} % of a core in <= {CLIENT_CPU_SHARE:.0%} of samples"
    h = inp.host
    if h is None or h.empty or inp.requests.empty:
        return _skip(name, "no host samples", thr)
    t0, t1 = _span(inp)
    k6 = h[(h["process"] == "k6") & (h["metric"] == "cpu_pct") & (h["ts"] >= t0) & (h["ts"] <= t1)]
    if len(k6) < MIN_CPU_SAMPLES:
        return _skip(name, f"fewer than {MIN_CPU_SAMPLES} k6 CPU samples in the window", thr)
    share = float((k6["value"].to_numpy(float) >= CLIENT_CPU_PCT).mean())
    return _verdict(name, share <= CLIENT_CPU_SHARE, share, thr,
                    f"k6 at >= {CLIENT_CPU_PCT:g} % of a core in {share:.0%} of samples",
                    f"k6 at >= {CLIENT_CPU_PCT:g} % of a core in {share:.0%} of samples: the client is busy")


def check_clocks(inp: CellInputs, tol_ms: float = CLOCK_TOLERANCE_MS) -> Check:
    name, thr = "clocks", f"0 violations (tolerance {tol_ms:g} ms)"
    r = inp.requests
    if r.empty:
        return _skip(name, "no requests", thr)
    tol = pd.Timedelta(milliseconds=tol_ms)
    wall_ms = (r["end_ts"] - r["start_ts"]).dt.total_seconds().to_numpy(float) * 1000.0
    bad = {"end before start": int((wall_ms < 0).sum() + np.isnan(wall_ms).sum()),
           "duration vs timestamps": int((np.abs(wall_ms - r["duration_ms"].to_numpy(float)) > tol_ms).sum())}
    if inp.cell_range is not None and all(t is not None for t in inp.cell_range):
        lo, hi = (pd.Timestamp(t) for t in inp.cell_range)
        bad["outside the cell's time range"] = int(((r["start_ts"] < lo - tol) | (r["end_ts"] > hi + tol)).sum())
    sp = inp.spans
    if sp is not None and not sp.empty and "request_id" in r.columns and "request_id" in sp.columns:
        sp = sp.dropna(subset=["request_id"])[["request_id", "start_ts", "end_ts"]]
        m = r.dropna(subset=["request_id"]).merge(sp, on="request_id", suffixes=("", "_span"))
        bad["server span outside its request"] = int(((m["start_ts_span"] < m["start_ts"] - tol)
                                                       | (m["end_ts_span"] > m["end_ts"] + tol)).sum())
    n = sum(bad.values())
    what = ", ".join(f"{v} {k}" for k, v in bad.items() if v)
    return _verdict(name, n == 0, n, thr, f"{len(bad)} clock checks hold ({', '.join(bad)})",
                    f"{what}: timestamps are not consistent")


CHECKS = (check_arrivals, check_send_lag, check_dropped, check_in_flight, check_little, check_stationarity,
          check_client_cpu, check_clocks)


def check_cell(inp: CellInputs, run_id: str = "") -> CellValidity:
    """Every check of one cell (see the module docstring)."""
    return CellValidity(inp.cell_id, tuple(check(inp) for check in CHECKS), run_id)


def _dropped(cell, points: pd.DataFrame, sends: pd.DataFrame | None) -> int | None:
    if cell.executor == SCHEDULED:
        if sends is None or cell.iterations is None:
            return None
        first = sends[sends["turn"] == 0] if "turn" in sends.columns else sends
        return max(0, int(cell.iterations) - len(first))
    p = points[points["cell_id"] == cell.cell_id] if not points.empty else points
    if p.empty:
        return None
    return int(p.loc[p["metric"] == "dropped_iterations", "value"].sum())


def cell_inputs(run) -> list[CellInputs]:
    """Each cell's :class:`CellInputs` from a :class:`~inferlab.runs.reader.Run`."""
    req = run.requests
    if not req.empty and "phase" in req.columns:
        req = req[req["phase"] == "measure"]
    points = run.points
    sends = sent_table(points) if not points.empty else None
    spans = run.spans
    host = run.host
    arrival = run.workload.get("arrival") if run.workload else None
    out = []
    for cell in run.manifest.cells:
        r = req[req["cell_id"] == cell.cell_id] if not req.empty else req
        s = sends[sends["cell_id"] == cell.cell_id] if sends is not None and not sends.empty else None
        out.append(CellInputs(
            requests=r.reset_index(drop=True), executor=cell.executor, vus=cell.vus, rate=cell.rate,
            arrival=arrival if cell.workload else None, sends=s, dropped=_dropped(cell, points, s),
            host=host, spans=spans[spans["cell_id"] == cell.cell_id] if not spans.empty else None,
            cell_range=(cell.started_at, cell.ended_at) if cell.started_at and cell.ended_at else None,
            cell_id=cell.cell_id))
    return out


def check_run(run) -> list[CellValidity]:
    """Every cell of a run (a capacity run's steps included), checked."""
    return [check_cell(inp, run.run_id) for inp in cell_inputs(run)]


def checks_table(results: list[CellValidity]) -> pd.DataFrame:
    """Tidy: one row per cell and check (run_id, cell_id, check, status, value, threshold, reason)."""
    return pd.DataFrame([{"run_id": v.run_id, "cell_id": v.cell_id, "check": c.name, "status": c.status,
                          "value": c.value, "threshold": c.threshold, "reason": c.reason}
                         for v in results for c in v.checks],
                        columns=["run_id", "cell_id", "check", "status", "value", "threshold", "reason"])


def verdict_table(results: list[CellValidity]) -> pd.DataFrame:
    """One row per cell: run_id, cell_id, validity (VALID | INVALID), reasons ("; "-joined failures)."""
    return pd.DataFrame([{"run_id": v.run_id, "cell_id": v.cell_id, "validity": v.verdict,
                          "reasons": "; ".join(v.reasons)} for v in results],
                        columns=["run_id", "cell_id", "validity", "reasons"])
