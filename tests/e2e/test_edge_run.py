"""[M] through the local edge with the REAL engine and k6: the rate-limit experiment, reproduced
so that it can fail (measured rejected share within 5 points of the prediction), and the join of
every admitted request to its edge line and its server span."""

from __future__ import annotations

import pytest

import inferlab
from inferlab.analysis.edge import edge_cells, rejected_vs_prediction
from inferlab.specs import builtin_spec, load_spec
from inferlab.sweep.runner import run

pytestmark = pytest.mark.engine


def test_rate_limit_run_matches_the_prediction_and_every_row_joins(workspace):
    # the local target (its own engine): only an engine inferlab starts exports spans to the run
    spec = load_spec(builtin_spec("edge-ratelimit-local"))
    r = inferlab.load_run(run(spec, target="local"))
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
