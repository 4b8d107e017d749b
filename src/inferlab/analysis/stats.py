"""Interval estimates and tests for A/B verdicts; the repeat is the unit of inference.

Each side contributes one value per repeat (a run, or a ``-r<n>`` cell) of a metric, never one
per request: requests inside a run share its warm-up, placement and queue history, so
resampling them measures within-run noise only (the A/A that called 12 of 14 rows "worse").

- :func:`ratio_interval`: ratio of geometric means tuned/baseline with a Welch t-interval on the
  logs (``scipy.stats.ttest_ind(equal_var=False)``); a percentile bootstrap of the same ratio
  (``scipy.stats.bootstrap``) only when asked for, with >= ``BOOTSTRAP_MIN`` repeats a side
  (``auto`` is Welch: it holds nominal coverage from 3 to 8 repeats, the bootstrap did not).
- :func:`holm`: Holm's step-down correction (equal to ``statsmodels.stats.multitest.multipletests``'s).
- :func:`min_detectable_ratio`: the smallest ratio the design detects at the measured noise.
Simulations with known truth test all three (tests/analysis/test_stats.py).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import stats
from statsmodels.stats.power import TTestIndPower

BOOTSTRAP_MIN = 8  # repeats a side before a bootstrap says more than a t-interval
MIN_REPEATS = 2  # fewer per side and no between-run variance can be estimated


@dataclass(frozen=True)
class Interval:
    ratio: float  # tuned / baseline (geometric means of the per-repeat values)
    low: float
    high: float
    p_value: float  # two-sided, H0: ratio == 1
    n_baseline: int
    n_tuned: int
    method: str
    note: str = ""


def _logs(x) -> np.ndarray:
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    # a zero (no successful request in a repeat) has no log; a floor far below any real value
    # keeps it in the test as a very bad repeat instead of dropping it
    return np.log(np.maximum(x, 1e-9))


def geometric_mean(values) -> float:
    """Geometric mean of per-repeat values (NaN dropped; zero floored as in the test)."""
    x = _logs(values)
    return float(np.exp(x.mean())) if len(x) else float("nan")


def aa_halfwidth(sd_log: float, n_baseline: int, n_tuned: int, level: float = 0.95) -> float:
    """Half-width (as a ratio) of the interval an A/A of this design would get at this noise:
    t quantile x pooled log-SD x sqrt(1/n_a + 1/n_b)."""
    df = n_baseline + n_tuned - 2
    if df <= 0 or not np.isfinite(sd_log):
        return float("nan")
    return float(np.exp(stats.t.ppf(0.5 + level / 2, df) * sd_log * np.sqrt(1 / n_baseline + 1 / n_tuned)))


def ratio_interval(baseline, tuned, level: float = 0.95, method: str = "auto", n_boot: int = 4000,
                   seed: int = 0) -> Interval:
    """Ratio of geometric means tuned/baseline of per-repeat values, its ``level`` interval and
    the two-sided p-value. ``method``: ``welch`` (default), ``bootstrap`` (>= 8 repeats a side),
    ``auto`` = welch at every repeat count: the percentile bootstrap covered 90.7 % at nominal
    95 % from 8 repeats a side where Welch covered 94.8 % (issue 19 item 6), so it is only used
    when asked for."""
    a, b = _logs(baseline), _logs(tuned)
    na, nb = len(a), len(b)
    if min(na, nb) < MIN_REPEATS:
        point = float(np.exp(b.mean() - a.mean())) if na and nb else float("nan")
        return Interval(point, np.nan, np.nan, np.nan, na, nb, "none",
                        f"{min(na, nb)} repeat(s) on a side: no between-run variance, no interval")
    diff = float(b.mean() - a.mean())
    if method == "auto":
        method = "welch"
    if np.ptp(a) == 0 and np.ptp(b) == 0:  # no variation at all: nothing to test against
        return Interval(float(np.exp(diff)), np.nan, np.nan, np.nan, na, nb, method,
                        "no variation between repeats: noise unknown")
    t = stats.ttest_ind(b, a, equal_var=False)
    p = float(t.pvalue)
    if method == "welch":
        ci = t.confidence_interval(confidence_level=level)
        lo, hi = float(ci.low), float(ci.high)
    elif method == "bootstrap":
        if min(na, nb) < BOOTSTRAP_MIN:
            raise ValueError(f"bootstrap needs >= {BOOTSTRAP_MIN} repeats a side (have {na}, {nb})")
        res = stats.bootstrap((b, a), lambda x, y, axis=-1: x.mean(axis=axis) - y.mean(axis=axis),
                              confidence_level=level, n_resamples=n_boot, method="percentile",
                              random_state=np.random.default_rng(seed), vectorized=True)
        # interval and p-value from the same bootstrap distribution, with quantiles chosen so that
        # "the interval excludes 1" and "p < 1 - level" are the same event: the verdict and the
        # interval printed beside it never disagree
        dist, tail = np.asarray(res.bootstrap_distribution), round((1 - level) / 2, 12)  # 0.025, not 0.025000000000000022
        lo = float(np.quantile(dist, tail, method="inverted_cdf"))
        hi = float(-np.quantile(-dist, tail, method="inverted_cdf"))
        p = float(min(1.0, 2 * min(np.mean(dist <= 0), np.mean(dist >= 0))))
    else:
        raise ValueError(f"unknown method {method!r} (welch, bootstrap, auto)")
    return Interval(float(np.exp(diff)), float(np.exp(lo)), float(np.exp(hi)), p, na, nb, method)


def holm(p_values, alpha: float = 0.05) -> np.ndarray:
    """Holm-adjusted p-values (q); NaN stays NaN and is not counted as a test. ``alpha`` does not
    change q (kept for callers); q < alpha is Holm's rejection at alpha.

    The step-down adjustment itself (sorted p times (m - i), running maximum, capped at 1), not
    ``statsmodels.stats.multitest.multipletests(method="holm")``: the same numbers (tested equal,
    tests/analysis/test_attribution.py), but statsmodels 0.15 runs ``gc.collect()`` on every Holm
    call, 0.3-0.6 s in a process holding a report's frames, which simulations call thousands of times."""
    p = np.asarray(p_values, float)
    q = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if len(ok):
        order = ok[np.argsort(p[ok], kind="stable")]
        m = len(order)
        q[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return q


def log_sd(values) -> float:
    """Between-repeat standard deviation of log values (~ the coefficient of variation)."""
    x = _logs(values)
    return float(np.std(x, ddof=1)) if len(x) >= 2 else float("nan")


def min_detectable_ratio(sd_log: float, n_baseline: int, n_tuned: int, alpha: float = 0.05,
                         power: float = 0.8) -> float:
    """Smallest ratio (> 1) the Welch test on the logs detects with ``power`` at this noise.

    Starts from the pooled t-test's exact answer (``statsmodels`` ``TTestIndPower``), then
    raises it until Welch's own power, simulated (seeded, vectorized), reaches ``power``: with
    3 repeats a side Welch's estimated degrees of freedom cost power (~70 % at the pooled MDE)."""
    if not np.isfinite(sd_log) or min(n_baseline, n_tuned) < MIN_REPEATS:
        return float("nan")
    return float(np.exp(_welch_effect(n_baseline, n_tuned, round(alpha, 12), power) * sd_log))


@functools.lru_cache(maxsize=256)
def _welch_effect(n_baseline: int, n_tuned: int, alpha: float, power: float) -> float:
    """The detectable shift in units of the log-SD: it depends on the design only, so it is
    computed once per (repeats, alpha, power)."""
    d = TTestIndPower().solve_power(effect_size=None, nobs1=n_baseline, alpha=alpha, power=power,
                                    ratio=n_tuned / n_baseline, alternative="two-sided")
    rng = np.random.default_rng(0)
    za, zb = rng.standard_normal((20000, n_baseline)), rng.standard_normal((20000, n_tuned))
    while _welch_power(za, zb, d, alpha) < power and d < 50:
        d *= 1.02
    return float(d)


def _welch_power(za: np.ndarray, zb: np.ndarray, d: float, alpha: float) -> float:
    """Share of simulated unit-variance samples (shift ``d``) that Welch's test rejects."""
    va, vb = za.var(axis=1, ddof=1) / za.shape[1], zb.var(axis=1, ddof=1) / zb.shape[1]
    t = (zb.mean(axis=1) + d - za.mean(axis=1)) / np.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (za.shape[1] - 1) + vb ** 2 / (zb.shape[1] - 1))
    return float(np.mean(2 * stats.t.sf(np.abs(t), df) < alpha))


def verdict(q_value: float, ratio: float, lower_is_better: bool, alpha: float = 0.05) -> str:
    """``better``/``worse`` when the corrected test rejects, in the direction of the estimate."""
    if not np.isfinite(q_value):
        return "no verdict"
    if q_value >= alpha:
        return "no significant difference"
    return "better" if (ratio < 1) == lower_is_better else "worse"
