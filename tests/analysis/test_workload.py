"""analysis.workload and report.workload on a real k6 workload cell (tests/fixtures/
k6-1.1.0-workload: 40 two-turn Poisson sessions against nginx's canned answer, see its README) and on frames with a known answer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from inferlab.analysis.workload import (arrival_summary, cell_arrivals, latency_by_turn, lengths_long, token_accuracy,
                                        workload_requests)
from inferlab.ingest import read_k6, read_k6_points
from inferlab.report import workload as rw
from tests.conftest import FIXTURES

CELL = "mt-poisson-at20"


@pytest.fixture(scope="module")
def wr():
    p = FIXTURES / "k6-1.1.0-workload" / f"{CELL}.ndjson.gz"
    req = read_k6(p).assign(run_id="R", cell_id=CELL)
    pts = read_k6_points(p).assign(run_id="R", cell_id=CELL)
    return workload_requests(req, pts)


def test_one_row_per_measured_request_with_workload_columns(wr):
    assert len(wr) == 80 and wr["request_id"].is_unique  # warm-up left out
    assert set(wr["turn"]) == {0, 1} and wr.groupby("session").size().eq(2).all()
    assert set(wr["prefix_group"].unique()) <= {-1, 0, 1} and (wr["prefix_group"] >= 0).any()
    assert (wr["prompt_tokens"] == 123).all() and (wr["completion_tokens"] == 7).all()  # usage joined by id
    first = wr[wr["turn"] == 0]
    assert first["scheduled_ms"].notna().all() and wr.loc[wr["turn"] == 1, "scheduled_ms"].isna().all()
    assert (first["sent_ts"] >= pd.Timestamp("2026-11-27", tz="UTC")).all()


def test_arrival_summary_of_the_fixture(wr):
    s = arrival_summary(wr, {CELL: 40}, arrivals={CELL: "poisson"}).iloc[0]
    assert s["sessions"] == 40 and s["dropped"] == 0 and s["open_loop"] and s["arrival"] == "poisson"
    assert abs(s["interarrival_cv"] - s["scheduled_cv"]) < 0.1  # sends follow the schedule
    assert s["lag_max_ms"] < 50 and s["late"] == 0
    assert np.isnan(s["lag_p99_ms"])  # 40 sends cannot carry a p99


def test_arrival_summary_known_answer():
    sent = np.array([0, 100, 200, 300, 400, 1000], dtype=float)  # gaps 100 x4, 600: CV = std/mean
    gaps = np.diff(sent)
    wr = pd.DataFrame({"run_id": "R", "cell_id": "c", "request_id": [f"m{i}" for i in range(6)], "turn": 0,
                       "sent_ms": sent, "scheduled_ms": sent - [0, 1, 2, 3, 70, 5], "send_lag_ms": [0, 1, 2, 3, 70, 5]})
    s = arrival_summary(wr, {"c": 8}, late_ms=50).iloc[0]
    assert s["interarrival_cv"] == pytest.approx(gaps.std(ddof=1) / gaps.mean())
    assert s["dropped"] == 2 and s["late"] == 1 and s["lag_p50_ms"] == 2.5 and s["lag_max_ms"] == 70
    assert s["rate_per_s"] == pytest.approx(5 / 1.0)


def test_token_accuracy_and_turn_latency(wr):
    acc = token_accuracy(wr).set_index("turns")
    assert acc.loc["first", "requests"] == 40 and acc.loc["later", "requests"] == 40
    # the canned server says 123 prompt tokens whatever was sent: the error is what the table shows
    first = wr[wr["turn"] == 0]
    assert acc.loc["first", "prompt_error_median"] == pytest.approx((123 / first["expected_prompt_tokens"] - 1).median())
    assert acc.loc["first", "answers_at_length"] == pytest.approx((first["output_tokens"] == 7).mean())
    by_turn = latency_by_turn(wr)
    assert by_turn["turn"].tolist() == [0, 1] and by_turn["requests"].tolist() == [40, 40]
    long = lengths_long(wr)
    assert set(long["measure"]) == {"planned input", "served prompt", "planned output", "served completion"}
    assert len(long) == 4 * 80


def test_cell_arrivals_reads_the_workload():
    assert cell_arrivals("bursty-trace", ["a", "b"]) == {"a": "trace", "b": "trace"}
    assert cell_arrivals(None, ["a"]) == {}


def test_report_figures_and_timing_table(wr):
    for fig in (rw.length_histograms(wr), rw.arrival_gaps(wr), rw.send_lag_cdf(wr), rw.latency_vs_length(wr),
                rw.latency_per_turn(wr)):
        assert isinstance(fig, Figure) and fig.axes
    joined = wr.assign(ttft_ms=wr["duration_ms"] / 2)  # a joined table ([M]) adds the TTFT panel
    assert len(rw.latency_vs_length(joined).axes) > len(rw.latency_vs_length(wr).axes)
    s = arrival_summary(wr, {CELL: 40}, arrivals={CELL: "poisson"})
    md = rw.timing_md(s).data
    assert CELL in md and "40 / 40" in md and "n/a (< 100 sends)" in md
    assert "CV n/a (< 200 gaps)" in md  # 39 gaps: the CV's own sampling SD (~0.16) is wider than the bar
    bad = s.assign(sessions=401, interarrival_cv=1.3, lag_p99_ms=80.0)
    assert "CV FAIL" in rw.timing_md(bad).data and "p99 lag FAIL" in rw.timing_md(bad).data
    assert "No open-loop cells" in rw.timing_md(s.assign(open_loop=False)).data


def test_prefix_cache_table_from_scrapes():
    from inferlab.analysis.workload import prefix_cache_table

    rows = []
    for cell, hits in (("on", 3000.0), ("off", 0.0)):
        for when, k in (("before", 0), ("after", 1)):
            for sample, v in (("vllm:prompt_tokens_total", 8000.0), ("vllm:prefix_cache_queries_total", 8000.0),
                              ("vllm:prefix_cache_hits_total", hits), ("vllm:prefix_cache_hits_created", 1e9)):
                rows.append({"run_id": "R", "cell_id": cell, "sample": sample, "value": 100 + k * v,
                             "when": when, "pod": ""})
    rows.append({"run_id": "R", "cell_id": "idle", "sample": "vllm:prefix_cache_hits_total", "value": 5.0,
                 "when": "after", "pod": ""})
    t = prefix_cache_table(pd.DataFrame(rows)).set_index("cell_id")
    assert t.loc["on", "cache_hits"] == 3000 and t.loc["on", "hit_rate"] == pytest.approx(3000 / 8000)
    assert t.loc["off", "cache_hits"] == 0 and t.loc["off", "prompt_tokens"] == 8000 and "idle" not in t.index
