"""Equivalence (TOST), non-inferiority and "N more repeats" against known truth.

Every simulation draws per-repeat log values (the repeat is the unit: one value per repeat and
side) with a known true log ratio and between-repeat SD, and runs the module's one computation
(``margin_tests``, which ``log_ratio_test`` and the gate call) on each simulated experiment. The
rates are compared with the nominal alpha with a Monte Carlo allowance of three standard errors.
The gate-level rates (intersection-union pass, Holm-adjusted fail) go through the gate's own
``gate_metric`` and ``settle``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.weightstats import ttest_ind as sm_ttest_ind
from statsmodels.stats.weightstats import ttost_ind

from inferlab.analysis.equivalence import (MAX_REPEATS, band, log_ratio_test, lower_is_better, margin_tests,
                                           more_repeats, parse_margin, simulated_power)
from inferlab.analysis.gate import GateResult, gate_metric, settle

ALPHA = 0.05
MARGIN = 0.05
DELTA = float(np.log1p(MARGIN))
SIMS = 20000
MC = 3 * np.sqrt(ALPHA * (1 - ALPHA) / SIMS)  # three Monte Carlo standard errors at alpha


def experiments(d: float, sd: float, n: int, sims: int = SIMS, seed: int = 1, lib: bool | None = True,
                sd_tuned: float | None = None) -> dict:
    """``sims`` experiments of ``n`` repeats a side: baseline logs N(0, sd), tuned logs N(d, sd or
    ``sd_tuned``); the module's p-values for each (per-repeat draws, not the power function's shortcut)."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(0.0, sd, (sims, n)), rng.normal(d, sd if sd_tuned is None else sd_tuned, (sims, n))
    return margin_tests(b.mean(1) - a.mean(1), a.var(1, ddof=1), b.var(1, ddof=1), n, n, DELTA, ALPHA, lib)


# --- the computation ----------------------------------------------------------------------------


@pytest.mark.parametrize(("na", "nb", "shift"), [(3, 3, 0.01), (5, 4, -0.03), (8, 8, 0.06)])
def test_p_values_and_interval_agree_with_statsmodels_and_scipy(na, nb, shift):
    rng = np.random.default_rng(na * 10 + nb)
    base, tuned = np.exp(rng.normal(0, 0.04, na)), np.exp(rng.normal(shift, 0.06, nb))
    lb, lt = np.log(base), np.log(tuned)
    t = log_ratio_test(base, tuned, MARGIN, ALPHA, lower_is_better=True)
    p_tost = ttost_ind(lt, lb, -DELTA, DELTA, usevar="unequal")[0]
    assert t.p_equivalent == pytest.approx(p_tost, rel=1e-9)
    # non-inferiority (latency: higher is worse) is the one-sided Welch test against +delta
    p_ni = sm_ttest_ind(lt, lb, alternative="smaller", usevar="unequal", value=DELTA)[1]
    assert t.p_noninferior == pytest.approx(p_ni, rel=1e-9)
    assert t.p_regression == pytest.approx(1 - p_ni, rel=1e-9)
    ci = sps.ttest_ind(lt, lb, equal_var=False).confidence_interval(confidence_level=1 - 2 * ALPHA)
    assert (t.low, t.high) == pytest.approx((np.exp(ci.low), np.exp(ci.high)), rel=1e-9)
    # equivalent exactly when the 90 % interval lies inside the band
    lo, hi = band(MARGIN)
    assert (t.p_equivalent < ALPHA) == (lo < t.low and t.high < hi)
    # throughput's direction mirrors latency's
    thr = log_ratio_test(base, tuned, MARGIN, ALPHA, lower_is_better=False)
    assert thr.p_noninferior == pytest.approx(sm_ttest_ind(lt, lb, alternative="larger", usevar="unequal",
                                                           value=-DELTA)[1], rel=1e-9)


def test_margins_parse_and_bad_ones_say_what_was_expected():
    assert parse_margin("5%") == pytest.approx(0.05)
    assert parse_margin(" 2.5 % ".replace(" ", "")) == pytest.approx(0.025)
    assert parse_margin("0.05") == pytest.approx(0.05)
    for bad, why in (("5", "ambiguous"), ("abc", "percentage"), ("0%", "more than 0"), ("150%", "less than 100")):
        with pytest.raises(ValueError, match=why):
            parse_margin(bad)
    assert band(0.05) == pytest.approx((1 / 1.05, 1.05))


def test_directions_are_defined_once_for_compare_and_token_metrics():
    assert [lower_is_better(m) for m in ("throughput", "goodput", "max_sustainable_rate")] == [False] * 3
    assert all(lower_is_better(m) for m in ("latency_p50", "latency_p99", "ttft_p99", "tpot_p99", "e2e_p95",
                                            "ttft_p99.9"))
    with pytest.raises(KeyError, match="no direction"):
        lower_is_better("tokens_per_s")


def test_too_few_or_constant_repeats_give_no_test_and_say_why():
    t = log_ratio_test([1.0], [1.0, 1.1], MARGIN)
    assert np.isnan(t.p_equivalent) and "1 repeat(s) on a side" in t.note
    t = log_ratio_test([2.0, 2.0, 2.0], [2.0, 2.0, 2.0], MARGIN)
    assert np.isnan(t.p_equivalent) and "no variation" in t.note
    assert more_repeats(t, "equivalence") is None


# --- error rates against known truth --------------------------------------------------------------


@pytest.mark.parametrize("n", [3, 5, 8])
@pytest.mark.parametrize("sd", [0.01, 0.08])
@pytest.mark.parametrize("edge", [-1, 1])
def test_equivalence_is_claimed_at_most_alpha_of_the_time_at_the_margin(n, sd, edge):
    """Truth on the edge of the band (a ratio of exactly 1.05 or 1/1.05): "equivalent" is wrong."""
    rate = np.mean(experiments(edge * DELTA, sd, n)["p_equivalent"] < ALPHA)
    assert rate <= ALPHA + MC, rate
    if sd == 0.01:  # low noise: the size is near alpha, not a vacuous 0 (Welch's estimated df make it a
        assert rate >= 0.03, rate  # little conservative with equal variances: 3.7 % at 3 repeats, 4.7 % at 8)


@pytest.mark.parametrize("n", [3, 8])
@pytest.mark.parametrize("sd", [0.01, 0.3])
def test_not_equivalent_is_claimed_at_most_alpha_of_the_time_inside_the_band(n, sd):
    """Truth on the band's edge (still equivalent): "not equivalent" is wrong. At 30 % noise and 3
    repeats both directions fire; each at alpha / 2 keeps the sum at or below alpha."""
    rate = np.mean(experiments(DELTA, sd, n)["p_beyond"] < ALPHA)
    assert rate <= ALPHA + MC, rate


@pytest.mark.parametrize("lib", [True, False])
@pytest.mark.parametrize(("n", "sd", "sd_tuned"), [(3, 0.01, 0.01), (5, 0.05, 0.05), (8, 0.2, 0.2), (4, 0.02, 0.08)])
def test_noninferiority_passes_at_most_alpha_of_the_time_when_worse_by_the_margin(lib, n, sd, sd_tuned):
    """Truth: worse by exactly the margin (equal noise, and a noisier candidate)."""
    worse = DELTA if lib else -DELTA  # latency up by the margin, or throughput down by it
    r = experiments(worse, sd, n, lib=lib, sd_tuned=sd_tuned)
    passed = np.mean(r["p_noninferior"] < ALPHA)
    assert 0.03 <= passed <= ALPHA + MC, passed  # one-sided: near alpha at any noise (Welch: 3.7-4.7 %)
    failed = np.mean(r["p_regression"] < ALPHA)  # "regressed beyond the margin" is wrong here too
    assert failed <= ALPHA + MC, failed


def test_power_at_zero_effect_is_what_the_power_function_says():
    """The power function's shortcut (normal means, chi-square variances) against per-repeat draws,
    at no true difference: the figures the docs quote."""
    for rule, key, n, sd in (("tost", "p_equivalent", 5, 0.02), ("tost", "p_equivalent", 8, 0.03),
                             ("noninferior", "p_noninferior", 5, 0.03)):
        rate = np.mean(experiments(0.0, sd, n)[key] < ALPHA)
        predicted = simulated_power(rule, 0.0, DELTA / sd, n, n, ALPHA)
        se = np.sqrt(rate * (1 - rate) / SIMS + predicted * (1 - predicted) / 10000)
        assert abs(rate - predicted) < 4 * se, (rule, n, sd, rate, predicted)
        assert rate > 0.5, (rule, n, sd, rate)  # these designs do decide at no difference


@pytest.mark.parametrize(("claim", "rule", "key", "d", "sd"), [
    ("equivalence", "tost", "p_equivalent", 0.0, 0.05),
    ("equivalence", "beyond", "p_beyond", 0.15, 0.08),
    ("noninferiority", "noninferior", "p_noninferior", 0.0, 0.06),
    ("noninferiority", "regression", "p_regression", 0.12, 0.08),
])
def test_n_more_repeats_reaches_the_stated_power_and_no_fewer_would(claim, rule, key, d, sd):
    """An inconclusive 3+3 whose measured ratio and noise are the truth: the N it prints gives
    >= 80 % power (per-repeat draws), N - 1 does not (within Monte Carlo error)."""
    t = dataclasses.replace(log_ratio_test([1.0, 1.1, 0.9], [1.0, 1.1, 0.9], MARGIN), ratio=float(np.exp(d)), sd=sd)
    extra = more_repeats(t, claim, lower_is_better=True)
    assert extra is not None and 1 <= extra < MAX_REPEATS
    mc = 3 * np.sqrt(0.8 * 0.2 / SIMS) + 3 * np.sqrt(0.8 * 0.2 / 10000)
    assert np.mean(experiments(d, sd, 3 + extra)[key] < ALPHA) >= 0.8 - mc
    if extra > 1:
        assert np.mean(experiments(d, sd, 3 + extra - 1)[key] < ALPHA) < 0.8 + mc
    assert simulated_power(rule, d / sd, DELTA / sd, 3 + extra, 3 + extra, ALPHA) >= 0.8


def test_n_more_repeats_has_no_answer_on_the_margin_and_a_ceiling():
    t = dataclasses.replace(log_ratio_test([1.0, 1.1, 0.9], [1.0, 1.1, 0.9], MARGIN), ratio=1.05, sd=0.05)
    assert more_repeats(t, "equivalence") is None
    assert more_repeats(t, "noninferiority", lower_is_better=True) is None
    far = dataclasses.replace(t, ratio=1.04, sd=0.5)  # 50 % noise, 4 % from the edge
    assert more_repeats(far, "equivalence") == MAX_REPEATS + 1 - 3


# --- the gate's multiplicity ----------------------------------------------------------------------


def _gate(truths: list[float], sd: float, n: int, sims: int, seed: int) -> dict[str, float]:
    """Outcome shares of a 3-metric gate (throughput, latency p50, TTFT p99) with the given true
    worsening (log scale; positive is worse) per metric, through gate_metric and settle."""
    rng = np.random.default_rng(seed)
    metrics = ("throughput", "latency_p50", "ttft_p99")
    out = {"non-inferior": 0, "regression": 0, "inconclusive": 0}
    for _ in range(sims):
        lines = []
        for metric, worse in zip(metrics, truths):
            d = worse if lower_is_better(metric) else -worse
            a, b = np.exp(rng.normal(0, sd, n)), np.exp(rng.normal(d, sd, n))
            lines.append(gate_metric("c", metric, metric, "m", a, b, MARGIN, ALPHA))
        settle(lines, ALPHA)
        out[GateResult(lines, MARGIN, ALPHA).outcome] += 1
    return {k: v / sims for k, v in out.items()}


GATE_SIMS = 3000
GATE_MC = 3 * np.sqrt(ALPHA * (1 - ALPHA) / GATE_SIMS)


def test_gate_passes_a_candidate_worse_by_the_margin_on_one_metric_at_most_alpha_of_the_time(quick_holm):
    """Intersection-union: one metric exactly at the margin, the others truly equal (the least
    favourable case for the pass claim); no correction is needed for the pass to stay <= alpha."""
    shares = _gate([DELTA, 0.0, 0.0], sd=0.01, n=5, sims=GATE_SIMS, seed=3)
    assert shares["non-inferior"] <= ALPHA + GATE_MC, shares


def test_gate_fails_a_candidate_within_the_margin_everywhere_at_most_alpha_of_the_time(quick_holm):
    """Holm over the regression claims: every metric exactly at the margin (each claim's null true)."""
    shares = _gate([DELTA, DELTA, DELTA], sd=0.02, n=5, sims=GATE_SIMS, seed=4)
    assert shares["regression"] <= ALPHA + GATE_MC, shares


def test_gate_passes_an_unchanged_candidate_and_fails_a_clear_regression(quick_holm):
    assert _gate([0.0, 0.0, 0.0], sd=0.01, n=5, sims=400, seed=5)["non-inferior"] > 0.9
    assert _gate([0.3, 0.0, 0.0], sd=0.02, n=3, sims=400, seed=6)["regression"] > 0.9
