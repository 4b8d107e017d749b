"""report.request_timing renders every table and figure from the real capture
(tests/fixtures/otlp-vllm-0.32), with an edge table made consistently from it, and says so in
words where there is nothing to draw."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest
from matplotlib.figure import Figure

from inferlab.analysis import requests as rq
from inferlab.ingest import read_k6, read_k6_points
from inferlab.ingest.spans import read_spans
from inferlab.report import request_timing as rt

CELLS = {"short-c1": 1, "short-c4": 4}


@pytest.fixture(scope="module")
def run():
    """The tables Run gives (requests, points, spans, edge, probe), read from the fixture files;
    the report functions read only these attributes of a Run."""
    from tests.conftest import FIXTURES

    d = FIXTURES / "otlp-vllm-0.32"
    requests = pd.concat([read_k6(d / f"cells/{c}/k6.ndjson.gz").assign(cell_id=c, payload="short", vus=v)
                          for c, v in CELLS.items()], ignore_index=True)
    points = pd.concat([read_k6_points(d / f"cells/{c}/k6.ndjson.gz").assign(cell_id=c) for c in CELLS])
    spans = pd.concat([read_spans(d / "probe/spans.otlp.jsonl.gz").assign(cell_id="idle")]
                      + [read_spans(d / f"cells/{c}/spans.otlp.jsonl.gz").assign(cell_id=c) for c in CELLS])
    base = rq.join_requests(requests, spans)
    edge = pd.DataFrame({"request_id": base["request_id"], "status": 200,
                         "request_time_ms": base["duration_ms"] - 1, "upstream_connect_ms": 0.1,
                         "upstream_header_ms": base["ttft_ms"], "upstream_response_ms": base["e2e_ms"] + 0.5})
    no_edge = pd.DataFrame(columns=["run_id", "cell_id"])  # what Run.edge is without an edge
    # a stream clock record for every request but the first, 3 ms after its span's TTFT
    clock = pd.DataFrame({"request_id": base["request_id"][1:], "client_ttft_ms": base["ttft_ms"][1:] + 3,
                          "client_tpot_ms": base["tpot_ms"][1:]})
    no_clock = pd.DataFrame(columns=["run_id", "cell_id", "request_id", "client_ttft_ms"])  # Run.stream_clock without
    manifest = SimpleNamespace(spec={"slo": {"ttft_ms": 5000, "tpot_ms": 500, "e2e_ms": 60000}})
    return (SimpleNamespace(requests=requests, points=points, spans=spans, edge=edge, probe=pd.DataFrame(),
                            stream_clock=clock, manifest=manifest),
            SimpleNamespace(requests=requests, points=points, spans=spans, edge=no_edge, probe=pd.DataFrame(),
                            stream_clock=no_clock, manifest=manifest))


@pytest.mark.parametrize("with_edge", [True, False])
def test_everything_renders(run, with_edge):
    r = run[0] if with_edge else run[1]
    j = rt.joined(r)
    assert j["joined_server"].all() and (j["joined_edge"].all() if with_edge else j["joined_edge"].isna().all())
    for fig in (rt.breakdown_bars(j), rt.ttft_tpot_distributions(j), rt.queue_vs_load_plot(j)):
        assert isinstance(fig, Figure)
    html = rt.breakdown_table(j).to_html()
    assert ("share api_server" in html) == with_edge and "share remainder" in html
    pct = rt.percentile_table(j).to_html()
    assert "TTFT (server span)" in pct and ("TTFT (client stream)" in pct) == with_edge
    assert (j["joined_clock"].sum() == 14) if with_edge else j["joined_clock"].isna().all()
    assert ("**14** (93.3%) to a stream clock record" in rt.join_md(j).data) == with_edge
    sources = rt.sources_md(j).data
    assert "**TTFT** of 15 measured requests: server span: 15, client stream: 0, none: 0" in sources
    slo = rt.slo_table(r, j).to_html()
    assert "p99 TTFT" in slo and "p95 e2e" in slo and "server span" in slo
    good = rt.goodput_table(r, j).data
    assert good["requests"].sum() == 15 and good["good"].sum() == 15  # the fixture's SLO is generous
    assert set(good["slo_sources"]) == {"TTFT: server span; TPOT: server span"}
    rates = rt.join_rate_table(r, j).to_html()
    assert "100.0%" in rates and ("edge_without_k6" in rates) == with_edge
    assert "15 of 15" in rt.join_md(j).data and ("edge log line" in rt.join_md(j).data) == with_edge
    assert "192" in rt.token_table(r, j).to_html()
    assert "in_flight_mean" in rt.queue_table(j).to_html()
    assert rt.probe_check_table(r).startswith("no probe request joined")


def test_without_spans_the_token_tables_name_the_client_stream(run):
    r = run[0]
    j = rq.join_requests(r.requests, r.spans.iloc[0:0], None, r.stream_clock)
    assert "TTFT and TPOT come from the client stream clock" in rt.join_md(j).data
    assert "server span: 0, client stream: 14, none: 1" in rt.sources_md(j).data
    slo = rt.slo_table(r, j).data.set_index("label")
    assert set(slo.loc["p99 TTFT", "source"]) == {"client stream"}  # one row per cell
    assert isinstance(rt.ttft_tpot_distributions(j), Figure)


def test_nothing_joined_is_said_not_drawn(run):
    r = run[1]
    j = rq.join_requests(r.requests, r.spans.iloc[0:0])
    assert "has a server span" in rt.join_md(j).data
    assert "carry no X-Request-Id" in rt.join_md(j.assign(request_id=None)).data
    partly = rq.join_requests(r.requests, r.spans[r.spans["request_id"] != j["request_id"].iloc[0]])
    assert "14 of 15" in rt.join_md(partly).data and "Below 99 %" in rt.join_md(partly).data
    for out in (rt.breakdown_bars(j), rt.breakdown_table(j), rt.ttft_tpot_distributions(j), rt.queue_vs_load_plot(j)):
        assert isinstance(out, str) and "no" in out
