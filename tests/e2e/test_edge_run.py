"""[M] through the local edge with the REAL engine (the session's) and k6: the rate-limit
experiment, reproduced so that it can fail (measured rejected share within 5 points of the
prediction), and the join of every admitted request to its edge line and its server span."""

from __future__ import annotations

import math

import pytest

import inferlab
from inferlab.analysis.edge import edge_cells, rejected_vs_prediction
from inferlab.specs import builtin_spec, load_spec
from inferlab.sweep.runner import run

from ..measured_speed import MeasuredSpeed

pytestmark = pytest.mark.engine


def edge_spec(speed: MeasuredSpeed):
    """The shipped spec with its answers, VUs and SLOs fitted to this machine's engine: one
    admitted answer takes at most half the interval between admitted requests (so the engine is
    never the bottleneck and only the edge rejects), and k6 has VUs for every request in flight
    even if answers under load take 8x the measured time (too few VUs drop sends: the cell fails)."""
    base = load_spec(builtin_spec("edge-ratelimit-local"))
    limit = base.observe.edge.rate_limit_rps
    tokens = speed.tokens_within(0.5 / limit, low=2, high=base.payloads["short"].max_tokens)
    answer_s = speed.answer_s(tokens)
    in_flight = base.ramp.end_rate * answer_s
    return load_spec(builtin_spec("edge-ratelimit-local"), {
        "payloads": {"short": {"max_tokens": tokens}},
        "ramp": {"pre_allocated_vus": max(base.ramp.pre_allocated_vus, math.ceil(2 * in_flight)),
                 "max_vus": max(base.ramp.max_vus, math.ceil(8 * in_flight))},
        "slo": {"ttft_ms": max(base.slo.ttft_ms, 10_000 * speed.ttft_s),
                "tpot_ms": max(base.slo.tpot_ms, 10_000 / speed.tokens_per_s),
                "e2e_ms": max(base.slo.e2e_ms, 10_000 * answer_s)}})


def test_rate_limit_run_matches_the_prediction_and_every_row_joins(workspace, engine, engine_spans, engine_speed,
                                                                   monkeypatch):
    # the session engine exports its spans to the session's receiver; the run collects its own
    monkeypatch.setenv("INFERLAB_API_KEY", engine.api_key)
    spec = edge_spec(engine_speed)
    r = inferlab.load_run(run(spec, target="url", base_url=engine.base_url, spans=engine_spans))
    assert r.manifest.status == "complete", r.manifest.reason
    edge = r.manifest.target.deployment["edge"]
    assert edge["tls"] and r.manifest.target.base_url.startswith("https://127.0.0.1:")
    req = r.requests
    cells = edge_cells(req, r.edge, edge["limit_status"])
    ramp = spec.ramp
    table = rejected_vs_prediction(cells, edge["rate_limit_rps"], edge["burst"], ramp.start_rate, ramp.duration_s)
    row = table.iloc[0]
    assert abs(row.rejected_share - row.predicted_share) <= 0.05, table
    # rejected requests are the edge's 503s only; the rest were served
    measured = req[req.phase == "measure"]
    assert set(measured.status.unique()) <= {200, 503}
    assert (measured.status == 503).sum() == row.rejected
    # >= 99 % of k6 rows have an edge line (all, here), every admitted one reached the server
    assert measured.request_id.isin(r.edge.request_id).mean() >= 0.99
    served = measured[measured.status == 200]
    assert len(served) and served.request_id.isin(r.spans.request_id).all()
    # the spans are written per cell, the idle probe's (with the engine's start-up spans) apart
    recorded = {f.path for f in r.manifest.files}
    assert {"cells/short-rate2to2/spans.otlp.jsonl.gz", "probe/spans.otlp.jsonl.gz"} <= recorded
    spans = r.spans[r.spans.name == "llm_request"]
    assert set(spans.loc[spans.request_id.str.contains(".probe."), "cell_id"]) == {"idle"}
    # streamed through the stream clock to the edge (TLS): every request has a clock record; the
    # token SLO takes TTFT from the span where there is one, and the client's TTFT (first text
    # event through the edge) is the span's plus the HTTP hops, never less
    from inferlab.analysis import token_slo
    from inferlab.analysis.requests import join_run

    assert "cells/short-rate2to2/stream-clock.jsonl" in recorded
    j = join_run(r)
    assert j["joined_clock"].all(), j.loc[~j["joined_clock"], "request_id"].tolist()
    ok = j[j["status"] == 200]
    t = token_slo.request_timings(ok)
    assert (t["ttft_ms_source"] == token_slo.SERVER).all()
    gap = (ok["client_ttft_ms"] - ok["ttft_ms"]).dropna()
    assert len(gap) == len(ok) and gap.min() > -1 and gap.median() < 50, gap.describe()
    rejected = j[j["status"] == 503]  # the edge's own answer: no stream, no token
    assert rejected["client_ttft_ms"].isna().all() and (rejected["client_status"] == 503).all()
