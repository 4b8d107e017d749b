"""The bisect's search rule (analysis/bisect.py) on synthetic gate outcomes: a truth per build
(the first bad build, or none), the gate answering from it, and what the search then names and
how many steps it takes; inconclusive steps stop it with the range that still holds the answer."""

from __future__ import annotations

import pytest

from inferlab.analysis.bisect import RESULT_EXIT, Bisection, max_steps


def search(n: int, gate) -> tuple[Bisection, list[tuple[int, int]]]:
    """Run the search over ``n`` builds; ``gate(baseline, candidate)`` gives each step's outcome."""
    b, asked = Bisection(n), []
    while (pair := b.next()) is not None:
        asked.append(pair)
        b.record(pair[1], gate(*pair))
    return b, asked


def truth(first_bad: int | None):
    """A single change point: every build from ``first_bad`` on regressed; earlier ones did not."""
    return lambda base, cand: "regression" if first_bad is not None and cand >= first_bad > base else "non-inferior"


NAMES = [f"v{i}" for i in range(1, 18)]


@pytest.mark.parametrize("n", [2, 3, 4, 5, 8, 9, 17])
def test_every_single_change_point_is_found_within_the_step_budget(n):
    for first_bad in range(1, n):
        b, asked = search(n, truth(first_bad))
        end = b.conclusion(NAMES[:n])
        assert end.result == "first bad build" and end.first_bad == first_bad, (n, first_bad, asked)
        assert end.last_good == first_bad - 1 and end.exit_code == 1
        assert len(asked) <= max_steps(n)
        assert all(base < cand for base, cand in asked)  # the baseline is always an earlier build


def test_five_builds_regressed_from_the_third_on_take_three_steps_against_the_last_known_good():
    b, asked = search(5, truth(2))
    assert asked == [(0, 4), (0, 2), (0, 1)]  # first vs last; then the middle; then its left neighbour
    end = b.conclusion(NAMES[:5])
    assert end.summary == ("first bad build: v3 (regressed beyond the margin against v1); the last good build is v2")
    b, asked = search(5, truth(4))
    assert asked == [(0, 4), (0, 2), (2, 3)]  # after v3 passed, v4 is gated against v3 (the last known-good)
    assert b.conclusion(NAMES[:5]).first_bad == 4


def test_no_regression_is_one_direct_comparison_of_the_two_ends():
    b, asked = search(9, truth(None))
    assert asked == [(0, 8)]
    end = b.conclusion(NAMES[:9])
    assert end.result == "none regressed" and end.exit_code == 0 and end.first_bad is None
    assert end.summary.startswith("none regressed: v9 is non-inferior to v1 (one direct comparison")


def test_an_inconclusive_first_step_says_nothing_is_known():
    b, asked = search(5, lambda base, cand: "inconclusive")
    assert asked == [(0, 4)]
    end = b.conclusion(NAMES[:5])
    assert end.result == "inconclusive" and end.exit_code == 3 and (end.last_good, end.upper) == (0, 4)
    assert end.summary == ("inconclusive between v1 and v5: the gate could not decide v5 against v1; whether any "
                           "build after v1 regressed is not known")


def test_an_inconclusive_middle_step_stops_with_the_range_never_a_guess():
    gate = lambda base, cand: {4: "regression", 2: "non-inferior", 3: "inconclusive"}[cand]  # noqa: E731
    b, asked = search(5, gate)
    assert asked == [(0, 4), (0, 2), (2, 3)]
    end = b.conclusion(NAMES[:5])
    assert end.result == "inconclusive" and end.first_bad is None and (end.last_good, end.upper) == (2, 4)
    assert end.summary == ("inconclusive between v3 and v5: the gate could not decide v4 against v3; the first bad "
                           "build, if any, is one of v4, v5")


def test_the_search_refuses_what_it_did_not_ask_and_fewer_than_two_builds():
    b = Bisection(5)
    with pytest.raises(ValueError, match="not the one the search asked for"):
        b.record(2, "regression")
    with pytest.raises(ValueError, match="unknown outcome"):
        b.record(4, "worse")
    with pytest.raises(ValueError, match="at least 2 builds"):
        Bisection(1)
    with pytest.raises(ValueError, match="not over"):
        b.conclusion(NAMES[:5])


def test_the_exit_codes_are_the_gates():
    from inferlab.analysis.gate import EXIT

    assert RESULT_EXIT == {"none regressed": EXIT["non-inferior"], "first bad build": EXIT["regression"],
                           "inconclusive": EXIT["inconclusive"]} == {"none regressed": 0, "first bad build": 1,
                                                                     "inconclusive": 3}


def test_a_violated_assumption_is_not_detected_the_docs_say_so():
    """A regression fixed again (v3 bad, v4 and v5 good again): first against last passes, so the
    rule reports none regressed. The assumption (one change point) is stated, not tested."""
    gate = lambda base, cand: "regression" if cand == 2 else "non-inferior"  # noqa: E731
    b, asked = search(5, gate)
    assert asked == [(0, 4)] and b.conclusion(NAMES[:5]).result == "none regressed"
