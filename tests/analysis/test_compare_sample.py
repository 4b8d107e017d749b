"""Golden checks on the shipped local comparisons (data/sample/comparisons/, real runs of the
CPU engine): the A/A says nothing, the A/B finds the known-worse engine, the second A/B agrees,
and a failure-injected side is worse on throughput."""

from __future__ import annotations

import numpy as np
import pytest

from inferlab.analysis.compare import compare_sides, compare_with_aa, sides
from inferlab.runs.comparison import load_comparison, sample_comparisons

IDS = sample_comparisons()
AA = next((c for c in IDS if c.endswith("-ab-aa-local")), None)
AB = next((c for c in IDS if c.endswith("-ab-ab-maxseqs1")), None)
AB2 = next((c for c in IDS if c.endswith("-ab-ab-maxseqs1-second")), None)
pytestmark = pytest.mark.skipif(not (AA and AB and AB2), reason="shipped local comparisons not in data/sample")


def _res(cid):
    a, b, _ = sides(comparison=cid)
    return compare_sides(a, b).set_index(["cell", "metric"])


def test_shipped_comparisons_alternate_and_restart_the_engine():
    for cid in (AA, AB, AB2):
        c = load_comparison(cid)
        assert c.status == "complete" and len(c.repeats) == 6
        for pair in (1, 2, 3):
            assert sorted(r.side for r in c.repeats if r.pair == pair) == ["baseline", "tuned"]
        assert len({r.engine["pid"] for r in c.repeats}) == 6


def test_aa_is_no_significant_difference_on_every_row():
    res = _res(AA)
    assert set(res["verdict"]) == {"no significant difference"}, res["verdict"]


def test_ab_finds_the_known_worse_engine_and_the_control_stays_quiet():
    res = _res(AB)
    assert res.loc[("short-c16", "throughput"), "verdict"] == "worse"
    assert res.loc[("short-c16", "throughput"), "ci_high"] < 0.3
    assert res.loc[("short-c16", "latency_p50"), "verdict"] == "worse"
    assert res.loc[("short-c1", "throughput"), "verdict"] == "no significant difference"


def test_second_ab_point_estimates_fall_inside_the_first_ones_intervals():
    first, second = _res(AB), _res(AB2)
    for key in [("short-c1", "throughput"), ("short-c16", "throughput")]:
        assert first.loc[key, "ci_low"] <= second.loc[key, "ratio"] <= first.loc[key, "ci_high"], key


def test_a_failure_injected_copy_is_worse_on_throughput():
    """The A/A's tuned side with every other measured request failed (durations unchanged)."""
    a, b, _ = sides(comparison=AA)
    for run in b:
        req = run.requests.copy()
        idx = req.index[req["phase"] == "measure"][1::2]
        req.loc[idx, "ok"] = False
        run.requests = req  # the loader's cached table, replaced for this copy only
    res = compare_sides(a, b).set_index(["cell", "metric"])
    for cell in ("short-c1", "short-c16"):
        assert res.loc[(cell, "throughput"), "verdict"] == "worse"
        assert res.loc[(cell, "throughput"), "ratio"] == pytest.approx(0.5, rel=0.15)
        # the printed columns agree with the ratio
        row = res.loc[(cell, "throughput")]
        assert row["tuned"] / row["baseline"] == pytest.approx(row["ratio"], rel=1e-6)
    assert not (res["verdict"] == "better").any()


def test_measured_aa_beside_every_effect():
    a, b, _ = sides(comparison=AB)
    res = compare_with_aa(a, b, aa_comparison=AA)
    assert res["aa_ratio"].notna().all() and np.isfinite(res["aa_spread"]).all()
