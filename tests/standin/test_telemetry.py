"""What the stand-in tells observers: /metrics that inferlab's Prometheus reader understands
with counts that match its ground truth, and OTLP spans that reach inferlab's receiver and
parse with ingest's span reader, their queue/prefill/decode times the server's own."""

import gzip
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from inferlab.ingest.prometheus import counter_delta, histogram_delta, read_prometheus_text
from inferlab.ingest.spans import read_spans
from inferlab.standin import StandIn
from inferlab.telemetry.otlp import OtlpReceiver

from .test_batching import _send


def _scrape(base_url: str, path):
    path.write_bytes(httpx.get(f"{base_url}/metrics").content)
    return read_prometheus_text(path)


def test_metrics_have_vllm_names_and_match_the_ground_truth(tmp_path):
    with StandIn(slots=2, tpot_ms=2) as s:
        before = _scrape(s.base_url, tmp_path / "before.prom")
        _send(s.base_url, 5, max_tokens=7)
        stream = httpx.post(f"{s.base_url}/v1/chat/completions", json={
            "model": "smollm2", "max_tokens": 3, "stream": True, "messages": [{"role": "user", "content": "hi"}]})
        assert stream.status_code == 200
        after = _scrape(s.base_url, tmp_path / "after.prom")
        st = s.stats()
    assert st.completed == 6
    assert counter_delta(before, after, "request_success") == 6
    assert counter_delta(before, after, "request_success", finished_reason="length") == 6
    assert counter_delta(before, after, "generation_tokens") == 5 * 7 + 3
    assert counter_delta(before, after, "prompt_tokens") == sum(r.prompt_tokens for r in st.requests)
    for canonical in ("ttft_seconds", "e2e_seconds", "queue_seconds", "tpot_seconds"):
        assert histogram_delta(before, after, canonical)["count"].iloc[-1] == 6, canonical
    assert histogram_delta(before, after, "itl_seconds")["count"].iloc[-1] == 5 * 6 + 2
    gauges = after[after["family"].isin(["vllm:num_requests_running", "vllm:num_requests_waiting"])]
    assert list(gauges["value"]) == [0.0, 0.0]


def test_gauges_show_running_and_waiting_while_busy():
    with StandIn(slots=1, tpot_ms=50) as s, httpx.Client(base_url=s.base_url, timeout=30) as c:
        with ThreadPoolExecutor(3) as pool:
            futures = [pool.submit(c.post, "/v1/chat/completions", json={
                "model": "smollm2", "max_tokens": 8, "messages": [{"role": "user", "content": f"q{i}"}]})
                for i in range(3)]
            time.sleep(0.15)
            text = c.get("/metrics").text
            [f.result() for f in futures]
    assert 'vllm:num_requests_running{engine="0",model_name="smollm2"} 1.0' in text
    assert 'vllm:num_requests_waiting{engine="0",model_name="smollm2"} 2.0' in text


def test_spans_reach_the_receiver_and_parse_with_ingest(tmp_path, monkeypatch):
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # the export interval, read as vLLM's OTel SDK reads it
    with OtlpReceiver() as rx:
        with StandIn(slots=1, tpot_ms=5, otlp_traces_endpoint=rx.endpoint) as s:
            _send(s.base_url, 3, rid_prefix="run1.c1.m", max_tokens=5)
            assert rx.wait_for("run1.c1.", 3, timeout_s=10) == 3
        st = s.stats()  # after the stop: the exporter has counted its last post
        assert st.spans_exported == 3 and rx.rejected == {}
        f = tmp_path / "spans.otlp.jsonl.gz"
        f.write_bytes(gzip.compress(rx.drain()))
    spans = read_spans(f).set_index("request_id")
    assert sorted(spans.index) == ["run1.c1.m0", "run1.c1.m1", "run1.c1.m2"]
    assert set(spans["name"]) == {"llm_request"} and spans["attributes"].eq("{}").all()  # every attribute known
    for rec in st.requests:
        row = spans.loc[rec.request_id]
        assert row["queue_ms"] == pytest.approx(rec.queue_s * 1000)
        assert row["prefill_ms"] == pytest.approx(rec.prefill_s * 1000)
        assert row["decode_ms"] == pytest.approx(rec.decode_s * 1000)
        assert row["completion_tokens"] == 5 and row["prompt_tokens"] == rec.prompt_tokens
        assert row["span_ms"] == pytest.approx(rec.e2e_s * 1000, abs=5)
    assert spans["queue_ms"].max() > spans["queue_ms"].min() + 20  # one slot: later ones queued
