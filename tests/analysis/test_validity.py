"""Runs that prove their own validity (analysis/validity.py): every failure injected into
otherwise clean simulated cells (tests/sim/queueing.py, closed and open loop) is caught by its
check, and clean cells come out VALID at least 95 % of the time with all checks combined."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from inferlab.analysis import validity as v
from tests.sim import queueing as q

SEEDS = 240  # clean cells in the false-flag test (closed loop and the three open-loop kinds)
MIN_VALID = 0.95


def _client_side(req: pd.DataFrame, rng: np.random.Generator, cell: str) -> dict:
    """What a clean run records beside the requests: request ids, server spans inside each
    request (1-3 ms in from each end), the cell's time range and host samples (k6 at 0-6 % of
    a core, the system busy, as in the shipped local runs)."""
    req = req.assign(request_id=[f"run.{cell}.m{i}" for i in range(len(req))])
    inset = pd.to_timedelta(rng.uniform(1, 3, len(req)), "ms")
    spans = pd.DataFrame({"request_id": req["request_id"], "start_ts": req["start_ts"] + inset,
                          "end_ts": req["end_ts"] - inset.where(req["duration_ms"] > 10, pd.Timedelta(0))})
    lo, hi = req["start_ts"].min() - pd.Timedelta("150ms"), req["end_ts"].max() + pd.Timedelta("80ms")
    ts = pd.date_range(lo.floor("s"), hi.ceil("s"), freq="1s")
    host = pd.concat([pd.DataFrame({"ts": ts, "process": p, "metric": "cpu_pct", "value": rng.uniform(a, b, len(ts))})
                      for p, a, b in (("k6", 0, 6), ("system", 180, 200))])
    return {"requests": req, "spans": spans, "cell_range": (lo, hi), "host": host}


def closed_cell(seed: int, vus: int | None = None, n: int | None = None) -> v.CellInputs:
    """A clean closed-loop cell sized as the shipped specs size them (2 x vus + 20 requests)."""
    rng = np.random.default_rng(seed)
    vus = vus or int(rng.choice([1, 2, 4, 8, 16]))
    slots = int(rng.choice([1, 2, 4, 8, 16]))
    sigma = float(rng.choice([0.0, 0.3, 0.6]))
    req = q.closed_loop(vus, n or 2 * vus + 20, slots, alpha=0.05, sigma=sigma, seed=seed)
    return v.CellInputs(executor="shared-iterations", vus=vus, cell_id=f"c{vus}", **_client_side(req, rng, f"c{vus}"))


def open_cell(seed: int, kind: str, n: int = 120, rate: float = 2.0) -> v.CellInputs:
    """A clean open-loop cell at ~60 % load (4 slots of 1 s work): ``constant`` as a payload
    capacity step (k6's grid, no per-send records), ``poisson``/``trace`` as a workload cell
    (chat.js's sent/scheduled/lag per send)."""
    rng = np.random.default_rng(seed)
    sched = q.v_schedule(kind, n, rate, rng)
    lag_ms = q.v_send_lags_ms(n, rng)
    req = q.open_loop(sched + lag_ms / 1000, slots=4, sigma=0.3, seed=seed)
    side = _client_side(req, rng, kind)
    if kind == "constant":
        return v.CellInputs(executor="constant-arrival-rate", rate=rate, dropped=0, cell_id=kind, **side)
    sends = pd.DataFrame({"request_id": side["requests"]["request_id"], "turn": 0,
                          "sent_ms": (side["requests"]["start_ts"].astype("int64") // 10**6).astype(float),
                          "scheduled_ms": np.round(sched * 1000), "send_lag_ms": lag_ms})
    return v.CellInputs(executor=v.SCHEDULED, arrival=kind, sends=sends, dropped=0, cell_id=kind, **side)


def clean_cells(n: int) -> list[v.CellInputs]:
    makers = [closed_cell, lambda s: open_cell(s, "constant"), lambda s: open_cell(s, "poisson"),
              lambda s: open_cell(s, "trace")]
    return [makers[s % len(makers)](1000 + s) for s in range(n)]


def valid_rate(detector, cells) -> float:
    return float(np.mean([detector(c).valid for c in cells]))


@pytest.fixture(scope="module")
def clean():
    return clean_cells(SEEDS)


@pytest.fixture(scope="module")
def clean_results(clean):
    return [v.check_cell(c) for c in clean]


def test_clean_cells_valid(clean_results):
    rate = float(np.mean([r.valid for r in clean_results]))
    fails = pd.Series([c.name for x in clean_results for c in x.checks if c.status == "fail"])
    assert rate >= MIN_VALID, (f"clean simulated cells VALID {rate:.1%} < {MIN_VALID:.0%}; "
                               f"fails: {fails.value_counts().to_dict()}")
    print(f"clean simulated cells VALID: {rate:.1%} of {len(clean_results)}")


def test_flag_everything_detector_fails_the_clean_test(clean):
    """The clean-rate criterion has teeth: a detector that flags everything fails it."""
    def everything(inp):
        return v.CellValidity(inp.cell_id, (v.Check("all", "fail", 1.0, "", "flagged"),))
    assert valid_rate(everything, clean) < MIN_VALID


def test_clean_checks_are_actually_run(clean_results):
    """VALID must not come from every check skipping: on the clean cells each check ran."""
    ran = {c.name for x in clean_results for c in x.checks if c.status == "pass"}
    assert ran == {"arrivals", "send_lag_p99", "dropped_sends", "in_flight", "little", "stationarity", "client_cpu",
                   "clocks"}


def _fails(inp: v.CellInputs, check: str) -> None:
    res = v.check_cell(inp)
    assert res.check(check).status == "fail", res.check(check)
    assert not res.valid and any(r.startswith(check) for r in res.reasons)


def test_arrivals_relative_to_their_own_schedule():
    """A constant-rate cell (CV 0) passes against its schedule, not against 1; sends that come
    in pairs (CV ~1 at the same mean rate) fail."""
    clean = open_cell(7, "constant")
    assert v.check_arrivals(clean).status == "pass"
    r = clean.requests.sort_values("start_ts").reset_index(drop=True)
    paired = r["start_ts"].where(r.index % 2 == 0).ffill()  # every odd send leaves with the even one before it
    shift = paired - r["start_ts"]
    bunched = r.assign(start_ts=paired, end_ts=r["end_ts"] + shift)
    _fails(dataclasses.replace(clean, requests=bunched), "arrivals")
    poisson_as_constant = open_cell(8, "poisson")
    s = poisson_as_constant.sends
    even = s.assign(sent_ms=s["sent_ms"].min() + np.arange(len(s)) * 500.0)  # schedule ignored: a grid
    _fails(dataclasses.replace(poisson_as_constant, sends=even), "arrivals")


def test_send_lag_caught():
    cell = open_cell(9, "poisson")
    s = cell.sends.copy()
    s.loc[s.index[20::30], "send_lag_ms"] += 25.0  # 4 of 120 sends 25 ms late
    _fails(dataclasses.replace(cell, sends=s), "send_lag_p99")


def test_send_lag_on_the_constant_rate_grid():
    cell = open_cell(10, "constant")
    r = cell.requests.sort_values("start_ts").reset_index(drop=True)
    late = pd.to_timedelta(np.where(r.index % 25 == 13, 30.0, 0.0), "ms")
    _fails(dataclasses.replace(cell, requests=r.assign(start_ts=r["start_ts"] + late, end_ts=r["end_ts"] + late)),
           "send_lag_p99")


def test_dropped_sends_caught():
    _fails(dataclasses.replace(open_cell(11, "constant"), dropped=2), "dropped_sends")


def test_idle_vu_caught():
    """One of 8 VUs stopped sending after its first request: in flight reads 7/8 of the VUs."""
    cell = closed_cell(12, vus=8, n=80)
    r = cell.requests
    first = r[r["vu"] == 0].index.min()
    _fails(dataclasses.replace(cell, requests=r[(r["vu"] != 0) | (r.index == first)]), "in_flight")


def test_little_caught():
    """Latencies that disagree with the timestamps (k6's duration 1.5x the wall time)."""
    cell = closed_cell(13, vus=4, n=120)
    _fails(dataclasses.replace(cell, requests=cell.requests.assign(duration_ms=cell.requests["duration_ms"] * 1.5)),
           "little")


def _slow_down(r: pd.DataFrame, by: float) -> pd.DataFrame:
    """A server that slows through the cell: each latency x (1 + by x start / span)."""
    x = (r["start_ts"] - r["start_ts"].min()) / (r["start_ts"].max() - r["start_ts"].min())
    d = r["duration_ms"] * (1 + by * x)
    return r.assign(duration_ms=d, end_ts=r["start_ts"] + pd.to_timedelta(d, "ms"))


def test_drift_caught_open_and_closed():
    cell = open_cell(14, "poisson", rate=1.0)
    _fails(dataclasses.replace(cell, requests=_slow_down(cell.requests, 2.0), cell_range=None, spans=None),
           "stationarity")
    closed = closed_cell(15, vus=4, n=120)
    _fails(dataclasses.replace(closed, requests=_slow_down(closed.requests, 2.0), cell_range=None, spans=None),
           "stationarity")


def test_overloaded_step_is_a_fail_not_an_invalid_window():
    """At 1.5x the server's rate the backlog grows: the step fails on its SLO, the data stands."""
    cell = open_cell(16, "constant", rate=5.0)
    assert v.check_stationarity(cell).status == "not checked"
    assert "overloaded" in v.check_stationarity(cell).reason


def test_client_cpu_caught():
    cell = closed_cell(17, vus=4, n=120)
    h = cell.host.copy()
    k6 = h.index[h["process"] == "k6"]
    h.loc[k6[::3], "value"] = 60.0
    _fails(dataclasses.replace(cell, host=h), "client_cpu")


@pytest.mark.parametrize("fault", ["outside the cell", "span outside its request", "end before start"])
def test_clocks_caught(fault):
    cell = closed_cell(18, vus=4)
    r, sp = cell.requests.copy(), cell.spans.copy()
    if fault == "outside the cell":
        r.loc[r.index[-1], ["start_ts", "end_ts"]] += pd.Timedelta("5s")
    elif fault == "span outside its request":
        sp.loc[sp.index[3], "start_ts"] -= pd.Timedelta("200ms")
    else:
        r.loc[r.index[2], "end_ts"] = r.loc[r.index[2], "start_ts"] - pd.Timedelta("1s")
    _fails(dataclasses.replace(cell, requests=r, spans=sp), "clocks")


def test_missing_data_is_not_checked_and_does_not_invalidate():
    cell = dataclasses.replace(open_cell(19, "constant"), host=None, spans=None, cell_range=None, dropped=None)
    res = v.check_cell(cell)
    cpu = res.check("client_cpu")
    assert cpu.status == "not checked" and cpu.reason.startswith("not checked (")
    assert res.check("dropped_sends").status == "not checked"
    assert res.valid


def test_grid_lag_is_a_lower_bound_from_the_least_late_send():
    starts = np.arange(100) * 0.5 + 3.0
    starts[60] += 0.020
    lag = v.grid_lag_ms(starts, 2.0)
    assert lag.min() == 0 and lag.max() == pytest.approx(20.0) and len(lag) == 98  # first second left out


def test_tables():
    res = [v.check_cell(open_cell(20, "constant"), "run"), v.check_cell(dataclasses.replace(
        open_cell(21, "constant"), dropped=1, cell_id="bad"), "run")]
    verdicts = v.verdict_table(res)
    assert verdicts["validity"].tolist() == ["VALID", "INVALID"]
    assert verdicts.loc[1, "reasons"].startswith("dropped_sends:")
    assert len(v.checks_table(res)) == 2 * len(v.CHECKS)
