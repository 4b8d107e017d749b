"""A maximum sustainable rate you can certify, and an interval for where the SLO breaks.

The search runs in two phases (:func:`next_step` plans one step at a time, so a runner can
stop and resume: the state is the list of steps so far):

1. **Exploration** locates the boundary: short steps (``explore_requests``) from
   ``start_rate``, multiplied by ``growth`` until one is *over* (a bound's observed violating
   share above its allowed share, or a growing backlog), or divided by it while the first is
   over; then the bracket [highest under, lowest over] is bisected (geometrically) until it is
   within ``explore_resolution``. The boundary guess is the bracket's geometric middle.
   Exploration steps are never used for the claim nor the interval.
2. **Certification**: steps at ``guess * m`` for each ``m`` in ``claim_grid + cert_grid``,
   ascending (``claim_grid``: lower steps for the claim only, left out of the fit); each
   is decided sequentially (:mod:`inferlab.analysis.step_decision`: looks at
   ``look_sizes(cap, n_looks)`` requests, alpha spent across them) and stops at its decision.

**Certified claim** ("at least X req/s at the SLO, 95 % confidence"): fixed-sequence testing
over the certification rates in ascending order: X is the highest rate before the first
non-pass. Each step's pass is a level-``alpha`` test of "this rate meets the SLO"; testing them
in a fixed order and stopping at the first non-pass keeps the chance of any false pass at
``alpha`` with no further correction. It certifies the whole range below X only because the
violating share (so the pass probability) does not fall as the rate rises: true of a server
whose queue and batches only grow with the load, and the reason the order is ascending.

**Boundary interval**: the boundary is the rate at which the long-run violating share of the
binding bound equals its allowed share ``1 - q``, for the engine as it was during this search
(a fresh engine draws a new speed, so independent searches scatter around different
boundaries: the interval speaks of this engine, not of every start of it). Per bound, a
quasi-binomial GLM (logit link) of the certification steps' violating shares on log rate,
weighted by ``n / D`` (D: the step's variance inflation) with the dispersion estimated from
the Pearson chi-square; the interval is the set of rates where the fit's pointwise two-sided
``1 - alpha`` band (t quantile on the residual degrees of freedom) contains ``1 - q``: the
inversion of the test "share(r) = 1 - q" (Fieller's interval for a linear fit). Across bounds
the boundary is the lowest crossing, its interval the lowest low and lowest high of the bounds
that were violated at some certification step (a bound never violated crosses above every rate
tested). This is a confidence interval; a bracket between a
passing and a failing rate is not, and is never called one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import statsmodels.api as sm
from scipy import stats

from .step_decision import N_LOOKS, PASS, SloBound, StepDecision, default_cap, look_sizes

EXPLORE, CERTIFY = "explore", "certify"


@dataclass(frozen=True)
class SearchConfig:
    """How a certified search runs (module docstring)."""

    slo: tuple[SloBound, ...]
    start_rate: float
    alpha: float = 0.05
    growth: float = 1.25
    explore_requests: int = 300
    explore_resolution: float = 0.06  # bisect the exploration bracket until this narrow (relative)
    cert_grid: tuple[float, ...] = (0.86, 0.92, 0.96, 1.0, 1.04, 1.08, 1.12, 1.16)
    # lower certification steps for the claim only: far below the boundary the violating share
    # flattens to its no-load level, which the fit's logit-linear shape does not describe (with
    # 0.8 in the fit, the interval covered 92.5 % at 3 % noise: biased low; without, 94.3 %)
    claim_grid: tuple[float, ...] = (0.7, 0.8)
    cap: int | None = None  # requests a certification step may run before "undecided"; None: default_cap(slo)
    n_looks: int = N_LOOKS
    max_explore_steps: int = 20
    max_rate: float = math.inf  # exploration goes no higher: under at the top, certify just below it

    @property
    def cap_requests(self) -> int:
        return self.cap if self.cap is not None else default_cap(self.slo)


@dataclass(frozen=True)
class StepRecord:
    """One finished step: its rate, phase, and per bound (n, t, D); ``decision`` for a
    certification step (exploration steps carry None)."""

    rate: float
    phase: str
    n: dict[str, int]
    t: dict[str, int]
    inflation: dict[str, float]
    backlog_grows: bool = False
    decision: StepDecision | None = None
    # the spread of the looks' median e2e (log-sd; None: fewer than 2 looks): the step rule's
    # error rates assume looks at one speed (step_decision: LOOK_SPREAD_CALIBRATED)
    look_spread: float | None = None

    def share(self, metric: str) -> float:
        return self.t[metric] / self.n[metric] if self.n[metric] else float("nan")


@dataclass(frozen=True)
class StepPlan:
    """The next step a runner should run: its rate, phase and the request counts at which to
    look (exploration: one look, at the end)."""

    rate: float
    phase: str
    looks: tuple[int, ...]

    @property
    def requests(self) -> int:
        return self.looks[-1]

    def hold_s(self, warmup_s: float) -> float:
        """How long a constant-rate step must run for ``requests`` after its warm-up (at most:
        a certification step stops at its decision)."""
        return warmup_s + self.requests / self.rate


def record(decision: StepDecision, phase: str) -> StepRecord:
    """A step record from the step's last decision (for exploration: any look, used as counts)."""
    c = decision.counts
    return StepRecord(decision.rate, phase, {b.metric: b.n for b in c}, {b.metric: b.t for b in c},
                      {b.metric: b.inflation for b in c},
                      bool(decision.backlog is not None and decision.backlog.grows),
                      decision if phase == CERTIFY else None)


def is_over(step: StepRecord, slo: tuple[SloBound, ...]) -> bool:
    """Exploration's point verdict: a bound's observed violating share above its allowed share,
    or a growing backlog."""
    return step.backlog_grows or any(step.share(s.metric) > s.allowed for s in slo)


def explore_bracket(steps: list[StepRecord], cfg: SearchConfig) -> tuple[float | None, float | None]:
    """Exploration's (highest rate under below the lowest over, lowest rate over): a search
    bracket (point estimates), never a confidence interval."""
    ex = [s for s in steps if s.phase == EXPLORE]
    over = min((s.rate for s in ex if is_over(s, cfg.slo)), default=None)
    under = max((s.rate for s in ex if not is_over(s, cfg.slo) and (over is None or s.rate < over)), default=None)
    return under, over


def boundary_guess(steps: list[StepRecord], cfg: SearchConfig) -> float | None:
    """The exploration's boundary guess (the geometric middle of its bracket once that is
    within ``explore_resolution``), or None while exploration goes on."""
    under, over = explore_bracket(steps, cfg)
    if under is not None and over is not None and over / under - 1 <= cfg.explore_resolution:
        return math.sqrt(under * over)
    if over is None and under is not None and under * cfg.growth > cfg.max_rate * (1 + 1e-9):
        # nothing over up to max_rate: the boundary lies above; certify up to max_rate
        return cfg.max_rate / max(cfg.cert_grid + cfg.claim_grid)
    if sum(s.phase == EXPLORE for s in steps) >= cfg.max_explore_steps:
        return over / cfg.growth if under is None and over is not None else under if over is None else \
            math.sqrt(under * over)
    return None


def next_step(steps: list[StepRecord], cfg: SearchConfig) -> StepPlan | None:
    """The next step to run, or None when the search is done (module docstring)."""
    guess = boundary_guess(steps, cfg)
    if guess is None:
        under, over = explore_bracket(steps, cfg)
        if under is None and over is None:
            rate = cfg.start_rate
        elif over is None:
            rate = under * cfg.growth
        elif under is None:  # the lowest step was already over: go down
            rate = over / cfg.growth
        else:  # bisect the bracket (geometrically)
            rate = math.sqrt(under * over)
        return StepPlan(rate, EXPLORE, (cfg.explore_requests,))
    grid = sorted(cfg.claim_grid + cfg.cert_grid)
    done = sum(s.phase == CERTIFY for s in steps)
    if done >= len(grid):
        return None
    return StepPlan(guess * grid[done], CERTIFY, tuple(look_sizes(cfg.cap_requests, cfg.n_looks)))


def certified_rate(steps: list[StepRecord]) -> float | None:
    """Fixed-sequence testing over the certification steps, ascending: the highest rate before
    the first non-pass (None when the lowest did not pass)."""
    best = None
    for s in sorted((s for s in steps if s.phase == CERTIFY), key=lambda s: s.rate):
        if s.decision is None or s.decision.decision != PASS:
            break
        best = s.rate
    return best


@dataclass(frozen=True)
class BoundaryInterval:
    estimate: float
    low: float  # 0.0: the data cannot bound it below; inf: cannot bound it above
    high: float
    binding: str  # the metric whose crossing is lowest
    per_metric: dict[str, tuple[float, float, float]] = field(default_factory=dict)


def _crossing(rates: np.ndarray, t: np.ndarray, n: np.ndarray, d: np.ndarray, allowed: float,
              alpha: float) -> tuple[float, float, float]:
    """(estimate, low, high) of the rate where the fitted share crosses ``allowed`` (module docstring)."""
    x = np.log(rates)
    keep = n > 0
    x, t, n, d = x[keep], t[keep], n[keep], d[keep]
    if len(x) < 3 or np.ptp(x) == 0 or t.sum() == 0 or np.all(t >= n):
        return float("nan"), 0.0, float("inf")  # no violation (or nothing but) at every step: no crossing to fit
    y = t / n
    design = sm.add_constant(x)
    try:
        fit = sm.GLM(y, design, family=sm.families.Binomial(), var_weights=n / d).fit(scale="X2")
    except (ValueError, np.linalg.LinAlgError):  # perfect separation and the like
        return float("nan"), 0.0, float("inf")
    dof = max(len(x) - 2, 1)
    # no floor at dispersion 1: the weights use each step's conservative D (an upper bound), so
    # the Pearson dispersion, often below 1, rescales them to the scatter the steps really show
    cov = fit.cov_params()
    c = math.log(allowed / (1 - allowed))
    b0, b1 = fit.params
    with np.errstate(over="ignore"):
        est = float(np.exp((c - b0) / b1)) if b1 > 0 else float("nan")
    grid = np.linspace(x.min() - 0.7, x.max() + 0.7, 2801)
    g = np.column_stack([np.ones_like(grid), grid])
    eta = g @ fit.params
    se = np.sqrt(np.einsum("ij,jk,ik->i", g, cov, g))
    tq = stats.t.ppf(1 - alpha / 2, dof)
    inside = np.abs(eta - c) <= tq * se
    if not inside.any():  # the fit puts the crossing far outside the steps: it cannot bound it
        return est, 0.0, float("inf")
    lo_i, hi_i = np.nonzero(inside)[0][[0, -1]]
    low = 0.0 if lo_i == 0 else float(math.exp(grid[lo_i]))
    high = float("inf") if hi_i == len(grid) - 1 else float(math.exp(grid[hi_i]))
    # a crossing extrapolated beyond the rates tested, on a side the band leaves open, is no
    # estimate (every step passing with a few violations put one at 2.6x the highest rate)
    if (est > math.exp(x.max()) and high == float("inf")) or (est < math.exp(x.min()) and low == 0.0):
        est = float("nan")
    return est, low, high


def boundary_interval(steps: list[StepRecord], cfg: SearchConfig) -> BoundaryInterval:
    """The two-sided ``1 - alpha`` interval for the boundary (module docstring)."""
    # claim_grid steps are left out. The cut lies halfway between the highest claim multiplier and
    # the lowest cert one, not at the lowest cert step's planned rate: a runner holds rates rounded
    # for k6 (capacity_steps.rate_of, 0.01 req/s), and a cut at guess * min(cert_grid) dropped a
    # cert step whose rate had rounded down (session 10's H200 search: 535.104 -> 535.1)
    lower = [m for m in cfg.claim_grid if m < min(cfg.cert_grid)]
    floor = (boundary_guess(steps, cfg) or 0.0) * (max(lower) + min(cfg.cert_grid)) / 2 if lower else 0.0
    cert = [s for s in steps if s.phase == CERTIFY and s.rate >= floor]
    rates = np.array([s.rate for s in cert], float)
    per = {}
    for b in cfg.slo:
        t = np.array([s.t[b.metric] for s in cert], float)
        n = np.array([s.n[b.metric] for s in cert], float)
        d = np.array([s.inflation[b.metric] for s in cert], float)
        per[b.metric] = _crossing(rates, t, n, d, b.allowed, cfg.alpha)
    # a bound with no violation at any certification step crosses above every rate tested: it
    # cannot be the lowest crossing while another bound crosses among them, and its unbounded fit
    # (low 0) must not widen theirs; with no violation anywhere every bound stays in
    live = [b.metric for b in cfg.slo if any(s.t[b.metric] for s in cert)] or list(per)
    binding = min(live, key=lambda m: per[m][0] if np.isfinite(per[m][0]) else np.inf)
    return BoundaryInterval(per[binding][0], min(per[m][1] for m in live), min(per[m][2] for m in live),
                            binding, per)


def step_rows(steps: list[StepRecord]) -> list[dict]:
    """Per-step table rows: rate, phase, n, t and bounds per metric, decision, backlog verdict,
    and for a step of several looks their ``look spread`` (StepRecord.look_spread)."""
    rows = []
    for s in steps:
        row = {"rate": round(s.rate, 4), "phase": s.phase}
        for m in s.n:
            row[f"n {m}"], row[f"t {m}"] = s.n[m], s.t[m]
        if s.decision is not None:
            for c in s.decision.counts:
                row[f"{c.metric} share bounds"] = f"[{c.lower:.2%}, {c.upper:.2%}]"
            row["decision"], row["reason"] = s.decision.decision, s.decision.reason
        else:
            row["decision"], row["reason"] = "", "exploration (not used for the claim)"
        row["backlog"] = "grows" if s.backlog_grows else "keeps up"
        if s.look_spread is not None:
            row["look spread"] = round(s.look_spread, 4)
        rows.append(row)
    return rows


def summary(steps: list[StepRecord], cfg: SearchConfig) -> dict:
    """The search's result: certified lower bound, boundary interval, method sentence, step rows."""
    x = certified_rate(steps)
    iv = boundary_interval(steps, cfg)
    conf = f"{1 - cfg.alpha:.0%}"
    slo = " and ".join(f"p{s.q * 100:g} {s.metric} <= {s.bound:g}" for s in cfg.slo)
    return {
        "certified_rate": x,
        "claim": (f"at least {x:g} req/s with {slo}, {conf} confidence" if x is not None
                  else f"no rate certified with {slo} (the lowest certification step did not pass)"),
        "boundary": iv.estimate, "interval_low": iv.low, "interval_high": iv.high, "binding": iv.binding,
        "method": (f"certified rate: fixed-sequence testing of constant-rate steps in ascending order, each "
                   f"decided by one-sided Clopper-Pearson bounds on autocorrelation-deflated violation counts "
                   f"with alpha spent over {cfg.n_looks} looks (cap {cfg.cap_requests} requests); valid as the pass "
                   f"probability falls as the rate rises. Boundary: {conf} confidence interval for the rate "
                   f"where the violating share reaches its allowed share, from a quasi-binomial fit of share "
                   f"on log rate across the certification steps; exploration steps only placed them"),
        "steps": step_rows(steps),
    }
