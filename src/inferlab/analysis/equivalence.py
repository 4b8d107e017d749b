"""Equivalence and non-inferiority against a margin, on the log ratio, the repeat as the unit.

The same data and test as the verdicts (analysis.compare, analysis.stats): each side gives one
value per repeat, the effect is the difference of the mean logs (tuned - baseline; its exp is the
ratio of geometric means), tested with Welch's t on the logs. What changes is the question:
not "is there a difference?" but "is the difference within ``margin``?".

Decisions, all stated here once:

- **the margin is symmetric on the log scale**: ``--margin 5%`` is the band of ratios
  [1/1.05, 1.05] = [0.952, 1.050] (``delta = log(1 + margin)``), so a 5 % margin on throughput
  is the same margin on seconds per request, and swapping the sides mirrors the verdict.
- **equivalence** (two one-sided tests, TOST): "equivalent within +-5 %" when both one-sided
  tests reject at ``alpha``, i.e. the ``1 - 2 alpha`` (90 %) interval lies inside the band
  (:func:`log_ratio_test`: ``p_equivalent`` = the larger of the two one-sided p-values);
  "not equivalent" when the ``1 - alpha`` (95 %) interval lies wholly outside the band
  (``p_beyond``: the smaller one-sided p-value doubled, Bonferroni over the two directions,
  so that calling a truly equivalent pair "not equivalent" stays <= alpha whatever the noise);
  else "inconclusive", with how many more repeats a side would decide (:func:`more_repeats`).
- **non-inferiority** (the gate): one-sided, in the metric's worse direction
  (:data:`LOWER_IS_BETTER`): "non-inferior" when the worse end of the 90 % interval is within
  the margin (``p_noninferior`` < alpha); "regression beyond the margin" when its better end is
  past it (``p_regression`` < alpha, after the caller's correction); else inconclusive.
- **too few repeats**: fewer than analysis.compare's ``MIN_VERDICT_REPEATS`` (3) a side is
  inconclusive whatever the interval, as for the verdicts.
- **"N more repeats a side"** (:func:`more_repeats`): the smallest N for which the test that
  would decide reaches 80 % power, *assuming* the true ratio is the measured one and the
  between-repeat log-SD is the measured one (pooled over both sides), with Welch's own
  degrees of freedom: simulated exactly in distribution (sample means normal, sample variances
  scaled chi-square), seeded. Inside the band the deciding test is equivalence (or
  non-inferiority); outside it, "beyond the margin". An estimate on the margin itself has no
  finite N (the power stays at alpha), and above :data:`MAX_REPEATS` a side the answer is
  "more than".

Multiplicity: :func:`equivalence_table` applies Holm within the same families as the verdicts
(primary, secondary), to both claims; the gate (analysis.gate) says what it does across its
metrics. Simulations with known truth test the error rates (tests/analysis/test_equivalence.py).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special

from . import stats
from .compare import LOWER_IS_BETTER as COMPARE_DIRECTIONS
from .compare import MIN_VERDICT_REPEATS

POWER = 0.8  # the power "N more repeats" is computed for
MAX_REPEATS = 200  # a side: beyond this, "more than"
_SIMS = 10000  # draws per power evaluation (seeded): Monte Carlo standard error of an 80 % power 0.4 %

#: The direction of "worse", defined once: True when a higher value is worse (latency, TTFT, TPOT),
#: False when a lower one is (throughput, goodput, max sustainable rate). compare's metrics keep
#: compare's table; the token-level SLO percentiles of the gate (analysis.gate, named
#: ``<ttft|tpot|e2e>_p<q>``) are latencies.
LOWER_IS_BETTER: dict[str, bool] = dict(COMPARE_DIRECTIONS)
TOKEN_METRIC_RE = re.compile(r"^(ttft|tpot|e2e)_p\d+(\.\d+)?$")


def lower_is_better(metric: str) -> bool:
    """Whether a higher value of ``metric`` is worse (see :data:`LOWER_IS_BETTER`)."""
    if metric in LOWER_IS_BETTER:
        return LOWER_IS_BETTER[metric]
    if TOKEN_METRIC_RE.match(metric):
        return True
    raise KeyError(f"metric {metric!r}: no direction of 'worse' defined (analysis.equivalence.LOWER_IS_BETTER)")


def parse_margin(text: str | float) -> float:
    """``"5%"`` -> 0.05; a bare fraction below 1 (``"0.05"``) is taken as it is. Anything else, a
    bare ``5`` included (5 % or 500 %?), is refused with what was expected."""
    s = str(text).strip()
    try:
        value = float(s[:-1]) / 100 if s.endswith("%") else float(s)
    except ValueError:
        raise ValueError(f"margin {text!r}: expected a percentage like 5% (or a fraction like 0.05)") from None
    if not s.endswith("%") and value >= 1:
        raise ValueError(f"margin {text!r}: ambiguous; write it as a percentage (e.g. {s}%) or a fraction below 1")
    if not 0 < value < 1:
        raise ValueError(f"margin {text!r}: expected more than 0 % and less than 100 %")
    return value


def band(margin: float) -> tuple[float, float]:
    """The ratios within the margin: [1/(1+margin), 1+margin] (symmetric on the log scale)."""
    return 1 / (1 + margin), 1 + margin


def pct(margin: float) -> str:
    """0.05 -> ``5 %`` (how verdicts and the gate print a margin)."""
    return f"{margin * 100:g} %"


@dataclass(frozen=True)
class LogRatioTest:
    """Welch's t on the logs of one metric, tuned against baseline, against a margin.

    ``low``/``high``: the ``1 - 2 alpha`` interval of the ratio (the one TOST decides with);
    one-sided p-values (H0 in brackets): ``p_equivalent`` = max of [ratio <= 1/(1+m)] and
    [ratio >= 1+m]; ``p_beyond`` = 2 x min of [ratio >= 1/(1+m)] and [ratio <= 1+m], capped at 1;
    ``p_noninferior`` [worse by >= m] and ``p_regression`` [worse by <= m] in the metric's worse
    direction (NaN when no direction was given). NaN throughout when there is no noise estimate
    (``note`` says why)."""

    ratio: float
    low: float
    high: float
    n_baseline: int
    n_tuned: int
    sd: float  # pooled between-repeat log-SD (~ CV), the noise "N more repeats" assumes
    se: float
    df: float
    p_equivalent: float
    p_beyond: float
    p_noninferior: float
    p_regression: float
    margin: float
    alpha: float
    note: str = ""


def log_ratio_test(baseline, tuned, margin: float, alpha: float = 0.05, lower_is_better: bool | None = None
                   ) -> LogRatioTest:
    """The equivalence and non-inferiority tests of ``tuned`` / ``baseline`` (per-repeat values;
    NaN dropped, zero floored as in analysis.stats). ``lower_is_better``: the metric's direction,
    for the non-inferiority p-values (None: those are NaN)."""
    a, b = stats._logs(baseline), stats._logs(tuned)  # noqa: SLF001 - the one floor rule for zeros
    na, nb = len(a), len(b)
    delta = float(np.log1p(margin))
    ratio = float(np.exp(b.mean() - a.mean())) if na and nb else float("nan")
    nan = float("nan")

    def none(note: str) -> LogRatioTest:
        sd = float(np.sqrt(np.mean([np.var(a, ddof=1), np.var(b, ddof=1)]))) if min(na, nb) >= 2 else nan
        return LogRatioTest(ratio, nan, nan, na, nb, sd, nan, nan, nan, nan, nan, nan, margin, alpha, note)

    if min(na, nb) < stats.MIN_REPEATS:
        return none(f"{min(na, nb)} repeat(s) on a side: no between-repeat noise, no test")
    va, vb = np.var(a, ddof=1), np.var(b, ddof=1)
    if va == 0 and vb == 0:
        return none("no variation between repeats: noise unknown")
    r = margin_tests(b.mean() - a.mean(), va, vb, na, nb, delta, alpha, lower_is_better)
    return LogRatioTest(ratio=ratio, low=float(np.exp(r["low"])), high=float(np.exp(r["high"])), n_baseline=na,
                        n_tuned=nb, sd=float(np.sqrt((va + vb) / 2)), se=float(r["se"]), df=float(r["df"]),
                        p_equivalent=float(r["p_equivalent"]), p_beyond=float(r["p_beyond"]),
                        p_noninferior=float(r["p_noninferior"]), p_regression=float(r["p_regression"]),
                        margin=margin, alpha=alpha)


def margin_tests(diff, va, vb, na: int, nb: int, delta: float, alpha: float, lower_is_better: bool | None = None
                 ) -> dict[str, np.ndarray]:
    """The one computation behind every verdict of this module, vectorized over experiments:
    from the difference of mean logs ``diff`` (tuned - baseline) and the two sample variances of
    the logs (``na``/``nb`` repeats), Welch's ``se`` and ``df``, the ``1 - 2 alpha`` interval of the
    log ratio (``low``, ``high``) and the p-values of :class:`LogRatioTest`. The t distribution
    comes through scipy.special's ufuncs (stdtr = its cdf, stdtrit = the inverse): the numbers of
    scipy.stats.t at a fraction of the per-call cost, which the power simulation needs."""
    diff, va, vb = np.asarray(diff, float), np.asarray(va, float), np.asarray(vb, float)
    se, df = stats.welch_se_df(va / na, vb / nb, na, nb)
    p_above_low = special.stdtr(df, -(diff + delta) / se)  # H0: diff <= -delta
    p_below_high = special.stdtr(df, (diff - delta) / se)  # H0: diff >= +delta
    crit = special.stdtrit(df, 1 - alpha)
    out = {"se": se, "df": df, "low": diff - crit * se, "high": diff + crit * se,
           "p_equivalent": np.maximum(p_above_low, p_below_high),
           # beyond either edge, each direction at alpha / 2 (Bonferroni): <= alpha at any noise
           "p_beyond": np.minimum(1.0, 2 * np.minimum(1 - p_above_low, 1 - p_below_high)),
           "p_noninferior": np.full_like(se, np.nan), "p_regression": np.full_like(se, np.nan)}
    if lower_is_better is not None:
        worse = diff if lower_is_better else -diff  # > 0: the candidate is worse
        out["p_noninferior"] = special.stdtr(df, (worse - delta) / se)  # H0: worse by >= delta
        out["p_regression"] = special.stdtr(df, -(worse - delta) / se)  # H0: worse by <= delta
    return out


# --- how many more repeats would decide --------------------------------------------------------


def more_repeats(t: LogRatioTest, claim: str, alpha: float | None = None, lower_is_better: bool | None = None,
                 power: float = POWER) -> int | None:
    """Repeats to add on *each* side for the deciding test to reach ``power``, at the measured
    noise and assuming the measured ratio is the truth (module docstring). ``claim``:
    ``equivalence`` (TOST inside the band, "beyond" outside it) or ``noninferiority`` (non-inferior
    on the better side of the margin, regression past it; needs ``lower_is_better``).
    ``alpha``: the level that test runs at (default ``t.alpha``; pass Holm's strictest step for a
    corrected family). None: no finite N (no noise estimate, or the estimate on the margin);
    ``MAX_REPEATS + 1 - n``: more than :data:`MAX_REPEATS` a side would be needed."""
    alpha = t.alpha if alpha is None else alpha
    if not np.isfinite(t.sd) or t.sd <= 0 or not np.isfinite(t.ratio):
        return None
    delta = float(np.log1p(t.margin))
    d = float(np.log(t.ratio))
    if claim == "equivalence":
        rule = "tost" if abs(d) < delta else "beyond"
        if abs(abs(d) - delta) < 1e-12:
            return None
    elif claim == "noninferiority":
        if lower_is_better is None:
            raise ValueError("non-inferiority needs the metric's direction")
        d = d if lower_is_better else -d  # worsening, > 0 worse
        if abs(d - delta) < 1e-12:
            return None
        rule = "noninferior" if d < delta else "regression"
    else:
        raise ValueError(f"unknown claim {claim!r} (equivalence, noninferiority)")
    n0 = max(t.n_baseline, t.n_tuned)
    first = max(MIN_VERDICT_REPEATS - min(t.n_baseline, t.n_tuned), 1)
    extra = _extra(rule, round(d / t.sd, 6), round(delta / t.sd, 6), t.n_baseline, t.n_tuned, round(alpha, 12),
                   power, first)
    return extra if extra is not None else MAX_REPEATS + 1 - n0


@functools.lru_cache(maxsize=1024)
def _extra(rule: str, d: float, delta: float, na: int, nb: int, alpha: float, power: float, first: int) -> int | None:
    """Smallest k >= ``first`` with simulated power >= ``power`` at (na + k, nb + k), by bisection
    over k (power rises with k); None when even :data:`MAX_REPEATS` a side is not enough."""
    hi = MAX_REPEATS - max(na, nb)
    if hi < first or simulated_power(rule, d, delta, na + hi, nb + hi, alpha) < power:
        return None
    lo = first
    if simulated_power(rule, d, delta, na + lo, nb + lo, alpha) >= power:
        return lo
    while hi - lo > 1:  # power(lo) < target <= power(hi)
        mid = (lo + hi) // 2
        if simulated_power(rule, d, delta, na + mid, nb + mid, alpha) >= power:
            hi = mid
        else:
            lo = mid
    return hi


def simulated_power(rule: str, d: float, delta: float, na: int, nb: int, alpha: float, sims: int = _SIMS,
                    seed: int = 0) -> float:
    """Share of simulated experiments (true log difference ``d``, margin ``delta``, both in units
    of the between-repeat SD; ``na``/``nb`` repeats) in which :func:`margin_tests` decides by
    ``rule``: ``tost`` (equivalent), ``beyond`` (not equivalent), ``noninferior``, ``regression``
    (``d`` is then the worsening: positive is worse), each at ``alpha``. Exact in distribution:
    sample means are normal and sample variances scaled chi-square, so no per-repeat draws."""
    if rule not in _RULES:
        raise ValueError(f"unknown rule {rule!r} ({', '.join(_RULES)})")
    rng = np.random.default_rng(seed)
    diff = d + rng.standard_normal(sims) / np.sqrt(nb) - rng.standard_normal(sims) / np.sqrt(na)
    va = rng.chisquare(na - 1, sims) / (na - 1)
    vb = rng.chisquare(nb - 1, sims) / (nb - 1)
    # the worsening convention: a latency-like direction, so "worse" is the difference itself
    p = margin_tests(diff, va, vb, na, nb, delta, alpha, lower_is_better=True)[_RULES[rule]]
    return float(np.mean(p < alpha))


_RULES = {"tost": "p_equivalent", "beyond": "p_beyond", "noninferior": "p_noninferior", "regression": "p_regression"}


# --- compare --margin ---------------------------------------------------------------------------


def equivalence_verdict(t: LogRatioTest, q_equivalent: float, q_beyond: float, extra: int | None) -> str:
    """The three outcomes of the module docstring, from Holm-adjusted p-values."""
    m = pct(t.margin)
    if min(t.n_baseline, t.n_tuned) >= MIN_VERDICT_REPEATS:
        if np.isfinite(q_equivalent) and q_equivalent < t.alpha:
            return f"equivalent within ±{m}"
        if np.isfinite(q_beyond) and q_beyond < t.alpha:
            return "not equivalent"
    return "inconclusive, " + _more_text(t, extra)


def _more_text(t: LogRatioTest, extra: int | None) -> str:
    """How many more repeats would decide, or why that cannot be said."""
    if t.note and not np.isfinite(t.sd):
        return f"{t.note}: at least {MIN_VERDICT_REPEATS} repeats a side are needed"
    if extra is None:
        if not np.isfinite(t.sd) or t.sd <= 0:
            return f"{t.note or 'no noise estimate'}: no repeat count can be computed"
        return "the estimate sits on the margin: no repeat count decides it"
    if extra > MAX_REPEATS - max(t.n_baseline, t.n_tuned):
        return f"more than {MAX_REPEATS} repeats a side would be needed at the measured noise"
    return f"{extra} more repeat{'s' if extra != 1 else ''} a side would decide at the measured noise"


def equivalence_table(res: pd.DataFrame, margin: float, alpha: float | None = None) -> pd.DataFrame:
    """``compare --margin``: per row of analysis.compare's result (cell x metric), the TOST verdict
    from the same per-repeat values (``res.attrs["repeats"]``): ratio, its ``1 - 2 alpha``
    interval, Holm q-values of both claims within the verdicts' families, the measured noise and
    the verdict. Power for "N more" at Holm's strictest step (alpha / tests in the family)."""
    alpha = float(res.attrs.get("alpha", 0.05)) if alpha is None else alpha
    level = f"{(1 - 2 * alpha) * 100:g}% CI"
    cols = ["cell", "metric", "role", "repeats", "ratio", level, "band", "q equivalent", "q beyond", "noise", "verdict"]
    if res.empty:
        return pd.DataFrame(columns=cols)
    reps = res.attrs["repeats"]
    tests = []
    for r in res.itertuples():
        sel = reps["cell"] == r.cell
        tests.append(log_ratio_test(reps.loc[sel & (reps["side"] == "baseline"), r.metric],
                                    reps.loc[sel & (reps["side"] == "tuned"), r.metric], margin, alpha))
    out = res[["cell", "metric", "role"]].copy()
    out["q_eq"], out["q_beyond"] = np.nan, np.nan
    for role in out["role"].unique():
        sel = (out["role"] == role).to_numpy()
        out.loc[sel, "q_eq"] = stats.holm([t.p_equivalent for t, s in zip(tests, sel) if s], alpha)
        out.loc[sel, "q_beyond"] = stats.holm([t.p_beyond for t, s in zip(tests, sel) if s], alpha)
    family = out["role"].map(out["role"].value_counts()).to_numpy()
    lo, hi = band(margin)
    out["repeats"] = [f"{t.n_baseline}+{t.n_tuned}" for t in tests]
    out["ratio"] = [f"{t.ratio:.3f}x" for t in tests]
    out[level] = [f"[{t.low:.3f}, {t.high:.3f}]" if np.isfinite(t.low) else "" for t in tests]
    out["band"] = f"[{lo:.3f}, {hi:.3f}]"
    out["q equivalent"] = out["q_eq"].map(lambda q: "" if not np.isfinite(q) else f"{q:.2g}")
    out["q beyond"] = out["q_beyond"].map(lambda q: "" if not np.isfinite(q) else f"{q:.2g}")
    out["noise"] = [f"±{t.sd * 100:.1f}%" if np.isfinite(t.sd) else "" for t in tests]
    out["verdict"] = [equivalence_verdict(t, qe, qb, more_repeats(t, "equivalence", alpha / m))
                      for t, qe, qb, m in zip(tests, out["q_eq"], out["q_beyond"], family)]
    out.attrs.update(margin=margin, alpha=alpha, tests=tests)
    return out[cols]


def equivalence_note(margin: float, alpha: float = 0.05) -> str:
    """The line printed above the equivalence table: what the band and the interval are."""
    lo, hi = band(margin)
    return (f"Equivalence within ±{pct(margin)} (ratio band [{lo:.3f}, {hi:.3f}], symmetric on the log scale): "
            f"two one-sided Welch tests on the per-repeat logs at alpha {alpha:g} each (equivalent when the "
            f"{(1 - 2 * alpha) * 100:g}% CI lies inside the band; not equivalent when the {(1 - alpha) * 100:g}% CI "
            f"lies outside it), Holm within each family; 'N more' assumes the measured ratio and noise (80% power).")
