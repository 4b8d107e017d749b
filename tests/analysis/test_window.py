"""analysis/window.py computes on numpy arrays (for speed); its numbers must be the pandas
formulation written out below as the reference: to the bit for counts, quantiles and open-loop
rates, to 1e-12 relative for the closed-loop rates (their edge correction's sample moments sum in
another order in pandas)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from inferlab.analysis.window import OPEN_LOOP, QUANTILES, in_flight, min_requests, repeat_metrics, steady_window
from inferlab.runs.reader import load_run

from tests.conftest import ROOT

T0 = pd.Timestamp("2026-12-01", tz="UTC")
RATES = ("throughput", "goodput", "tokens_per_s", "little_ratio")


def reference(req: pd.DataFrame, slo: float, executor: str, vus: int | None, tokens: pd.Series | None) -> dict:
    """repeat_metrics as pandas Series arithmetic (the code before the numpy rewrite)."""
    out = {"requests": len(req), "errors": int((~req["ok"]).sum())}
    out["error_rate"] = out["errors"] / out["requests"]
    t0, t1 = steady_window(req, executor, vus)
    span = (t1 - t0).total_seconds()
    closed = executor not in OPEN_LOOP and bool(vus)
    col = req["end_ts"] if closed else req["start_ts"]
    win = req[(col > t0) & (col <= t1)] if closed else req[(col >= t0) & (col <= t1)]
    if span <= 0 or win.empty:
        return {**out, "window_s": np.nan}
    inside = (req["end_ts"].clip(lower=t0, upper=t1) - req["start_ts"].clip(lower=t0, upper=t1)).dt.total_seconds()
    ok, little = req["ok"], np.nan
    if closed:
        life = (req["end_ts"] - req["start_ts"]).dt.total_seconds()
        share = inside / life.clip(lower=1e-9)
        x = life[win.index]
        done = x.dropna()
        for i in req.index[(req["start_ts"] <= t1) & (req["end_ts"] > t1)] if len(done) >= 5 else []:  # at the close
            longer = done[done > (t1 - req.at[i, "start_ts"]).total_seconds()]
            if len(longer):  # the mean share over the completed lives that outlive its age
                share[i] = (inside[i] / longer.clip(lower=1e-9)).mean()

        def rate(reward: pd.Series) -> float:  # the edge excess: (E[R] var X - E[X] cov(R, X)) / E[X]^2
            r = reward[win.index]
            excess = (r.mean() * x.var() - x.mean() * r.cov(x)) / x.mean() ** 2 if len(x) >= 5 else 0.0
            return max(0.0, float((share * reward).sum()) - excess) / span

        throughput = rate(ok.astype(float))
        goodput = rate((ok & (req["duration_ms"] <= slo)).astype(float))
        tok = np.nan if tokens is None else throughput * float(tokens.reindex(req.index)[ok].mean())
        held = float(inside.sum()) / span
        little = rate(ok * 0.0 + 1.0) * float(win["duration_ms"].mean()) / 1000 / held if held > 0 else np.nan
    else:
        done = req[(req["end_ts"] > t0) & (req["end_ts"] <= t1) & ok]
        throughput, goodput = len(done) / span, int((done["duration_ms"] <= slo).sum()) / span
        tok = np.nan if tokens is None else float(tokens.reindex(done.index).sum()) / span
    good = win.loc[win["ok"], "duration_ms"].to_numpy(float)
    out.update(window_s=span, window_requests=len(win), throughput=throughput, goodput=goodput, tokens_per_s=tok,
               little_ratio=little)
    out.update({k: float(np.quantile(good, q)) if len(good) >= min_requests(q) else np.nan
                for k, q in QUANTILES.items()})
    return out


def assert_same(req: pd.DataFrame, tokens: pd.Series | None = None) -> None:
    for executor in ("shared-iterations", "constant-arrival-rate"):
        for vus in (None, 1, 4, 16):
            want, got = reference(req, 500.0, executor, vus, tokens), repeat_metrics(req, 500.0, executor, vus, tokens)
            for k, v in want.items():
                same = got[k] == v or (k in RATES and got[k] == pytest.approx(v, rel=1e-12))
                assert (math.isnan(v) and math.isnan(got[k])) if isinstance(v, float) and math.isnan(v) else same, \
                    (executor, vus, k, v, got[k])
            t0, t1 = steady_window(req, executor, vus)
            if t1 > t0:
                held = float((req["end_ts"].clip(lower=t0, upper=t1)
                              - req["start_ts"].clip(lower=t0, upper=t1)).dt.total_seconds().sum())
                assert in_flight(req, t0, t1) == held / (t1 - t0).total_seconds()


@pytest.mark.parametrize("run", ["20261127T074746Z-local-ab-maxseqs1-a", "20261127T082345Z-local-capacity-local-1",
                                 "20261126T205944Z-url-h200-tuned-cudagraphs"])
def test_window_metrics_are_the_pandas_numbers_on_recorded_runs(run):
    req = load_run(ROOT / "data" / "sample" / run).requests
    for _, g in req.groupby("cell_id", sort=False):
        assert_same(g)


def test_window_metrics_are_the_pandas_numbers_on_random_frames():
    """Failed requests, missing latencies, ties, tokens with gaps, another index, time zone and unit."""
    rng = np.random.default_rng(0)
    for i in range(60):
        n = int(rng.integers(2, 200))
        s = np.sort(np.round(rng.uniform(0, 100, n), 1 if i % 3 == 0 else 9))
        d = rng.lognormal(0, 1, n)
        req = pd.DataFrame({"start_ts": T0 + pd.to_timedelta(s, "s"), "end_ts": T0 + pd.to_timedelta(s + d, "s"),
                            "duration_ms": np.where(rng.random(n) < 0.1 * (i % 2), np.nan, d * 1000),
                            "ok": rng.random(n) > 0.1}, index=rng.permutation(n) + 7)
        if i % 4 == 1:
            req[["start_ts", "end_ts"]] = req[["start_ts", "end_ts"]].apply(lambda c: c.dt.tz_convert("Europe/Berlin"))
        if i % 4 == 2:
            req[["start_ts", "end_ts"]] = req[["start_ts", "end_ts"]].apply(lambda c: c.dt.as_unit("us"))
        tokens = pd.Series(rng.integers(1, 100, n), index=req.index).astype(float).where(rng.random(n) > 0.1)
        assert_same(req, tokens if i % 2 else None)
