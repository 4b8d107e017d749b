"""The OTLP/HTTP receiver, fed by the real OpenTelemetry SDK exporter (in .venv-engine, where
vLLM's OTel packages live) and, marked ``engine``, by the real vLLM engine (the session's,
started with the session's receiver: tests/conftest.py)."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import subprocess
import textwrap
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from inferlab.ingest.spans import read_spans
from inferlab.telemetry.otlp import OTEL_ENV, OtlpReceiver

ROOT = Path(__file__).resolve().parents[2]
ENGINE_PY = ROOT / ".venv-engine" / "bin" / "python"

# The SDK's own batch processor and OTLP/HTTP exporter, as vLLM sets them up (tracing/otel.py)
SDK_SCRIPT = textwrap.dedent("""
    import sys
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import SpanKind

    endpoint, n, compression = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    provider = TracerProvider(resource=Resource.create({"vllm.process_id": "1"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(
        endpoint=endpoint, compression=Compression.Gzip if compression == "gzip" else Compression.NoCompression),
        max_export_batch_size=4))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("Overall Loading"):
        pass
    for i in range(n):
        span = tracer.start_span("llm_request", kind=SpanKind.SERVER, start_time=1_700_000_000_000_000_000 + i)
        span.set_attributes({"gen_ai.request.id": f"chatcmpl-run.x.short-c1.m{i}", "gen_ai.latency.e2e": 0.25,
                             "gen_ai.latency.time_in_queue": 0.001, "gen_ai.usage.completion_tokens": 16,
                             "gen_ai.request.temperature": 0.7, "other.flag": True})
        span.end(end_time=1_700_000_000_250_000_000 + i)
    provider.shutdown()
""")


def _sdk(endpoint: str, n: int, compression: str) -> None:
    if not ENGINE_PY.is_file():
        pytest.skip(".venv-engine missing: `make engine` (the OTel SDK lives there)")
    out = subprocess.run([str(ENGINE_PY), "-c", SDK_SCRIPT, endpoint, str(n), compression],
                         capture_output=True, text=True, timeout=60, env={**os.environ, **OTEL_ENV})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Failed to export" not in out.stderr, out.stderr[-2000:]


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_real_sdk_spans_arrive_counted_and_drained(compression, tmp_path):
    with OtlpReceiver() as rx:
        assert rx.endpoint.startswith("http://127.0.0.1:") and rx.endpoint.endswith("/v1/traces")
        _sdk(rx.endpoint, 12, compression)
        assert rx.wait_for("run.x.short-c1.", 12, 10) == 12
        assert rx.count("run.x.short-c1.m1") == 3  # m1, m10, m11: a prefix, as documented
        assert rx.count("run.x.other.") == 0 and rx.count("") == 12  # the span without a request id is not one
        assert rx.spans == 13 and rx.posts >= 4 and not rx.rejected  # batches of 4
        data = rx.drain()
        assert rx.drain() == b""  # drained once
        assert rx.count("") == 12  # counts are cumulative, not drained
    p = tmp_path / "spans.otlp.jsonl.gz"
    p.write_bytes(gzip.compress(data))
    df = read_spans(p)
    assert len(df) == 13 and df.attrs["ingest"]["lines_used"] == rx.posts
    req = df[df["name"] == "llm_request"].sort_values("start_ts")
    assert req["request_id"].tolist() == [f"run.x.short-c1.m{i}" for i in range(12)]
    assert (req["e2e_ms"] == 250).all() and (req["span_ms"] == 250).all() and (req["completion_tokens"] == 16).all()
    assert req["start_ts"].iloc[0].value == 1_700_000_000_000_000_000
    assert json.loads(req["attributes"].iloc[0]) == {"other.flag": True}
    assert json.loads(req["resource"].iloc[0])["vllm.process_id"] == "1"
    # ids in OTLP/JSON's hex, one trace for the loading span and one per request span
    assert df["trace_id"].str.fullmatch(r"[0-9a-f]{32}").all() and df["trace_id"].nunique() == 13


def _post(rx: OtlpReceiver, body: bytes, headers: dict, method: str = "POST", path: str = "/v1/traces"):
    conn = http.client.HTTPConnection("127.0.0.1", rx.port, timeout=5)
    conn.request(method, path, body=body, headers=headers)
    res = conn.getresponse()
    out = res.status, res.read().decode()
    conn.close()
    return out


@pytest.mark.parametrize(("method", "path", "headers", "body", "code", "words"), [
    ("GET", "/v1/traces", {}, b"", 405, "only POST /v1/traces"),
    ("POST", "/v1/metrics", {"Content-Type": "application/x-protobuf"}, b"", 404, "serves /v1/traces only"),
    ("POST", "/v1/traces", {"Content-Type": "application/json"}, b"{}", 415, "send application/x-protobuf"),
    ("POST", "/v1/traces", {}, b"x", 415, "Content-Type '(none)'"),
    ("POST", "/v1/traces", {"Content-Type": "application/x-protobuf", "Content-Encoding": "br"}, b"x", 415,
     "'br' not supported"),
    ("POST", "/v1/traces", {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}, b"plain", 400,
     "not gzip"),
    ("POST", "/v1/traces", {"Content-Type": "application/x-protobuf"}, b"\xff\xff\xff", 400,
     "not an OTLP ExportTraceServiceRequest"),
    ("POST", "/v1/traces", {"Content-Type": "application/x-protobuf", "Content-Length": str(65 << 20)}, b"", 413,
     "over the"),
])
def test_refuses_what_is_not_otlp_traces(method, path, headers, body, code, words):
    with OtlpReceiver() as rx:
        status, text = _post(rx, body, headers, method, path)
        assert status == code and words in text, text
        assert rx.rejected[code] == 1 and rx.posts == 0 and rx.drain() == b""


def test_empty_request_is_accepted_and_answered_with_a_response_message():
    with OtlpReceiver() as rx:
        status, text = _post(rx, b"", {"Content-Type": "application/x-protobuf"})
        assert status == 200 and text == ""  # an empty ExportTraceServiceResponse serializes to no bytes
        assert rx.posts == 1 and rx.count("") == 0


def test_wait_for_times_out_and_stops_when_idle():
    with OtlpReceiver() as rx:
        t0 = time.monotonic()
        assert rx.wait_for("nothing.", 1, 0.5) == 0
        assert 0.45 <= time.monotonic() - t0 < 2
        t0 = time.monotonic()
        assert rx.wait_for("nothing.", 1, 30, idle_s=0.3) == 0  # nothing arrives: ends after idle_s, not 30 s
        assert time.monotonic() - t0 < 2
        # spans arriving while it waits are seen (the SDK posts from another process)
        th = threading.Thread(target=_sdk, args=(rx.endpoint, 3, "gzip"))
        th.start()
        assert rx.wait_for("run.x.", 3, 60) == 3
        th.join()


def test_engine_args_and_env():
    with OtlpReceiver(detailed=True) as rx:
        assert rx.engine_args() == ["--otlp-traces-endpoint", rx.endpoint, "--collect-detailed-traces", "all"]
    with OtlpReceiver() as rx:
        assert rx.engine_args() == ["--otlp-traces-endpoint", rx.endpoint]
        env = rx.engine_env()
    assert env["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] == "http/protobuf"
    assert env["OTEL_METRICS_EXPORTER"] == env["OTEL_LOGS_EXPORTER"] == "none"


@pytest.mark.engine
def test_real_vllm_exports_one_span_per_request(engine, engine_spans, tmp_path):
    """The real engine with the receiver (the session's): every request (with or without
    X-Request-Id) has its span with vLLM 0.32's attributes; wait_for sees them; the engine talks
    to loopback only."""
    rx, key = engine_spans, engine.api_key
    rx.wait_for("", rx.count("") + 1, 10, idle_s=1.0)  # earlier tests' last spans: in before the drain
    rx.drain()
    before = rx.count("")
    body = {"model": engine.spec.served_model_name, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5}
    with httpx.Client(base_url=engine.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as c:
        for i in range(3):
            r = c.post("/v1/chat/completions", json={**body, "stream": i == 1},
                       headers={"X-Request-Id": f"t.cell-c1.m{i}"})
            assert r.status_code == 200, r.text
        assert c.post("/v1/chat/completions", json=body).status_code == 200  # no id: vLLM names it
    assert rx.wait_for("t.cell-c1.", 3, 30) == 3
    assert rx.wait_for("", before + 4, 30) == before + 4
    tree = [psutil.Process(engine.proc.pid), *psutil.Process(engine.proc.pid).children(recursive=True)]
    remote = {c.raddr.ip for p in tree for c in p.net_connections("inet") if c.raddr}
    environ = psutil.Process(engine.proc.pid).environ()
    p = tmp_path / "s.jsonl"
    p.write_bytes(rx.drain())
    assert remote <= {"127.0.0.1"}, remote
    assert all(environ.get(k) == v for k, v in OTEL_ENV.items())
    df = read_spans(p)
    req = df[df["name"] == "llm_request"]
    assert len(req) == 4 and set(req["request_id"]) >= {f"t.cell-c1.m{i}" for i in range(3)}, req["request_id"]
    cols = ["ttft_ms", "queue_ms", "prefill_ms", "decode_ms", "inference_ms", "e2e_ms", "prompt_tokens",
            "completion_tokens", "max_tokens"]
    assert req[cols].notna().all().all(), req[cols]
    assert (req["completion_tokens"] == 5).all() and (req["e2e_ms"] >= req["ttft_ms"]).all()
