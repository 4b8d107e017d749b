"""Statistics tested like code: simulations with a known truth, at the shipped defaults
(3 repeats a side, the local matrix's request counts, between-run CV 2-15 %)."""

from __future__ import annotations

import heapq

import numpy as np
import pandas as pd
import pytest

from inferlab.analysis import stats
from inferlab.analysis.compare import LOWER_IS_BETTER, compare_repeats
from inferlab.analysis.window import repeat_metrics

REPEATS = 3
CVS = (0.02, 0.05, 0.15)


@pytest.mark.parametrize("cv", CVS)
@pytest.mark.parametrize("true_ratio", (1.0, 1.25))
def test_welch_interval_covers_the_true_ratio(cv, true_ratio):
    rng = np.random.default_rng(1)
    sims, hits = 1000, 0
    for _ in range(sims):
        a = 10 * rng.lognormal(0, cv, REPEATS)
        b = 10 * true_ratio * rng.lognormal(0, cv, REPEATS)
        iv = stats.ratio_interval(a, b)
        assert iv.low <= iv.ratio <= iv.high
        hits += iv.low <= true_ratio <= iv.high
    assert hits / sims >= 0.90, f"coverage {hits / sims:.3f} at CV {cv}"


@pytest.mark.parametrize("repeats", [3, 5, 8])
def test_auto_interval_holds_nominal_coverage_from_3_to_8_repeats(repeats):
    """Issue 19 item 6: a nominal 95 % interval covers 93-97 % (auto = Welch at every count)."""
    rng = np.random.default_rng(repeats)
    a, b = 10 * rng.lognormal(0, 0.05, (2000, repeats)), 12 * rng.lognormal(0, 0.05, (2000, repeats))
    hits = np.mean([(iv := stats.ratio_interval(x, y, method="auto")).low <= 1.2 <= iv.high for x, y in zip(a, b)])
    assert 0.93 <= hits <= 0.97, f"coverage {hits:.3f} at {repeats} repeats a side"


def test_bootstrap_only_with_enough_repeats_and_covers():
    rng = np.random.default_rng(2)
    with pytest.raises(ValueError, match="repeats a side"):
        stats.ratio_interval([1, 2, 3], [1, 2, 3], method="bootstrap")
    hits = agree = 0
    for i in range(200):
        iv = stats.ratio_interval(rng.lognormal(0, 0.1, 10), 1.1 * rng.lognormal(0, 0.1, 10), method="bootstrap",
                                  n_boot=1000, seed=i)
        hits += iv.low <= 1.1 <= iv.high
        agree += (iv.p_value < 0.05) == (not iv.low <= 1 <= iv.high)  # verdict and interval never disagree
    assert hits / 200 >= 0.85 and agree == 200
    assert stats.ratio_interval(rng.lognormal(0, 0.1, 10), rng.lognormal(0, 0.1, 10), method="auto").method == "welch"


def test_levels_nest_and_bounds_are_ordered():
    rng = np.random.default_rng(3)
    for _ in range(200):
        a, b = rng.lognormal(0, 0.1, 3), rng.lognormal(0.05, 0.1, 4)
        i90, i95 = stats.ratio_interval(a, b, level=0.90), stats.ratio_interval(a, b, level=0.95)
        assert i95.low <= i90.low <= i90.ratio <= i90.high <= i95.high


def test_identical_repeats_give_no_verdict():
    iv = stats.ratio_interval([5.0, 5.0, 5.0], [6.0, 6.0, 6.0])
    assert np.isnan(iv.p_value) and "noise unknown" in iv.note


def test_one_repeat_gives_no_interval_and_no_verdict():
    iv = stats.ratio_interval([5.0], [6.0])
    assert np.isnan(iv.low) and np.isnan(iv.p_value) and iv.ratio == pytest.approx(1.2)
    assert "no between-run variance" in iv.note


def test_holm_uses_statsmodels_semantics(quick_holm):
    from statsmodels.stats.multitest import multipletests

    q = stats.holm([0.01, 0.04, np.nan, 0.03])
    assert np.allclose(q[[0, 1, 3]], [0.03, 0.06, 0.06]) and np.isnan(q[2])
    rng = np.random.default_rng(0)
    for _ in range(200):  # our step-down is statsmodels' holm, ties and clipping included
        p = np.round(rng.uniform(0, 0.2, int(rng.integers(1, 9))) ** 2, 3)
        assert np.allclose(stats.holm(p), multipletests(p, method="holm")[1])


def test_min_detectable_ratio_shrinks_with_repeats_and_grows_with_noise():
    assert stats.min_detectable_ratio(0.05, 3, 3) > stats.min_detectable_ratio(0.05, 8, 8) > 1
    assert stats.min_detectable_ratio(0.15, 3, 3) > stats.min_detectable_ratio(0.05, 3, 3)


def test_min_detectable_ratio_has_its_power_by_simulation():
    rng = np.random.default_rng(4)
    mde = stats.min_detectable_ratio(0.05, REPEATS, REPEATS)
    power = np.mean([stats.ratio_interval(rng.lognormal(0, 0.05, 3), mde * rng.lognormal(0, 0.05, 3)).p_value < 0.05
                     for _ in range(2000)])
    assert 0.7 <= power <= 0.9, power


# ---- the whole path: synthetic requests -> repeat metrics -> Holm -> verdicts ----------------

CELLS = [("short", 1, 22), ("short", 4, 28), ("short", 16, 52), ("long", 1, 22), ("long", 4, 28), ("long", 16, 52)]  # 2 x VUs + 20


def closed_loop(rng, vus: int, n: int, mean_ms: float, fail_every: int = 0, sigma: float = 0.2) -> pd.DataFrame:
    """n requests by ``vus`` closed-loop users: each user starts its next request when the last ends
    (the user free first; on a tie the lowest-numbered, as ``argmin``). The n service times are
    drawn at once: the same numbers, in the same order, as one draw per request."""
    dur = mean_ms * rng.lognormal(0, sigma, n)
    free = [(0.0, u) for u in range(vus)]  # (free at, user): a heap
    s = np.empty(n)
    for i in range(n):
        t, u = free[0]
        s[i] = t
        heapq.heapreplace(free, (t + dur[i], u))
    e = s + dur
    ok = np.arange(n) % fail_every != 1 if fail_every else np.ones(n, bool)  # a failed request keeps its time (as in a copy)
    t0 = pd.Timestamp("2026-11-27", tz="UTC")
    return pd.DataFrame({"s": s, "e": e, "duration_ms": dur, "ok": ok, "start_ts": t0 + pd.to_timedelta(s, "ms"),
                         "end_ts": t0 + pd.to_timedelta(e, "ms")})


def simulated_comparison(rng, cv: float, factor: float, fail_every: int = 0) -> pd.DataFrame:
    """Synthetic requests -> repeat metrics -> the real verdict code (compare.compare_repeats)."""
    rows = []
    for payload, vus, n in CELLS:
        base_ms = 200.0 if payload == "short" else 800.0
        for side, f, fe in (("baseline", 1.0, 0), ("tuned", factor, fail_every)):
            for r in range(REPEATS):
                run_factor = rng.lognormal(0, cv)  # between-run noise: the whole repeat is slower or faster
                req = closed_loop(rng, vus, n, base_ms * run_factor / f * (1 + 0.05 * (vus - 1)), fe)
                rows.append({"side": side, "run_id": f"{side}-{r}", "cell": f"{payload}-c{vus}", "payload": payload,
                             "vus": vus, **repeat_metrics(req, 60000, vus=vus)})
    res = compare_repeats(pd.DataFrame(rows))
    return res[res["role"] == "primary"]


def batched_rounds(vus: int, n: int, round_ms: float) -> pd.DataFrame:
    """A batching server: every request in flight finishes together at the end of its round."""
    t0 = pd.Timestamp("2026-11-27", tz="UTC")
    k = np.arange(n) // vus
    s, e = k * round_ms, (k + 1) * round_ms
    return pd.DataFrame({"start_ts": t0 + pd.to_timedelta(s, "ms"), "end_ts": t0 + pd.to_timedelta(e, "ms"),
                         "duration_ms": e - s, "ok": True})


def test_window_latency_comes_from_the_window_completions():
    """Latency quantiles use the same requests as throughput: those completed between the fill
    and the drain (issue 19 item 1); the short first round does not pull them down."""
    req = batched_rounds(4, 28, 1000.0)
    req.loc[req.index[:4], "duration_ms"] = 10.0  # the first round is not in the window
    m = repeat_metrics(req, 60000, vus=4)
    assert m["window_requests"] == 20 and m["latency_p50"] == pytest.approx(1000.0)


@pytest.mark.parametrize("cv", CVS)
def test_aa_false_positives_after_holm(cv):
    rng = np.random.default_rng(5)
    sims = 100  # seeded: deterministic; 100 sims x 6 cells x 6 repeats
    any_sig = sum(simulated_comparison(rng, cv, 1.0)["verdict"].isin(["better", "worse"]).any() for _ in range(sims))
    assert any_sig / sims <= 0.08, f"familywise A/A false-positive rate {any_sig / sims:.3f} at CV {cv}"


def test_large_effect_is_found_and_interval_covers_it():
    rng = np.random.default_rng(6)
    res = simulated_comparison(rng, 0.05, 1.5)
    assert (res["verdict"] == "better").sum() >= 4
    assert ((res["ci_low"] <= 1.5 * 1.05) & (res["ci_high"] >= 1.5 * 0.95)).mean() >= 0.8


def test_failure_injected_side_is_never_better():
    rng = np.random.default_rng(7)
    for factor in (1.0, 1.3, 1.8):  # even when its surviving requests are faster
        res = simulated_comparison(rng, 0.05, factor, fail_every=2)
        assert not (res["verdict"] == "better").any(), res[["cell", "ratio", "verdict"]]
    assert (simulated_comparison(rng, 0.05, 1.0, fail_every=2)["verdict"] == "worse").sum() >= 4


def test_verdict_follows_each_metrics_direction():
    assert stats.verdict(0.01, 0.8, LOWER_IS_BETTER["latency_p99"]) == "better"
    assert stats.verdict(0.01, 0.8, LOWER_IS_BETTER["throughput"]) == "worse"
    assert stats.verdict(0.2, 0.5, True) == "no significant difference"
