"""analysis.attribution against a known truth: synthetic per-request tables whose parts shift by
known amounts between the sides, with between-repeat and within-repeat noise; and on the shipped
comparisons (the parts add up exactly on real spans; a comparison without spans says which
repeats lack them)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from inferlab.analysis import attribution as at
from inferlab.analysis import stats

PREFIX_CACHE = "20261127T104409Z-local-ab-prefix-cache"
PREFIX_CACHE_CONTROL = "20261127T105051Z-local-ab-prefix-cache-control"
NO_SPANS = "20261127T074746Z-local-ab-ab-maxseqs1"
# the engine's parts of a short answer on the 2-core CPU engine, roughly (ms): mean, between-repeat SD
BASE = {"client": (15.0, 4.0), "api_remainder": (110.0, 15.0), "queue": (60.0, 12.0), "prefill": (230.0, 10.0),
        "decode": (700.0, 30.0)}
SIM_PARTS = {"client": "client", "api_remainder": "api_server", "queue": "queue", "prefill": "prefill",
             "decode": "decode"}


def simulate(rng: np.random.Generator, shifts: dict[str, float], repeats: int = 3, requests: int = 30,
             cells: tuple[str, ...] = ("short-c8",), within_sigma: float = 0.5, edge: bool = False) -> pd.DataFrame:
    """Per-request parts of an interleaved comparison. Each repeat draws its own mean per part
    (normal, the part's between-repeat SD); each request multiplies it by a mean-one lognormal
    (sigma ``within_sigma``). The true delta of a part is ``shifts[part]`` (ms) exactly: the
    expected tuned mean minus the expected baseline mean. duration_ms is the parts' sum."""
    groups = [(cell, side, r) for cell in cells for side in ("baseline", "tuned") for r in range(repeats)]
    g = np.repeat(np.arange(len(groups)), requests)
    tuned = np.array([side == "tuned" for _, side, _ in groups])
    df = pd.DataFrame({"side": np.array([s for _, s, _ in groups])[g], "cell": np.array([c for c, _, _ in groups])[g],
                       "run_id": np.array([f"{c}-{s}-{r}" for c, s, r in groups])[g], "request_id": np.arange(len(g))})
    for part, (mean, sd) in BASE.items():
        rep_mean = mean + tuned * shifts.get(SIM_PARTS[part], 0.0) + rng.normal(0, sd, len(groups))
        df[part] = rep_mean[g] * rng.lognormal(-within_sigma ** 2 / 2, within_sigma, len(g))
    if edge:
        df["edge"] = 2.0 * rng.lognormal(-0.125, 0.5, len(g))
        df["api_outside"] = 5.0 * rng.lognormal(-0.125, 0.5, len(g))
    df["duration_ms"] = df[[c for c in at.FINE if c in df.columns]].sum(axis=1)
    return df


def _check_sums(att: at.Attribution) -> None:
    """Per repeat, the parts' means add up to the mean e2e; per cell, the parts' deltas (and each
    side's part means) add up to the total's."""
    names = [p for p in at.PARTS if p in att.repeats.columns]
    np.testing.assert_allclose(att.repeats[names].sum(axis=1), att.repeats["total"], rtol=1e-12)
    for cell, g in att.parts.groupby("cell"):
        t = att.totals.set_index("cell").loc[cell]
        for col in ("delta_ms", "baseline_ms", "tuned_ms"):
            assert g[col].sum() == pytest.approx(t[col], rel=1e-12, abs=1e-9)
        assert g["baseline_share"].sum() == pytest.approx(1) and g["tuned_share"].sum() == pytest.approx(1)


def test_parts_add_up_exactly_and_recover_a_known_decomposition():
    truth = {"decode": -250.0, "queue": -40.0}
    att = at.attribute_requests(simulate(np.random.default_rng(3), truth, repeats=5, requests=40))
    _check_sums(att)
    p = att.parts.set_index("part")
    assert list(p.index) == ["client", "api_server", "queue", "prefill", "decode"]  # no edge in the data: no edge part
    # one draw: each estimate near its truth (coverage itself is the next test's, over 400 draws)
    for part, row in p.iterrows():
        assert abs(row["delta_ms"] - truth.get(part, 0.0)) <= 1.5 * (row["ci_high"] - row["ci_low"]) / 2, part
    assert set(p.index[p["called"]]) == {"decode", "queue"}
    (line,) = at.sentences(att)
    # the named parts, largest first, each with its interval; then the rest
    assert line.index("decode -") < line.index("queue -") and line.endswith("the rest within noise")
    assert "mean e2e 0.7" in line  # (1115 - 290) / 1115 = 0.74


def test_intervals_cover_the_true_deltas_at_about_nominal_rate():
    """400 simulated comparisons x 5 parts (and the total), 3 repeats a side: the 95 % Welch
    intervals over repeats cover each part's true delta 93-97 % of the time."""
    rng = np.random.default_rng(20)
    truth = {"decode": -250.0, "queue": -40.0, "prefill": 15.0, "client": 0.0, "api_server": 0.0}
    hits, total_hits, n = 0, 0, 400
    for _ in range(n):
        att = at.attribute_requests(simulate(rng, truth, repeats=3, requests=20), percentiles=False)
        p = att.parts.set_index("part")
        true = pd.Series(truth).reindex(p.index)
        hits += int(((p["ci_low"] <= true) & (true <= p["ci_high"])).sum())
        t = att.totals.iloc[0]
        total_hits += int(t["ci_low"] <= sum(truth.values()) <= t["ci_high"])
    coverage = hits / (5 * n)
    assert 0.93 <= coverage <= 0.97, coverage
    assert 0.92 <= total_hits / n <= 0.98, total_hits / n  # 400 intervals: +-2.2 % is two SE


def test_holm_across_every_part_of_every_cell_holds_the_familywise_rate():
    """A/A (no part moves) with two cells: 10 tests a comparison. Uncorrected, some part of some
    cell is "significant" in ~40 % of comparisons; with Holm across the family in <= ~5 %."""
    rng = np.random.default_rng(7)
    any_raw, any_called, n = 0, 0, 300
    for _ in range(n):
        att = at.attribute_requests(simulate(rng, {}, repeats=3, requests=20, cells=("short-c1", "short-c8")),
                                    percentiles=False)
        assert len(att.parts) == 10
        np.testing.assert_allclose(att.parts["q_value"], stats.holm(att.parts["p_value"]))
        any_raw += bool((att.parts["p_value"] < 0.05).any())
        any_called += bool(att.parts["called"].any())
    assert any_raw / n > 0.2, any_raw / n  # the family is large enough for the correction to matter
    assert any_called / n <= 0.08, any_called / n  # nominal 5 %; 300 comparisons: +2.5 % is two SE
    # and the sentence then names nothing
    att = at.attribute_requests(simulate(np.random.default_rng(1), {}, repeats=3))
    if not att.parts["called"].any():
        assert at.sentences(att)[0].endswith("no part differs beyond noise (Holm across the parts)")


def test_welch_and_holm_equal_the_reference_libraries(quick_holm):
    """attribution.welch is scipy's Welch test, vectorized; stats.holm is statsmodels' Holm
    (reimplemented: statsmodels runs gc.collect() on every call)."""
    from scipy import stats as sps
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(0)
    for na, nb in ((2, 2), (3, 3), (3, 5), (8, 4)):
        a, b = rng.normal(0, 1, (na, 4)) * [1, 5, 0.1, 1], rng.normal(0.5, 2, (nb, 4))
        low, high, p = at.welch(a, b, 0.9)
        for j in range(4):
            t = sps.ttest_ind(b[:, j], a[:, j], equal_var=False)
            ci = t.confidence_interval(confidence_level=0.9)
            np.testing.assert_allclose([low[j], high[j], p[j]], [ci.low, ci.high, t.pvalue], rtol=1e-10)
    assert all(np.isnan(at.welch(np.ones(3), np.ones(3))))  # no variation: no interval
    assert all(np.isnan(at.welch(np.arange(1.0), np.arange(3.0))))  # one repeat: none either
    for m in (1, 2, 6, 13):
        p = rng.uniform(0, 0.2, m) ** 2
        np.testing.assert_allclose(stats.holm(p), multipletests(p, method="holm")[1], rtol=1e-12)
    np.testing.assert_allclose(stats.holm([0.01, np.nan, 0.04, 0.03]), [0.03, np.nan, 0.06, 0.06])


def test_a_part_significant_alone_is_not_named_after_holm():
    """Find an A/A draw where some part has p < 0.05 uncorrected but q >= 0.05: not named."""
    rng = np.random.default_rng(11)
    for _ in range(200):
        att = at.attribute_requests(simulate(rng, {}, repeats=3, cells=("short-c1", "short-c8")), percentiles=False)
        lone = att.parts[(att.parts["p_value"] < 0.05) & (att.parts["q_value"] >= 0.05)]
        if not lone.empty:
            assert not lone["called"].any()
            return
    pytest.fail("no draw with an uncorrected-only effect in 200 A/A comparisons")


def test_two_repeats_a_side_give_intervals_but_name_nothing():
    att = at.attribute_requests(simulate(np.random.default_rng(5), {"decode": -400.0}, repeats=2))
    assert att.parts["ci_low"].notna().all() and not att.parts["called"].any()
    assert "2 repeat(s) on a side, no part called" in at.sentences(att)[0]
    assert any("fewer than 3 repeats" in n for n in att.notes)


def test_edge_split_only_when_every_request_has_an_edge_line():
    rng = np.random.default_rng(2)
    reqs = simulate(rng, {"decode": -100.0}, edge=True)
    att = at.attribute_requests(reqs)
    assert att.has_edge and "edge" in set(att.parts["part"])
    _check_sums(att)
    # api_server holds the API server's time outside the span as well as the engine's remainder
    r0 = att.repeats.iloc[0]
    mine = reqs[reqs["run_id"] == r0["run_id"]]
    assert r0["api_server"] == pytest.approx((mine["api_outside"] + mine["api_remainder"]).mean())
    # one repeat without edge lines: the edge folds into client for every request alike
    lost = reqs["run_id"] == r0["run_id"]  # k6's duration - the span's e2e: what the edge line would have split
    reqs.loc[lost, "client"] += reqs.loc[lost, "edge"] + reqs.loc[lost, "api_outside"]
    reqs.loc[lost, ["edge", "api_outside"]] = np.nan
    att = at.attribute_requests(reqs)
    assert not att.has_edge and "edge" not in set(att.parts["part"])
    assert any("folded into client" in n for n in att.notes)
    _check_sums(att)


def test_repeats_without_enough_spans_are_left_out_and_named():
    reqs = simulate(np.random.default_rng(4), {}, repeats=3)
    counts = reqs.groupby(["side", "run_id", "cell"]).size().rename("joined").reset_index()
    cov = counts.assign(window_ok=counts["joined"], run_spans=100)
    cov.loc[0, "window_ok"] = 40  # 30 of 40 joined: 75 %
    cov.loc[1, "run_spans"] = 0
    att = at.attribute_requests(reqs, cov)
    assert set(att.missing["run_id"]) == {cov.loc[0, "run_id"], cov.loc[1, "run_id"]}
    assert att.missing["reason"].str.contains("75.0 % joined|no server spans").all()
    assert att.parts["n_baseline"].iloc[0] == 1  # both left-out repeats were baseline's
    assert "1 repeat(s) on a side" in at.sentences(att)[0]


# ---------------------------------------------------------------------------------------------
# shipped comparisons


@pytest.fixture(scope="module")
def prefix_cache_sides():
    from inferlab.analysis.compare import sides

    base, tuned, _ = sides(comparison=PREFIX_CACHE)
    return base, tuned


def test_real_spans_add_up_and_the_prefix_cache_ab_lands_in_prefill(prefix_cache_sides):
    """Prefix caching on (baseline) vs off: real vLLM spans, real k6 durations. Recorded evidence,
    not a claim about every machine: the parts add up exactly and prefill is the largest named
    part, beside the engine's own counters (hits on the caching side, no lookups on the other)."""
    base, tuned = prefix_cache_sides
    att = at.attribute(base, tuned)
    assert att.missing.empty and (att.repeats["requests"] >= 20).all()
    _check_sums(att)
    p = att.parts.set_index("part")
    assert p["called"]["prefill"] and p["delta_ms"].idxmax() == "prefill"
    assert not p["called"]["queue"]
    cache = pd.concat([at.prefix_cache(base, "baseline"), at.prefix_cache(tuned, "tuned")])
    assert (cache.loc[cache["side"] == "baseline", "hit_share"] > 0.5).all()
    assert (cache.loc[cache["side"] == "tuned", "queries"] == 0).all()


def test_its_control_without_a_shared_prefix_names_no_part():
    """The same flag on prompts that share no cache block: no part moves, no token is found."""
    from inferlab.analysis.compare import sides

    base, tuned, _ = sides(comparison=PREFIX_CACHE_CONTROL)
    att = at.attribute(base, tuned)
    _check_sums(att)
    assert not att.parts["called"].any()
    assert at.sentences(att)[0].endswith("no part differs beyond noise (Holm across the parts)")
    assert (at.prefix_cache(base, "baseline")["hits"] == 0).all()


def test_a_comparison_without_spans_says_which_repeats_lack_them():
    from inferlab.analysis.compare import sides

    base, tuned, _ = sides(comparison=NO_SPANS)
    att = at.attribute(base, tuned)
    assert att.empty and at.sentences(att) == []
    assert set(att.missing["run_id"]) == {r.run_id for r in base + tuned}
    assert (att.missing["reason"] == "the run holds no server spans (recorded without traces)").all()
