"""The search of ``inferlab bisect``: which build to gate next, and what the gated steps show.

Builds ``0 .. n-1`` are in order, oldest first; build 0 is the known-good reference (assumed,
never tested). Each step gates one build (the candidate) against the **last known-good** build
(the baseline) with ``inferlab gate``'s three outcomes (analysis/gate.py): non-inferior,
regression, inconclusive. The rule (:class:`Bisection`):

1. **first against last**: gate build ``n-1`` against build 0. Non-inferior: *none regressed*,
   shown by one direct comparison of the two ends (no chain of steps whose margins could add up).
   Regression: a change point exists in ``(0, n-1]``.
2. **binary search** while the known-good build ``g`` and the first known-bad build ``b`` are
   not neighbours: gate ``m = (g + b) // 2`` against ``g``; non-inferior moves ``g`` to ``m``,
   regression moves ``b`` to ``m``. When ``b = g + 1``, ``b`` is the **first bad build**.
3. an **inconclusive** step stops the search: the result is "inconclusive between ``g`` and
   ``b``" (``b`` the last build while no bad one is known), the range that still holds the first
   bad build, if any. The search never guesses a side for an undecided step; more pairs (or a
   quieter machine) decide it, the step's gate line says how many.

**The assumption**: a single change point. Binary search is exact only when every build before
the first bad one is non-inferior and every build from it on regressed (a regression that stays).
A regression fixed again later, two separate regressions, or a slow drift (each build a little
worse, none beyond the margin against its neighbour) can make it name a build that is not the
first one past the margin, or miss one; a linear scan (every build against its predecessor,
``n-1`` steps) needs no assumption and is not what this rule does. Cost: ``1 + ceil(log2(n-1))``
steps at most (5 builds: 3 steps; 17 builds: 5), each an interleaved A/B of ``pairs`` pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..runs.bisect_record import OUTCOMES, Result
from .gate import EXIT

RESULT_EXIT: dict[str, int] = {"none regressed": EXIT["non-inferior"], "first bad build": EXIT["regression"],
                               "inconclusive": EXIT["inconclusive"]}
RULE = ("first against last, then binary search between the last known-good and the first known-bad build; each "
        "step gates the build under test against the last known-good one; an inconclusive step stops the search "
        "(no guess); assumes a single change point (a regression that stays)")


def max_steps(n: int) -> int:
    """Steps the rule takes at most for ``n`` builds."""
    return 1 + math.ceil(math.log2(n - 1)) if n > 2 else 1


@dataclass(frozen=True)
class Conclusion:
    result: Result
    summary: str
    first_bad: int | None = None
    last_good: int | None = None
    upper: int | None = None  # inconclusive: the last build the first bad one can be

    @property
    def exit_code(self) -> int:
        return RESULT_EXIT[self.result]


@dataclass
class Bisection:
    """The search state over ``n`` builds (module docstring): ask :meth:`next`, gate that pair,
    tell :meth:`record`, until :meth:`next` is None; then :meth:`conclusion`."""

    n: int
    good: int = 0
    bad: int | None = None
    undecided: int | None = None  # the candidate of the inconclusive step that stopped the search
    steps: list[tuple[int, int, str]] = field(default_factory=list)  # (baseline, candidate, outcome)

    def __post_init__(self) -> None:
        if self.n < 2:
            raise ValueError(f"a bisect needs at least 2 builds, got {self.n}")

    @property
    def done(self) -> bool:
        return (self.undecided is not None or self.good == self.n - 1
                or (self.bad is not None and self.bad - self.good == 1))

    def next(self) -> tuple[int, int] | None:
        """``(baseline, candidate)`` of the next step, or None when the search is over."""
        if self.done:
            return None
        return (self.good, self.n - 1 if self.bad is None else (self.good + self.bad) // 2)

    def record(self, candidate: int, outcome: str) -> None:
        """The gate's outcome of the step :meth:`next` asked for."""
        step = self.next()
        if step is None or step[1] != candidate:
            raise ValueError(f"build {candidate} is not the one the search asked for ({step})")
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r} ({', '.join(OUTCOMES)})")
        self.steps.append((step[0], candidate, outcome))
        if outcome == "non-inferior":
            self.good = candidate
        elif outcome == "regression":
            self.bad = candidate
        else:
            self.undecided = candidate

    def conclusion(self, names: list[str]) -> Conclusion:
        """What the steps show, in one sentence naming builds by ``names``; only when done."""
        if not self.done:
            raise ValueError("the search is not over")
        first, last = names[0], names[-1]
        if self.undecided is not None:
            hi = self.n - 1 if self.bad is None else self.bad
            base = self.steps[-1][0]
            what = (f"whether any build after {first} regressed is not known" if self.bad is None and self.good == 0
                    else f"the first bad build, if any, is one of {', '.join(names[self.good + 1:hi + 1])}")
            return Conclusion("inconclusive", f"inconclusive between {names[self.good]} and {names[hi]}: the gate "
                              f"could not decide {names[self.undecided]} against {names[base]}; {what}",
                              last_good=self.good, upper=hi)
        if self.bad is None:
            return Conclusion("none regressed", f"none regressed: {last} is non-inferior to {first} (one direct "
                              "comparison of the two ends; with a single change point no build between them "
                              "regressed)", last_good=self.n - 1)
        shown = next(b for b, c, o in self.steps if c == self.bad and o == "regression")
        return Conclusion("first bad build", f"first bad build: {names[self.bad]} (regressed beyond the margin "
                          f"against {names[shown]}); the last good build is {names[self.good]}"
                          + (" (the reference, assumed good)" if self.good == 0 else ""),
                          first_bad=self.bad, last_good=self.good)
