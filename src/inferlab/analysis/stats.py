"""Interval estimates and tests for A/B verdicts; the repeat is the unit of inference.

Each side contributes one value per repeat (a run, or a ``-r<n>`` cell) of a metric, never one
per request: requests inside a run share its warm-up, placement and queue history, so
resampling them measures within-run noise only (the A/A that called 12 of 14 rows "worse").

- :func:`ratio_interval`: ratio of geometric means tuned/baseline with a Welch t-interval on the
  logs (``scipy.stats.ttest_ind(equal_var=False)``); a percentile bootstrap of the same ratio
  (``scipy.stats.bootstrap``) only when asked for, with >= ``BOOTSTRAP_MIN`` repeats a side
  (``auto`` is Welch: it holds nominal coverage from 3 to 8 repeats, the bootstrap did not).
- :func:`holm`: Holm's step-down correction (as ``statsmodels.stats.multitest.multipletests``), and
  :func:`holm_alphas`: the per-test level at which each displayed interval is drawn so that it
  excludes 1 exactly when Holm rejects (docs/verdicts.md, "Intervals that agree with the verdict").
- :class:`Sequential`: repeated p-values for a design that peeks after every pair
  (``--until-width``): a Pocock-type boundary calibrated by simulation (worst case over spread
  ratios 1-4 between the sides), valid at any look.
- brackets (a capacity search's [highest passing, lowest failing] rate): :func:`ratio_interval`
  takes each repeat's bracket width and adds its worst-case reading variance, so tied repeats on
  a grid still get a test.
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


def bracket_var(widths) -> float:
    """The reading variance a repeat adds when its value is only known to lie in a bracket of
    log width ``w`` (a grid search's [highest passing, lowest failing] rate, read at its geometric
    middle): ``w**2 / 4``, the largest variance any distribution on an interval of that width can
    have (Popoviciu's inequality): conservative on purpose, the true value may sit anywhere in it.
    Mean over the repeats; 0 where no width is given."""
    w = np.asarray([] if widths is None else widths, float)
    w = w[np.isfinite(w)]
    return float(np.mean(w ** 2) / 4) if len(w) else 0.0


def welch_se_df(va, vb, na, nb):
    """Welch-Satterthwaite: from each side's variance of its mean (sample variance / repeats;
    ``na``/``nb`` repeats) the standard error of the difference of the means and its degrees of
    freedom, ``(se, df)``; elementwise on arrays. The one place this formula is written (Welch's
    test here, its calibration and power simulations, analysis.attribution, analysis.equivalence).
    NaN/inf where both variances are 0 (no noise): callers test ``se`` first."""
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(va + vb)
        df = (va + vb) ** 2 / (va ** 2 / (na - 1) + vb ** 2 / (nb - 1))
    return se, df


def welch(a: np.ndarray, b: np.ndarray, level: float = 0.95, extra_a: float = 0.0,
          extra_b: float = 0.0) -> tuple[float, float, float, float]:
    """Welch's test of mean(b) - mean(a) on log values: (difference, low, high, two-sided p).
    ``extra_a``/``extra_b``: a variance per repeat added to each side's sample variance (the
    brackets' reading variance, :func:`bracket_var`); with none this is
    ``scipy.stats.ttest_ind(equal_var=False)`` exactly (a test checks it)."""
    na, nb = len(a), len(b)
    va = (np.var(a, ddof=1) + extra_a) / na
    vb = (np.var(b, ddof=1) + extra_b) / nb
    diff = float(np.mean(b) - np.mean(a))
    se, df = welch_se_df(va, vb, na, nb)
    se = float(se)
    if se <= 0:
        return diff, np.nan, np.nan, np.nan
    p = float(2 * stats.t.sf(abs(diff) / se, df))
    half = float(stats.t.ppf(0.5 + level / 2, df) * se)
    return diff, diff - half, diff + half, p


def ratio_interval(baseline, tuned, level: float = 0.95, method: str = "auto", n_boot: int = 4000,
                   seed: int = 0, widths: tuple | None = None) -> Interval:
    """Ratio of geometric means tuned/baseline of per-repeat values, its ``level`` interval and
    the two-sided p-value. ``method``: ``welch`` (default), ``bootstrap`` (>= 8 repeats a side),
    ``auto`` = welch at every repeat count: the percentile bootstrap covered 90.7 % at nominal
    95 % from 8 repeats a side where Welch covered 94.8 % (issue 19 item 6), so it is only used
    when asked for. ``widths``: (baseline, tuned) per-repeat log widths of the brackets the values
    are read from (capacity searches; :func:`bracket_var`): Welch with their reading variance added."""
    a, b = _logs(baseline), _logs(tuned)
    na, nb = len(a), len(b)
    extra_a, extra_b = (bracket_var(widths[0]), bracket_var(widths[1])) if widths is not None else (0.0, 0.0)
    if min(na, nb) < MIN_REPEATS:
        point = float(np.exp(b.mean() - a.mean())) if na and nb else float("nan")
        return Interval(point, np.nan, np.nan, np.nan, na, nb, "none",
                        f"{min(na, nb)} repeat(s) on a side: no between-run variance, no interval")
    diff = float(b.mean() - a.mean())
    if method == "auto":
        method = "welch"
    if np.ptp(a) == 0 and np.ptp(b) == 0 and extra_a + extra_b == 0:  # no variation at all, no bracket
        return Interval(float(np.exp(diff)), np.nan, np.nan, np.nan, na, nb, method,
                        "no variation between repeats: noise unknown")
    _, lo, hi, p = welch(a, b, level, extra_a, extra_b)
    if method == "welch":
        pass
    elif method == "bootstrap":
        if extra_a + extra_b > 0:
            raise ValueError("bootstrap takes point values, not brackets: use welch")
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
    note = "bracketed values: each repeat's bracket adds its reading variance" if extra_a + extra_b > 0 else ""
    return Interval(float(np.exp(diff)), float(np.exp(lo)), float(np.exp(hi)), p, na, nb, method, note)


def holm(p_values, alpha: float = 0.05) -> np.ndarray:
    """Holm-adjusted p-values (q); NaN stays NaN and is not counted as a test."""
    p = np.asarray(p_values, float)
    q = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if len(ok):
        # statsmodels' multipletests(method="holm")[1], computed here: it runs gc.collect() on every
        # call (0.3 s each on a loaded host, twice per comparison); tests check the two agree
        order = ok[np.argsort(p[ok], kind="mergesort")]
        m = len(order)
        q[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return q


def holm_alphas(p_values, alpha: float = 0.05) -> np.ndarray:
    """The level each test's displayed interval is drawn at (1 - this) so that it never disagrees
    with Holm's verdict: sort the p-values; rank j (1-based, m tests) gets ``alpha / (m - j + 1)``
    up to and including the first rank Holm does not reject (J); every later rank gets J's
    ``alpha / (m - J + 1)``. Then, for a test whose interval at level 1 - a excludes the null
    exactly when p < a (Welch, and the sequential p-values below): a rank j < J has
    p_(j) <= alpha / (m - j + 1), so its interval excludes 1; rank J has p_(J) > alpha / (m - J + 1),
    and every later rank a p at least as large, so theirs include 1. Each level is at least
    1 - alpha, so each displayed interval contains the unadjusted 1 - alpha one. NaN stays NaN."""
    p = np.asarray(p_values, float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    if not m:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    stop = None
    for j, i in enumerate(order, start=1):
        if stop is None:
            out[i] = alpha / (m - j + 1)
            if not p[i] <= out[i]:  # Holm's first non-rejection: the rest share its level
                stop = out[i]
        else:
            out[i] = stop
    return out


class Sequential:
    """Repeated p-values for a comparison that may stop after any pair from ``first`` to ``last``
    (``inferlab ab --until-width``): ``p_value(p)`` maps the Welch p-value seen at the stop to
    ``h(p) >= P(min over looks of the Welch p <= p)`` under no difference, and ``nominal(a)``
    inverts it. Since ``P(h(p_stop) <= a) <= P(some look has h(p_k) <= a) <= a``, the adjusted
    p-value is valid whatever decided the stop (the width rule, or a user who stopped when it
    looked significant): a Pocock-type constant boundary, calibrated by seeded simulations of
    Welch's statistic on normal log values (scale-free, so one calibration serves every metric),
    taking at each p the largest crossing probability over spread ratios ``SPREAD_RATIOS`` between
    the sides (Welch's small-sample error grows with unequal spread) and never less than p itself
    (never more liberal than one look). The interval shown at the stop is Welch's at nominal
    level ``1 - nominal(a)``: it excludes 1 exactly when ``h(p) < a``. Below ``TAIL_P`` h is
    continued linearly through 0."""

    def __init__(self, first: int, last: int, n_sim: int = 60_000, seed: int = 0) -> None:
        if first < MIN_REPEATS or last < first:
            raise ValueError(f"looks from {first} to {last} pairs: need {MIN_REPEATS} <= first <= last")
        self.first, self.last = first, last
        self._knots_p, self._knots_h = _calibrate(first, last, n_sim, seed)

    def p_value(self, p):
        p = np.asarray(p, float)
        return np.where(np.isfinite(p), np.minimum(1.0, np.interp(p, self._knots_p, self._knots_h)), np.nan)

    def nominal(self, a):
        a = np.asarray(a, float)
        return np.where(np.isfinite(a), np.interp(a, self._knots_h, self._knots_p), np.nan)


SPREAD_RATIOS = (1.0, 2.0, 4.0)  # tuned-side SD / baseline-side SD the calibration covers
TAIL_P = 1e-4  # below it the simulation is too thin: h continues as a straight line through 0


@functools.lru_cache(maxsize=16)
def _calibrate(first: int, last: int, n_sim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Knots (p, h(p)): per spread ratio the simulated distribution function of the smallest
    Welch p over the looks, then the largest of them and p itself, made strictly increasing."""
    rng = np.random.default_rng(seed)
    grid = np.geomspace(TAIL_P, 1.0, 600)
    h = grid.copy()  # never below p: one look's own error rate
    for ratio in SPREAD_RATIOS:
        a, b = rng.standard_normal((n_sim, last)), ratio * rng.standard_normal((n_sim, last))
        minp = np.ones(n_sim)
        for k in range(first, last + 1):
            va, vb = a[:, :k].var(axis=1, ddof=1) / k, b[:, :k].var(axis=1, ddof=1) / k
            se, df = welch_se_df(va, vb, k, k)
            t = (b[:, :k].mean(axis=1) - a[:, :k].mean(axis=1)) / se
            minp = np.minimum(minp, 2 * stats.t.sf(np.abs(t), df))
        h = np.maximum(h, np.searchsorted(np.sort(minp), grid, side="right") / n_sim)
    h = np.minimum(1.0, np.maximum.accumulate(h))
    h = h + np.arange(len(h)) * 1e-12  # strictly increasing: the inverse is a function
    return np.concatenate([[0.0], grid]), np.concatenate([[0.0], h])


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
    se, df = welch_se_df(va, vb, za.shape[1], zb.shape[1])
    t = (zb.mean(axis=1) + d - za.mean(axis=1)) / se
    return float(np.mean(2 * stats.t.sf(np.abs(t), df) < alpha))


def verdict(q_value: float, ratio: float, lower_is_better: bool, alpha: float = 0.05) -> str:
    """``better``/``worse`` when the corrected test rejects, in the direction of the estimate."""
    if not np.isfinite(q_value):
        return "no verdict"
    if q_value >= alpha:
        return "no significant difference"
    return "better" if (ratio < 1) == lower_is_better else "worse"
