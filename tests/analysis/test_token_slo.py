"""Token-level SLOs: the source of each per-request TTFT/TPOT, goodput over every bound, the
percentile table, and the requests a percentile needs (analysis/token_slo.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from inferlab.analysis.token_slo import (
    CLIENT_K6, CLIENT_STREAM, SERVER, SloBound, goodput_table, meets_slo, request_timings, requests_for,
    requests_needed, sample_plan, sample_plan_line, slo_bounds, slo_percentile_table,
)
from inferlab.analysis.requests import with_clock
from inferlab.specs.models import Slo

BOUNDS = (SloBound("ttft_ms", 500, 0.99), SloBound("tpot_ms", 50, 0.99), SloBound("e2e_ms", 5000, 0.95))


def _joined(n=4, **cols) -> pd.DataFrame:
    base = {"cell_id": ["c"] * n, "request_id": [f"r.c.m{i}" for i in range(n)], "ok": [True] * n,
            "duration_ms": [1000.0] * n, "ttft_ms": [100.0] * n, "tpot_ms": [20.0] * n}
    base.update(cols)
    return pd.DataFrame(base)


def test_span_wins_and_the_stream_clock_fills_in():
    joined = _joined(ttft_ms=[100.0, np.nan, np.nan, 90.0], tpot_ms=[20.0, np.nan, np.nan, 21.0])
    clock = pd.DataFrame({"request_id": ["r.c.m0", "r.c.m1"], "client_ttft_ms": [103.0, 111.0],
                          "client_tpot_ms": [20.5, 22.0]})
    t = request_timings(with_clock(joined, clock))
    assert t["ttft_ms"].tolist()[:2] == [100.0, 111.0] and np.isnan(t["ttft_ms"][2])
    assert t["ttft_ms_source"].tolist()[:2] == [SERVER, CLIENT_STREAM] and pd.isna(t["ttft_ms_source"][2])
    assert t["tpot_ms_source"][1] == CLIENT_STREAM and (t["e2e_ms_source"] == CLIENT_K6).all()
    assert (t["e2e_ms"] == 1000.0).all()


def test_goodput_needs_every_bound_and_success():
    joined = _joined(ttft_ms=[100.0, 600.0, 100.0, 100.0], tpot_ms=[20.0, 20.0, 60.0, 20.0],
                     ok=[True, True, True, False])
    t = request_timings(joined)
    assert meets_slo(t, BOUNDS).tolist() == [True, False, False, False]
    g = goodput_table(t, BOUNDS).iloc[0]
    assert (g["requests"], g["ok"], g["good"], g["good_share"], g["unmeasured"]) == (4, 3, 1, 0.25, "")


def test_a_metric_no_request_has_is_unmeasured_not_met():
    t = request_timings(_joined(ttft_ms=[np.nan] * 4, tpot_ms=[np.nan] * 4))
    assert meets_slo(t, BOUNDS).all()  # judged on e2e alone...
    g = goodput_table(t, BOUNDS).iloc[0]
    assert g["unmeasured"] == "ttft_ms, tpot_ms"  # ...and says so
    table = slo_percentile_table(t, BOUNDS).set_index("metric")
    assert table.loc["ttft_ms", "source"] == "none" and pd.isna(table.loc["ttft_ms", "met"])


def test_percentile_table_values_sources_and_sample_size():
    rng = np.random.default_rng(1)
    n = 300
    ttft = rng.uniform(0, 400, n)
    ttft[:2] = 900  # 2 of 300 over: p99 is under the bound (the 3rd-highest value decides)
    joined = _joined(n, ttft_ms=ttft, tpot_ms=np.full(n, 20.0), duration_ms=np.full(n, 1000.0))
    joined.loc[:9, "ttft_ms"] = np.nan  # 10 without a span: their TTFT comes from the clock
    clock = pd.DataFrame({"request_id": joined["request_id"][:10], "client_ttft_ms": np.full(10, 50.0)})
    table = slo_percentile_table(request_timings(with_clock(joined, clock)), BOUNDS).set_index("metric")
    row = table.loc["ttft_ms"]
    assert row["label"] == "p99 TTFT" and row["n"] == n and row["violations"] == 0
    assert row["source"] == "server span 97%, client stream 3%"
    assert row["met"] and row["value"] <= 500 and row["needed"] == 299
    assert table.loc["e2e_ms", "p"] == 95 and table.loc["e2e_ms", "needed"] == 59
    few = slo_percentile_table(request_timings(_joined(50)), BOUNDS).set_index("metric")
    assert np.isnan(few.loc["ttft_ms", "value"]) and pd.isna(few.loc["ttft_ms", "met"])  # 50 < 100 for a p99


@pytest.mark.parametrize(("q", "confidence"), [(0.99, 0.95), (0.99, 0.99), (0.95, 0.95), (0.9, 0.99)])
def test_requests_needed_is_the_smallest_n_with_q_to_the_n_at_most_alpha(q, confidence):
    n = requests_needed(q, confidence)
    assert q ** n <= 1 - confidence < q ** (n - 1)


def test_requests_needed_matches_the_issue_and_mlperf_figures():
    assert requests_needed(0.99, 0.95) == 299 and requests_needed(0.99, 0.99) == 459
    assert requests_for(BOUNDS) == {"ttft_ms": 299, "tpot_ms": 299, "e2e_ms": 59, "step": 299}


def test_bounds_from_a_spec_slo_and_a_legacy_record():
    assert slo_bounds(Slo(ttft_ms=500, tpot_ms=50, e2e_ms=5000)) == BOUNDS
    legacy = slo_bounds({"ttft_ms": 500, "tpot_ms": 50, "e2e_p95_ms": 5000, "error_rate": 0.01})
    assert legacy == BOUNDS  # an old record's keys: TTFT/TPOT at p99, e2e at p95
    assert slo_bounds(Slo(ttft_ms=500, ttft_p=90, tpot_ms=50, tpot_p=95, e2e_ms=5000))[:2] == (
        SloBound("ttft_ms", 500, 0.9), SloBound("tpot_ms", 50, 0.95))


def test_output_tokens_from_the_span_else_the_usage_chunk():
    joined = _joined(2, completion_tokens=[16.0, np.nan])
    clock = pd.DataFrame({"request_id": ["r.c.m0", "r.c.m1"], "client_completion_tokens": [16, 15]})
    t = request_timings(with_clock(joined, clock))
    assert t["output_tokens"].tolist() == [16.0, 15.0]
    assert t["output_tokens_source"].tolist() == [SERVER, CLIENT_STREAM]


def test_the_clock_join_keeps_the_rows_cell_keys():
    """Run.stream_clock carries run_id/cell_id: only its client_* columns join (a request
    without a clock record keeps its own cell)."""
    joined = _joined(2)
    clock = pd.DataFrame({"run_id": ["r"], "cell_id": ["other"], "request_id": ["r.c.m0"], "client_ttft_ms": [5.0]})
    t = request_timings(with_clock(joined, clock))
    assert t["cell_id"].tolist() == ["c", "c"]
    assert with_clock(joined, clock)["joined_clock"].tolist() == [True, False]
    assert with_clock(joined, clock.iloc[0:0])["joined_clock"].isna().all()  # an empty clock: no clock


def test_sample_plan_states_what_each_bound_needs():
    slo = Slo(ttft_ms=500, tpot_ms=50, e2e_ms=5000)
    plan = sample_plan(slo, rate=2.0, planned=120)
    assert [(b["label"], b["needed"]) for b in plan["bounds"]] == [("p99 TTFT", 299), ("p99 TPOT", 299),
                                                                  ("p95 e2e", 59)]
    assert plan["needed"] == 299 and plan["seconds"] == pytest.approx(149.5) and plan["short"]
    line = sample_plan_line(slo, rate=2.0, planned=120)
    assert line.startswith("needs 299 requests (p99 TTFT 299, p99 TPOT 299, p95 e2e 59; 95 % confidence")
    assert "= 150 s at 2 req/s; planned 120: too few to pass on the percentiles" in line
    local = Slo(ttft_ms=500, ttft_p=90, tpot_ms=50, tpot_p=95, e2e_ms=5000)  # the local specs' percentiles
    assert sample_plan(local, planned=60) == {
        "bounds": [{"metric": "ttft_ms", "label": "p90 TTFT", "p": 90.0, "needed": 29},
                   {"metric": "tpot_ms", "label": "p95 TPOT", "p": 95.0, "needed": 59},
                   {"metric": "e2e_ms", "label": "p95 e2e", "p": 95.0, "needed": 59}],
        "needed": 59, "confidence": 0.95, "planned": 60, "short": False}
    assert sample_plan(slo, confidence=0.99)["needed"] == 459
    assert sample_plan({"e2e_p95_ms": 5000})["bounds"][2]["needed"] == 59  # a recorded legacy slo mapping
