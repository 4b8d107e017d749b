"""A constant-rate step's verdict as a sequential statistical decision.

SLO: a list of :class:`SloBound` (metric, bound, percentile ``q``), e.g. ``ttft_ms <= 500`` at
p99, ``tpot_ms <= 50`` at p99, ``e2e_ms <= 5000`` at p95. Each bound allows a violating share
``1 - q`` of the steady window's requests; a failed request (``ok`` false) violates every bound,
and so does a missing value.

Per bound, ``t`` violations among ``n`` requests. Requests in a queue are not independent
(violations come in runs while a queue drains), so the counts are deflated by a variance
inflation factor ``D`` (:func:`variance_inflation`: batch means of the violation indicator over
ten batches, at an upper bound, floored by the same estimate on the ``MIN_EXCEEDANCES``
largest values when there are fewer violations than that, counting only those of them at or
above ``FLOOR_FRACTION`` = 1/2 of the bound, with its batches inside looks): the effective counts ``t / D`` of
``n / D`` requests go into Clopper-Pearson bounds (beta quantiles,
``scipy.special.betaincinv``, which take non-integer counts). A window that happens to be
calm also looks uncorrelated (its D comes out low exactly when its t does), so D is taken at
its upper ``INFLATION_CONFIDENCE`` = 97.5 % bound: at 90 % a step at exactly the allowed share
passed 7.0 % of the time on the queueing simulator; at 97.5 %, 2.5 % (2.6 % since the floor's
batches lie inside looks)
(tests/analysis/test_certify.py).

The floor stands in for the violations' clustering only where the largest values are
informative about it: near the bound. Found on an H200 (e2e <= 2,000 ms at p95, 129.5 req/s):
0 violations among 3,981 requests, but the 50 largest values, all far below the bound, came
in one transient, so the floor took D to ~400 (the batch size), the effective n to ~10 and the
upper bound to 15.7 %: UNDECIDED on strong evidence. A burst of values below half the bound
says how that lower tail clusters, not how violations would; so a largest value counts in the
floor only when it is >= ``FLOOR_FRACTION`` x the bound (a failed request or missing value
always does), and with none there the floor is 1 (the indicator's own D). Where the step is
near its allowed share the 50 largest values are at the bound, so the floor, and the measured
error rates below, are unchanged (tests/analysis/test_certify.py, regression test included).

The floor's batches lie inside looks, each compared with its own look's mean (``ends``: the
looks' cumulative sizes; :func:`_batch_inflation_many`). Found on the CPU engine
(data/capacity-evidence/2026-12-04-local-cpu, p90 e2e <= 5 s): 0 violations in 800 requests,
the largest 84 % of the bound, UNDECIDED with D = 69.7, because one look ran ~16 % slower as a
whole and the 50 largest values all sat in it; pooled, the floor read that speed change as
clustered violations. Looks are separate k6 schedules, so a look's shift is not a run of
violations inside the stream; a burst inside a look still floors D, and the indicator's own
estimate stays pooled (violations that came in one look are clustered). Re-judged, those steps
pass; the simulated rates below moved by 0.1-0.4 points. What this does not fix: near the
boundary a step's share depends on the speeds its looks drew; with looks 3 % / 5 % apart in
speed the false-pass rate is 4.9 % / 9.9 % (``LOOK_SPREAD_CALIBRATED``; each certification
step records its look spread, and the report names steps beyond it).

Sequential rule (the step looks at its data after each block, up to ``n_looks`` = 5 looks at
``cap * k / n_looks`` requests; the cap defaults to ``CAP_VIOLATIONS / (1 - q)`` = 200 / (1 - q)
of the strictest bound, :func:`default_cap`: p95 4,000, p99 20,000): **alpha spending with a union bound** over the fixed maximum
number of looks. Look ``k`` spends ``alpha * ((k/K)^2 - ((k-1)/K)^2)`` (the Kim-DeMets power
family with rho = 2: little early, most at the cap); since the spent levels sum to ``alpha``,
the chance of ever passing a bad step (or failing a good one) is at most ``alpha`` whatever the
dependence between looks, as far as each look's bound holds. Measured on the queueing
simulator (1,000 steps each, p95, default cap): P(pass) 2.6 % at a true share of 5.14 %
(allowed 5 %) and 90.1 % at 2.55 % (half), 'undecided' counted as a fail; the earlier rule
(cap 1,500, D at 90 %) gave 7.0 % and 71.5 %. At look ``k``, per bound, with one-sided level ``alpha_k``:

- PASS when, for every bound, the upper confidence bound on the violating share is <= ``1 - q``
  (an intersection-union test: each bound is tested at ``alpha``, no multiplicity correction
  needed to claim all of them) and the backlog test does not find a growing queue;
- FAIL when, for some bound, the lower confidence bound is > ``1 - q``, or the backlog grows;
- CONTINUE otherwise; at the last look UNDECIDED, which counts as a fail.

Backlog growth (:func:`backlog_growth`): backlog = sent - completed, sampled at each send; an
OLS trend with a Newey-West (HAC) standard error (``statsmodels``); a window's backlog rises
when the slope is significantly positive *and* the fitted growth over the window is at least
``min_growth`` of the requests sent, so one request more or less never decides it.

**A step's backlog verdict comes from its looks, not from one window** (:func:`step_backlog`).
One window cannot tell a queue that grows without end from the rising half of a swing that
comes back: on an H200 (data/gpu-evidence/2026-12-04-h200-session7) the engine's decode speed
swings for 1-3 s at a time, the requests in flight follow it (92 -> 212 within one 4 s window,
with no request waiting in vLLM's queue), and 7 of 27 judged windows "rose" at rates with no
order (191-263 req/s) while the other 20, higher rates included, kept up: the pass probability
stopped falling with the rate, which the search's fixed-sequence testing needs. The HAC error
does not help: the swings are as long as the window (1-2 s of lags gave the same verdicts).
Looks are separate k6 schedules with the engine drained between them, so their swings are
independent, while a queue that grows without end rises in every look. So the step's backlog
**grows** (fails the step) only when its last ``BACKLOG_LOOKS`` = 3 looks all rose; a look that
rose with fewer behind it is **unsure**: a certification step cannot pass on it before its
cap and runs its next look (at the cap the counts decide: a queue that grows has had five looks
to rise three times running); an exploration step (one look: a point estimate that only places
the certification grid) records it and is not marked over for it. With a per-window false-rise
share ``f`` under swings, a step whose counts pass by its third look fails on the backlog with
probability about ``f ** 3`` (26 % per window on the H200 records: ~1.8 %); one whose counts
stay open to the cap can meet three rises running anywhere in its five looks: about
``f ** 3 (3 - 2 f)`` (~4.4 %). Measured
on the queueing simulator with decode-speed swings and 4 s looks (tests/analysis/test_certify.py
``test_backlog_swings_fail_few_steps_and_a_growing_queue_most``): at 80 % of capacity one window
rises in 34.5 % of steps (the one-window rule failed them all), three in a row in 4.5 %; at
125 % of capacity 100 % of steps grow by look 3, at 110 % ~35 % (20 s looks: 62 %). The price:
a step whose first look rises runs a second before it can pass, and a small overload in short
looks is left to the latency bounds.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import special, stats

PASS, FAIL, CONTINUE, UNDECIDED = "pass", "fail", "continue", "undecided"
MIN_EXCEEDANCES = 50  # exceedances the clustering floor looks at, at least
# largest values below this fraction of the bound say nothing about how violations cluster (module docstring)
FLOOR_FRACTION = 0.5
# the looks' speed spread (log-sd of look medians) up to which the simulated error rates hold
# (tests/analysis/test_certify.py: 4.9 % at 3 %, 9.9 % at 5 % against 2.6 % with steady looks)
LOOK_SPREAD_CALIBRATED = 0.03


@dataclass(frozen=True)
class SloBound:
    """``metric <= bound`` for at least a share ``q`` of requests (``q`` = 0.99 for p99)."""

    metric: str
    bound: float
    q: float

    @property
    def allowed(self) -> float:
        return 1.0 - self.q


@dataclass(frozen=True)
class BoundCount:
    """One SLO bound at one look: counts, the inflation used, the confidence bounds, the verdict."""

    metric: str
    bound: float
    q: float
    n: int
    t: int
    inflation: float
    lower: float  # lower confidence bound on the violating share
    upper: float  # upper confidence bound on the violating share
    decision: str  # pass / fail / continue


@dataclass(frozen=True)
class Backlog:
    """The backlog-growth test's result on one window (one k6 schedule)."""

    slope_per_s: float
    growth: float  # fitted backlog growth over the window, requests
    p_value: float  # one-sided, H0: no growth
    grows: bool  # this window alone: significant and at least the minimum growth
    span_s: float = 0.0  # first to last send, seconds


@dataclass(frozen=True)
class StepDecision:
    """One step at one look: what was decided and why."""

    rate: float
    n: int
    look: int
    n_looks: int
    counts: tuple[BoundCount, ...]
    backlog: Backlog | None
    decision: str  # pass / fail / continue / undecided
    reason: str

    @property
    def passed(self) -> bool:
        return self.decision == PASS

    @property
    def final(self) -> bool:
        return self.decision != CONTINUE


def requests_needed(q: float, confidence: float = 0.95) -> int:
    """Requests a step needs to pass with zero violations when independent: the smallest ``n``
    with ``q ** n <= 1 - confidence`` (p99 at 95 %: 299; at 99 %: 459)."""
    return math.ceil(math.log(1.0 - confidence) / math.log(q))


def spent_alpha(alpha: float, look: int, n_looks: int) -> float:
    """The one-sided level look ``look`` (1-based) of ``n_looks`` spends (module docstring)."""
    return alpha * ((look / n_looks) ** 2 - ((look - 1) / n_looks) ** 2)


def look_sizes(cap: int, n_looks: int) -> list[int]:
    """Requests in the window at each look: ``cap * k / n_looks``, rounded up."""
    return [math.ceil(cap * k / n_looks) for k in range(1, n_looks + 1)]


def clopper_pearson(t: float, n: float, level: float) -> tuple[float, float]:
    """One-sided Clopper-Pearson bounds (lower, upper), each holding with ``1 - level``;
    non-integer (effective) counts allowed: :func:`clopper_pearson_many` of one count."""
    lower, upper = clopper_pearson_many(t, n, level)
    return float(lower), float(upper)


INFLATION_CONFIDENCE = 0.975  # the variance inflation is taken at this upper bound (see the module docstring)
BATCHES = 10  # batch means over this many batches (so the batch size grows with n)
CAP_VIOLATIONS = 200  # the cap: a step may run ``CAP_VIOLATIONS / (1 - q)`` requests (p95: 4,000; p99: 20,000)
N_LOOKS = 5


def default_cap(slo) -> int:
    """Requests a step may run before it is "undecided": ``CAP_VIOLATIONS / (1 - q)`` of the
    strictest bound (the cap at which the simulated power was shown; module docstring)."""
    return max(math.ceil(round(CAP_VIOLATIONS / s.allowed, 6)) for s in slo)


def _batch_inflation_many(x: np.ndarray, ends: list[int] | None = None) -> np.ndarray:
    """:func:`_batch_inflation` of each row of ``x`` (replicates, n): batch means over
    ``BATCHES`` batches, at the upper ``INFLATION_CONFIDENCE`` bound of their variance, relative
    to a binomial's, clipped to [1, batch size]. With ``ends`` (the looks' cumulative sizes,
    :func:`_check_ends`; None: one look) the batches lie inside looks: each look cut into
    ``BATCHES`` batches, each batch mean compared with its own look's, the looks pooled (sums of
    squares and degrees of freedom added, a look counting only where its share is strictly
    between 0 and 1: a look with none of the values, or all, says nothing about clustering and
    lends no degrees of freedom). A shift of a whole look (the engine ran slower that look) adds
    nothing; clustering inside a look does."""
    r, n = x.shape
    num, den, dof, m_max = np.zeros(r), np.zeros(r), np.zeros(r, int), 1
    for lo, hi in zip([0, *(ends or [n])[:-1]], ends or [n]):
        m = max(1, (hi - lo) // BATCHES)
        k = (hi - lo) // m
        if k < 2:
            continue
        look = x[:, lo:hi]
        p = look.mean(axis=1)
        live = (p > 0) & (p < 1)
        means = look[:, : k * m].reshape(r, k, m).mean(axis=2)
        num += np.where(live, m * ((means - means.mean(axis=1, keepdims=True)) ** 2).sum(axis=1), 0.0)
        den += np.where(live, (k - 1) * p * (1 - p), 0.0)
        dof += np.where(live, k - 1, 0)
        m_max = max(m_max, m)
    values, where = np.unique(dof, return_inverse=True)  # the bound once per distinct dof
    upper = np.array([_variance_upper(int(f)) if f > 0 else 1.0 for f in values])[where]
    with np.errstate(invalid="ignore", divide="ignore"):
        d = num * upper / den
    return np.where(den > 0, np.clip(np.nan_to_num(d, nan=1.0), 1.0, m_max), 1.0)


def _batch_inflation(x: np.ndarray) -> float:
    return float(_batch_inflation_many(np.asarray(x, float)[None, :])[0])


@functools.cache
def _variance_upper(dof: int) -> float:
    """A batch variance has ``dof`` degrees of freedom: the plug-in estimate is too small about
    half the time, which lets a bad step through; this factor makes it its upper
    ``INFLATION_CONFIDENCE`` bound."""
    return dof / float(stats.chi2.ppf(1 - INFLATION_CONFIDENCE, dof))


def _check_ends(ends: list[int] | None, n: int) -> list[int]:
    """The looks' cumulative sizes, checked: strictly increasing, the last ``n`` (None: one look)."""
    if ends is None:
        return [n]
    ends = [int(e) for e in ends]
    if not ends or ends[-1] != n or any(b <= a for a, b in zip([0, *ends[:-1]], ends)):
        raise ValueError(f"ends {ends}: the looks' cumulative sizes must increase strictly and end at n = {n}")
    return ends


def variance_inflation_many(values: np.ndarray, violates: np.ndarray, bound: float | None = None,
                            ends: list[int] | None = None) -> np.ndarray:
    """:func:`variance_inflation` of each row (replicates, n): one code path for a step and for
    the simulations that measure the rule; ``ends``: the looks' cumulative sizes (the same for
    every row; None: one look)."""
    x = np.asarray(violates, float)
    d = _batch_inflation_many(x)
    n = x.shape[1]
    ends = _check_ends(ends, n)
    # the floor applies only to rows with fewer violations than MIN_EXCEEDANCES: the largest
    # values (a partition of each row, the costly part) are found for those rows alone
    few = np.flatnonzero(x.sum(axis=1) < MIN_EXCEEDANCES) if n > 2 * MIN_EXCEEDANCES else np.arange(0)
    if len(few):
        v = np.asarray(values, float)[few]
        v = np.where(np.isnan(v), np.inf, v)
        top = v >= np.partition(v, -MIN_EXCEEDANCES, axis=1)[:, -MIN_EXCEEDANCES][:, None]
        # with ties beyond 2x the "largest values" are arbitrary: no floor from them
        use = top.sum(axis=1) <= 2 * MIN_EXCEEDANCES
        if bound is not None:  # only the largest values near the bound inform the floor (module docstring)
            top &= v >= FLOOR_FRACTION * bound
        if use.any():  # clustering within looks only: a look-to-look speed change is not (module docstring)
            floor = _batch_inflation_many(top.astype(float), ends)
            d[few] = np.where(use, np.maximum(d[few], floor), d[few])
    return d


def variance_inflation(values: np.ndarray, violates: np.ndarray, bound: float | None = None,
                       ends: list[int] | None = None) -> float:
    """How much the violation count's variance exceeds a binomial's, in arrival order: batch
    means of the indicator over ``BATCHES`` batches (so a batch grows with the step and spans
    a queue's busy period), taken at its upper ``INFLATION_CONFIDENCE`` bound, clipped to
    [1, batch size]. With fewer than ``MIN_EXCEEDANCES`` violations the indicator says little
    about clustering, so the same estimate on the ``MIN_EXCEEDANCES`` largest values (the same
    tail, a little lower) is a floor; given the ``bound``, only those of them at or above
    ``FLOOR_FRACTION`` of it count (none: no floor), so a calm step's harmless transient far
    below the bound cannot inflate D. Given the looks' cumulative sizes ``ends`` (checked:
    increasing, ending at n), the floor's batches lie inside looks (a tenth of a look each, so
    its ceiling is a look's size / 10) and are compared with their own look's mean, so a look that ran
    slower as a whole does not read as clustered violations; the indicator's own estimate
    stays pooled over the looks (violations that did come in one look count as clustered)."""
    return float(variance_inflation_many(np.asarray(values, float)[None, :], np.asarray(violates, bool)[None, :],
                                         bound, ends)[0])


def clopper_pearson_many(t: np.ndarray, n: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`clopper_pearson` elementwise: (0, 1) where ``n <= 0``, lower 0 where ``t == 0``,
    upper 1 where ``t == n``."""
    t, n = np.asarray(t, float), np.asarray(n, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        lower = np.where(t > 0, special.betaincinv(np.maximum(t, 1e-300), n - t + 1, level), 0.0)
        upper = np.where(t < n, special.betaincinv(t + 1, np.maximum(n - t, 1e-300), 1 - level), 1.0)
    return np.where(n > 0, lower, 0.0), np.where(n > 0, upper, 1.0)


def count_bound(values: np.ndarray, ok: np.ndarray, slo: SloBound, level: float,
                ends: list[int] | None = None) -> BoundCount:
    """One bound at one look (see the module docstring); ``values`` in arrival order, ``ends``
    the looks' cumulative sizes (None: one look)."""
    values = np.asarray(values, float)
    violates = ~np.asarray(ok, bool) | ~(values <= slo.bound)
    n, t = len(values), int(violates.sum())
    d = variance_inflation(np.where(np.asarray(ok, bool), values, np.inf), violates, slo.bound, ends)
    lower, upper = clopper_pearson(t / d, n / d, level)
    return BoundCount(slo.metric, slo.bound, slo.q, n, t, d, lower, upper, str(_decision(lower, upper, slo.allowed)))


def _decision(lower, upper, allowed: float, open_: str = CONTINUE):
    """PASS where the upper bound is within the allowed share, FAIL where the lower bound is
    past it, else ``open_`` (CONTINUE, or UNDECIDED at the last look); elementwise."""
    return np.where(upper <= allowed, PASS, np.where(lower > allowed, FAIL, open_))


@dataclass(frozen=True)
class SequentialOutcome:
    """The sequential rule run over many replicate steps at once (one bound, no backlog test):
    per replicate the final ``decision`` (pass / fail / undecided), the requests ``n`` it
    used, and at its last look ``t``, the inflation ``d`` and the bounds."""

    decision: np.ndarray
    n: np.ndarray
    t: np.ndarray
    d: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


def sequential_many(values: np.ndarray, slo: SloBound, looks: list[int], alpha: float = 0.05) -> SequentialOutcome:
    """The step rule (module docstring) on ``values`` (replicates, >= looks[-1]) of one bound,
    every request ok: what :func:`decide` at each look would give, vectorized (the simulation
    tests of the rule and of the search use it; :func:`decide` is the same arithmetic)."""
    values = np.asarray(values, float)
    r = values.shape[0]
    state = np.full(r, CONTINUE, dtype=object)
    out = {k: np.zeros(r) for k in ("n", "t", "d", "lower", "upper")}
    for k, m in enumerate(looks, 1):
        live = state == CONTINUE
        if not live.any():
            break
        v = values[live, :m]
        viol = ~(v <= slo.bound)
        t = viol.sum(axis=1).astype(float)
        d = variance_inflation_many(v, viol, slo.bound, looks[:k])
        lo, up = clopper_pearson_many(t / d, m / d, spent_alpha(alpha, k, len(looks)))
        new = _decision(lo, up, slo.allowed, UNDECIDED if k == len(looks) else CONTINUE)
        state[live] = new
        for key, val in (("n", np.full(len(t), m)), ("t", t), ("d", d), ("lower", lo), ("upper", up)):
            out[key][live] = val
    return SequentialOutcome(state.astype(str), out["n"].astype(int), out["t"].astype(int), out["d"], out["lower"],
                             out["upper"])


MIN_BACKLOG_GROWTH = 3.0  # requests: a backlog that grows by less over a window never fails a step


def backlog_growth(sent_s: np.ndarray, done_s: np.ndarray, alpha: float = 0.05,
                   min_growth: float = 0.02, earlier_done_s: np.ndarray | None = None) -> Backlog:
    """Does the queue grow over the window? ``sent_s``: send times (seconds) of the window's
    requests; ``done_s``: completion times (NaN: never completed). The backlog at each send is
    the requests sent so far minus those completed so far; OLS on time with a Newey-West
    standard error (lags ``n ** (1/3)``); grows when the one-sided p-value is below ``alpha``
    and the fitted growth over the window is at least ``min_growth`` of the requests sent and
    at least ``MIN_BACKLOG_GROWTH`` requests (a short window's HAC test is loose: a server that
    just keeps up wobbles by a request or two). ``earlier_done_s``: completion times (NaN: never)
    of the requests sent before the window (its warm-up): they count while in flight, so the
    backlog starts at its steady level and the queue's fill is not read as growth."""
    sent = np.sort(np.asarray(sent_s, float))
    done = np.sort(np.where(np.isnan(done_s), np.inf, np.asarray(done_s, float)))
    n = len(sent)
    if n < 10:
        return Backlog(float("nan"), float("nan"), float("nan"), False)
    backlog = np.arange(1, n + 1) - np.searchsorted(done, sent, side="right")
    if earlier_done_s is not None and len(earlier_done_s):
        early = np.sort(np.where(np.isnan(earlier_done_s), np.inf, np.asarray(earlier_done_s, float)))
        backlog = backlog + len(early) - np.searchsorted(early, sent, side="right")
    span = float(sent[-1] - sent[0])
    if np.ptp(backlog) == 0:
        return Backlog(0.0, 0.0, 1.0, False, span)
    x = sm.add_constant(sent - sent[0])
    fit = sm.OLS(backlog.astype(float), x).fit(cov_type="HAC", cov_kwds={"maxlags": max(1, int(n ** (1 / 3)))})
    slope, z = float(fit.params[1]), float(fit.tvalues[1])
    p = float(stats.norm.sf(z))
    growth = slope * span
    return Backlog(slope, growth, p, bool(p < alpha and growth >= max(min_growth * n, MIN_BACKLOG_GROWTH)), span)


BACKLOG_LOOKS = 3  # consecutive rising looks that make a growing backlog (module docstring)
KEEPS_UP, RISES, GROWS = "keeps up", "unsure", "grows"


@dataclass(frozen=True)
class StepBacklog:
    """A step's backlog verdict from its looks' windows (:func:`step_backlog`)."""

    verdict: str  # keeps up / unsure / grows
    rising: int  # the trailing run of looks whose window rose
    looks: tuple[float, ...]  # each look's fitted growth (requests)

    @property
    def note(self) -> str:
        shown = ", ".join(f"{g:+.1f}" for g in self.looks)
        if self.verdict == GROWS:
            return f"backlog grows: the last {self.rising} looks all rose ({shown} requests)"
        if self.verdict == RISES:
            return (f"backlog rose in the last {self.rising} of the {BACKLOG_LOOKS} looks a growing queue needs "
                    f"({shown} requests): a swing or a queue, not yet told apart")
        return f"backlog keeps up ({shown} requests)"


def step_backlog(looks: list[Backlog | None]) -> StepBacklog:
    """The step's backlog verdict from its looks so far, in order (None: a look with no window
    to test, skipped: it neither rose nor kept up): **grows** when the last ``BACKLOG_LOOKS``
    tested looks all rose (each window's own test, :func:`backlog_growth`), **unsure** when the
    last tested look rose with fewer rising looks behind it, else **keeps up**."""
    rising = 0
    for b in reversed([b for b in looks if b is not None]):
        if not b.grows:
            break
        rising += 1
    verdict = GROWS if rising >= BACKLOG_LOOKS else RISES if rising else KEEPS_UP
    return StepBacklog(verdict, rising, tuple(float(b.growth) if b is not None else float("nan") for b in looks))


def decide(rate: float, values: dict[str, np.ndarray], ok: np.ndarray, slo: list[SloBound], look: int,
           n_looks: int, alpha: float = 0.05, backlog: Backlog | None = None,
           ends: list[int] | None = None) -> StepDecision:
    """The step's decision at look ``look`` of ``n_looks`` from the steady window's requests so
    far, in arrival order: ``values[metric]`` per request, ``ok`` per request; ``ends``: where
    each look's requests end (cumulative sizes; None: the looks are not told apart)."""
    level = spent_alpha(alpha, look, n_looks)
    counts = tuple(count_bound(values[s.metric], ok, s, level, ends) for s in slo)
    n = len(ok)
    failing = [c for c in counts if c.decision == FAIL]
    grows = backlog is not None and backlog.grows
    if failing or grows:
        decision = FAIL
        reason = "; ".join([f"{c.metric} violating share > {1 - c.q:.1%} (lower bound {c.lower:.2%}, "
                            f"{c.t} of {c.n})" for c in failing]
                           + ([f"backlog grows by {backlog.growth:.0f} requests (p={backlog.p_value:.3f})"]
                              if grows else []))
    elif all(c.decision == PASS for c in counts):
        decision, reason = PASS, "every bound holds: " + ", ".join(
            f"{c.metric} upper bound {c.upper:.2%} <= {1 - c.q:.1%} ({c.t} of {c.n})" for c in counts)
    else:
        decision = UNDECIDED if look >= n_looks else CONTINUE
        open_ = [c for c in counts if c.decision == CONTINUE]
        reason = ("undecided at the cap (counts as a fail): " if decision == UNDECIDED else "run longer: ") + \
            ", ".join(f"{c.metric} {c.t} of {c.n}, share in [{c.lower:.2%}, {c.upper:.2%}] around "
                      f"{1 - c.q:.1%}" for c in open_)
    return StepDecision(rate, n, look, n_looks, counts, backlog, decision, reason)


def decide_frame(requests: pd.DataFrame, rate: float, slo: list[SloBound], look: int, n_looks: int,
                 alpha: float = 0.05) -> StepDecision:
    """:func:`decide` on a tidy frame of the steady window's requests (``start_ts``, ``end_ts``,
    ``ok`` and one column per SLO metric), with the backlog test on its send/completion times."""
    r = requests.sort_values("start_ts")
    t0 = r["start_ts"].iloc[0]
    sent = (r["start_ts"] - t0).dt.total_seconds().to_numpy()
    done = (r["end_ts"] - t0).dt.total_seconds().to_numpy()
    ok = r["ok"].to_numpy(bool)
    values = {s.metric: r[s.metric].to_numpy(float) for s in slo}
    return decide(rate, values, ok, slo, look, n_looks, alpha, backlog_growth(sent, np.where(ok, done, np.nan)))
