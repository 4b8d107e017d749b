"""join_requests and the per-request tables, on the real capture (tests/fixtures/otlp-vllm-0.32:
k6 rows and vLLM spans of the same requests) and on edge rows made consistently from it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from inferlab.analysis import requests as rq
from inferlab.analysis.window import min_requests
from inferlab.ingest import read_k6, read_k6_points
from inferlab.ingest.spans import read_spans

RUN = "20261127T000000Z-local-otlpfix"
CELLS = {"short-c1": 1, "short-c4": 4}


@pytest.fixture(scope="module")
def capture():
    from tests.conftest import FIXTURES

    d = FIXTURES / "otlp-vllm-0.32"
    # as Run.requests / Run.points / Run.spans tag them
    k6 = pd.concat([read_k6(d / f"cells/{c}/k6.ndjson.gz").assign(run_id=RUN, cell_id=c, payload="short", vus=v)
                    for c, v in CELLS.items()], ignore_index=True)
    points = pd.concat([read_k6_points(d / f"cells/{c}/k6.ndjson.gz").assign(run_id=RUN, cell_id=c) for c in CELLS],
                       ignore_index=True)
    spans = pd.concat([read_spans(d / "probe/spans.otlp.jsonl.gz").assign(cell_id="idle")]
                      + [read_spans(d / f"cells/{c}/spans.otlp.jsonl.gz").assign(cell_id=c) for c in CELLS],
                      ignore_index=True)
    return k6, points, spans


def edge_from(joined: pd.DataFrame, client_ms: float = 1.5, api_ms: float = 0.75) -> pd.DataFrame:
    """Edge lines consistent with the k6 rows and spans: nginx's request_time is k6's duration
    less ``client_ms``; its upstream time is the span's e2e plus ``api_ms``."""
    return pd.DataFrame({"request_id": joined["request_id"], "status": joined["status"],
                         "request_time_ms": joined["duration_ms"] - client_ms,
                         "upstream_connect_ms": 0.1, "upstream_header_ms": joined["ttft_ms"],
                         "upstream_response_ms": joined["e2e_ms"] + api_ms})


def test_every_measured_row_joins_its_span(capture):
    k6, _, spans = capture
    j = rq.join_requests(k6, spans)
    assert len(j) == 15 == (k6["phase"] == "measure").sum()  # warm-up rows out
    assert j["joined_server"].all() and j["joined_edge"].isna().all()
    assert j["request_id"].str.fullmatch(rf"{RUN}\.short-c[14]\.m\d+").all()
    # the span found is the request's own: same cell in its id, server time inside the client's
    assert (j["request_id"].str.split(".").str[-2] == j["cell_id"]).all()
    assert ((j["server_start_ts"] >= j["start_ts"]) & (j["server_end_ts"] <= j["end_ts"])).all()
    assert (j["e2e_ms"] < j["duration_ms"]).all()
    assert np.allclose(j["tpot_ms"], j["decode_ms"] / 15)  # 16 tokens: 15 gaps
    assert j.attrs["join"] == {"duplicate_spans": 0, "duplicate_edge_lines": 0}


def test_in_flight_at_arrival(capture):
    k6, _, spans = capture
    j = rq.join_requests(k6, spans)
    assert (j.loc[j["cell_id"] == "short-c1", "server_in_flight"] == 0).all()  # one VU: alone on the server
    c4 = j.loc[j["cell_id"] == "short-c4", "server_in_flight"]
    assert c4.between(0, 3).all() and c4.max() == 3


def test_tpot_needs_two_tokens():
    k6 = pd.DataFrame({"request_id": ["a.c-c1.m0", "a.c-c1.m1"], "phase": "measure", "duration_ms": 10.0})
    spans = pd.DataFrame({"request_id": ["a.c-c1.m0", "a.c-c1.m1"], "completion_tokens": [1.0, 3.0],
                          "decode_ms": [0.0, 8.0], "start_ts": pd.Timestamp(0, tz="UTC"),
                          "end_ts": pd.Timestamp(1, tz="UTC")})
    j = rq.join_requests(k6, spans)
    assert np.isnan(j["tpot_ms"].iloc[0]) and j["tpot_ms"].iloc[1] == 4.0


def test_breakdown_adds_up_without_edge(capture):
    k6, _, spans = capture
    j = rq.join_requests(k6, spans)
    comp = rq.request_components(j)
    parts = [c for c in rq.COMPONENTS if c in comp.columns]
    assert parts == ["client", "queue", "prefill", "decode", "remainder"]
    assert np.allclose(comp[parts].sum(axis=1), comp["duration_ms"])  # every ms is somewhere, exactly
    assert np.allclose(comp["client"], j["duration_ms"] - j["e2e_ms"])
    assert np.allclose(comp["remainder"], j["e2e_ms"] - j["queue_ms"] - j["prefill_ms"] - j["decode_ms"])
    b = rq.time_breakdown(j)
    assert set(b["component"]) == set(parts) and (b["n"] == b["cell_id"].map({"short-c1": 3, "short-c4": 12})).all()
    assert np.allclose(b.groupby("cell_id")["share"].sum(), 1)
    rem = b[b["component"] == "remainder"].set_index("cell_id")["mean_ms"]
    c4 = j[j["cell_id"] == "short-c4"]
    assert rem["short-c4"] == pytest.approx((c4["e2e_ms"] - c4["queue_ms"] - c4["prefill_ms"] - c4["decode_ms"]).mean())
    assert (rem > 0).all()  # vLLM leaves time unattributed even on this tiny run


def test_breakdown_with_edge(capture):
    k6, _, spans = capture
    base = rq.join_requests(k6, spans)
    j = rq.join_requests(k6, spans, edge_from(base))
    assert j["joined_edge"].all()
    b = rq.time_breakdown(j).set_index(["cell_id", "component"])["mean_ms"]
    assert list(b.loc["short-c1"].index) == ["client", "edge", "api_server", "queue", "prefill", "decode", "remainder"]
    assert b.loc[("short-c4", "client")] == pytest.approx(1.5)
    assert b.loc[("short-c4", "api_server")] == pytest.approx(0.75)
    c4 = base[base["cell_id"] == "short-c4"]
    assert b.loc[("short-c4", "edge")] == pytest.approx((c4["duration_ms"] - 1.5 - c4["e2e_ms"] - 0.75).mean())
    comp = rq.request_components(j)
    assert np.allclose(comp[list(rq.COMPONENTS)].sum(axis=1), comp["duration_ms"])


def test_unmatched_rows_and_extra_spans_are_counted(capture):
    k6, _, spans = capture
    base = rq.join_requests(k6, spans)
    lost = {f"{RUN}.short-c4.m0", f"{RUN}.short-c4.m5"}
    some_spans = spans[~spans["request_id"].isin(lost)]
    edge = edge_from(base)
    edge = pd.concat([edge[edge["request_id"] != f"{RUN}.short-c1.m2"],
                      pd.DataFrame({"request_id": [f"{RUN}.short-c1.w0-0", "nginx-own-id"]})], ignore_index=True)
    k6 = k6.copy()
    k6.loc[k6.index[(k6["phase"] == "measure")][0], "request_id"] = np.nan  # a row that sent no id
    k6_missing = k6[k6["request_id"] != f"{RUN}.short-c4.m11"]  # a k6 line lost: its span stays alone
    j = rq.join_requests(k6_missing, some_spans, edge)
    s = rq.join_summary(j, some_spans, edge).set_index("cell_id")
    assert list(s.index) == ["short-c1", "short-c4", "(none)", "all"]
    assert s.loc["short-c1", ["requests", "with_request_id", "joined_server", "no_span"]].tolist() == [3, 2, 2, 1]
    assert s.loc["short-c4", ["requests", "joined_server", "no_span"]].tolist() == [11, 9, 2]
    assert s.loc["short-c4", "share_joined_server"] == pytest.approx(9 / 11)
    assert s.loc["short-c1", ["joined_edge", "no_edge_line"]].tolist() == [1, 2]  # the id-less row and m2
    assert s.loc["short-c1", "spans_without_k6_warmup"] == 1 and s.loc["short-c4", "spans_without_k6_warmup"] == 4
    assert s.loc["short-c4", "spans_without_k6_measure"] == 1  # m11, whose k6 row is lost
    assert s.loc["(none)", "spans_without_k6_other"] == 2  # the idle probe sent no X-Request-Id
    assert s.loc["short-c1", "edge_without_k6_warmup"] == 1 and s.loc["(none)", "edge_without_k6_other"] == 1
    assert s.loc["all", "requests"] == 14 and s.loc["all", "no_span"] == 3


def test_request_id_forms():
    ids = pd.Series(["r.1.x.short-c4.m12", "r.short-at4p5-r2.w1-3", "r.short-c1.p0", "r.probe.1", "9f2e41c0"])
    p = rq.parse_request_id(ids)
    assert p["id_cell"].tolist()[:4] == ["short-c4", "short-at4p5-r2", "short-c1", "probe"]
    assert p["id_run"].iloc[0] == "r.1.x"  # a run id may hold dots; a cell id may not
    assert p["id_phase"].tolist()[:4] == ["measure", "warmup", "probe", "probe"]
    assert p.iloc[4].isna().all()


def test_percentiles_respect_the_tail_rule(capture):
    k6, _, spans = capture
    j = rq.join_requests(k6, spans)
    pct = rq.request_percentiles(j)
    assert set(pct["metric"]) == {"ttft_ms", "tpot_ms", "e2e_ms", "queue_ms", "duration_ms"}
    c4 = pct[(pct["cell_id"] == "short-c4") & (pct["metric"] == "ttft_ms")].set_index("quantile")
    x = j.loc[j["cell_id"] == "short-c4", "ttft_ms"]
    assert c4.loc["p50", "value"] == pytest.approx(np.quantile(x, 0.5)) and c4.loc["p90", "value"] == pytest.approx(
        np.quantile(x, 0.9))
    assert min_requests(0.95) > 12 and np.isnan(c4.loc["p95", "value"]) and np.isnan(c4.loc["p99", "value"])
    c1 = pct[(pct["cell_id"] == "short-c1")].set_index(["metric", "quantile"])["value"]
    assert np.isfinite(c1[("tpot_ms", "p50")]) and np.isnan(c1[("tpot_ms", "p90")])  # 3 requests
    wide = rq.percentile_table(pct)
    assert len(wide) == 10 and list(wide.columns[-4:]) == ["p50", "p90", "p95", "p99"]
    failed = j.assign(ok=j["cell_id"] == "short-c1")  # failed requests are not in the percentiles
    assert rq.request_percentiles(failed).query("cell_id == 'short-c4'")["value"].isna().all()


def test_queue_vs_load(capture):
    k6, _, spans = capture
    q = rq.queue_vs_load(rq.join_requests(k6, spans)).set_index("cell_id")
    assert q.loc["short-c1", "in_flight_mean"] == 0 and q.loc["short-c4", "in_flight_mean"] > 1
    assert q.loc["short-c4", "arrival_rate_rps"] > q.loc["short-c1", "arrival_rate_rps"]
    assert (q["queue_mean_ms"] > 0).all() and (q["queue_share_of_e2e"] < 0.01).all()  # no queueing at 4 VUs


def test_tokens_agree_with_k6_usage(capture):
    k6, points, spans = capture
    j = rq.join_requests(k6, spans)
    t = rq.token_crosscheck(j, spans, points).set_index("cell_id")
    assert t.loc["short-c4", ["k6_tokens", "span_tokens", "difference"]].tolist() == [192, 192, 0]
    assert t.loc["short-c1", "k6_requests"] == t.loc["short-c1", "spans"] == 3
    short = spans[spans["request_id"] != f"{RUN}.short-c1.m1"]
    assert rq.token_crosscheck(j, short, points).set_index("cell_id").loc["short-c1", "difference"] == -16


def test_probe_ttft_matches_its_server_span(fixtures):
    """The runner's own files: each streaming probe request's client TTFT is its span's TTFT plus
    a few ms (HTTP, chat template and tokenization before vLLM's arrival stamp)."""
    from inferlab.ingest import read_probe

    d = fixtures / "otlp-vllm-0.32" / "runner"
    scopes = {"idle": d / "probe", **{c: d / "cells" / c for c in ("short-c1", "short-c4", "short-c16")}}
    probe = pd.concat([read_probe(p / ("idle.jsonl" if c == "idle" else "probe.jsonl")).requests.assign(cell_id=c)
                       for c, p in scopes.items()], ignore_index=True)
    spans = pd.concat([read_spans(p / "spans.otlp.jsonl.gz").assign(cell_id=c) for c, p in scopes.items()],
                      ignore_index=True)
    # idle: 12 engine start-up spans (vLLM 0.32 sends them without --collect-detailed-traces) + 2 probe requests
    assert spans.groupby("cell_id").size().to_dict() == {"idle": 14, "short-c1": 10, "short-c4": 37, "short-c16": 145}
    check = rq.probe_vs_server(probe, spans)
    assert check.attrs["join"] == {"probe_requests": 5, "joined": 5}
    assert check["ttft_gap_ms"].between(0, 50).all(), check
    assert check["e2e_gap_ms"].between(0, 50).all(), check
    assert check["ttft_server_ms"].max() > 5 * check["ttft_server_ms"].min()  # c16's probe waited for a batch
    assert rq.probe_vs_server(probe.drop(columns="request_id"), spans).empty
