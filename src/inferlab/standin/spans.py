"""OTLP spans of the stand-in: one ``llm_request`` span per completed request, as vLLM 0.32
exports it (attribute names, types and order as in tests/fixtures/otlp-vllm-0.32), posted as
OTLP/HTTP protobuf to ``--otlp-traces-endpoint``.

Like the OTel SDK's batch span processor, spans are sent in batches every
``OTEL_BSP_SCHEDULE_DELAY`` ms (default 5000; inferlab's receiver sets 500) from a thread of
their own. Unlike it, a graceful stop sends what is left; a death (fault injection) drops it.
A failed post is counted in ``failed_posts`` and its spans are dropped, as the SDK does.
"""

from __future__ import annotations

import os
import secrets
import threading

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from .stats import RequestRecord

SPAN_NAME = "llm_request"
SCOPE = "vllm.tracing.otel"
DEFAULT_DELAY_MS = 5000


def _kv(key: str, value) -> KeyValue:
    if isinstance(value, str):
        v = AnyValue(string_value=value)
    elif isinstance(value, int):
        v = AnyValue(int_value=value)
    else:
        v = AnyValue(double_value=float(value))
    return KeyValue(key=key, value=v)


def request_span(rec: RequestRecord, end_unix: float) -> Span:
    """The span vLLM 0.32 writes for a finished request (v1 output_processor do_tracing)."""
    start_ns = int(rec.arrival_unix * 1e9)
    attrs = [
        ("gen_ai.latency.time_to_first_token", rec.ttft_s or 0.0), ("gen_ai.latency.e2e", rec.e2e_s or 0.0),
        ("gen_ai.latency.time_in_queue", rec.queue_s or 0.0), ("gen_ai.usage.prompt_tokens", rec.prompt_tokens),
        ("gen_ai.usage.completion_tokens", rec.completion_tokens),
        ("gen_ai.latency.time_in_model_prefill", rec.prefill_s or 0.0),
        ("gen_ai.latency.time_in_model_decode", rec.decode_s or 0.0),
        ("gen_ai.latency.time_in_model_inference", rec.service_s or 0.0),
        ("gen_ai.request.id", f"chatcmpl-{rec.request_id}"), ("gen_ai.request.top_p", float(rec.top_p)),
        ("gen_ai.request.max_tokens", rec.max_tokens), ("gen_ai.request.temperature", float(rec.temperature)),
        ("gen_ai.request.n", 1),
    ]
    return Span(trace_id=secrets.token_bytes(16), span_id=secrets.token_bytes(8), name=SPAN_NAME,
                kind=Span.SPAN_KIND_SERVER, start_time_unix_nano=start_ns,
                end_time_unix_nano=max(start_ns, int(end_unix * 1e9)), attributes=[_kv(k, v) for k, v in attrs])


def export_request(spans: list[Span]) -> ExportTraceServiceRequest:
    resource = Resource(attributes=[_kv("telemetry.sdk.language", "python"), _kv("telemetry.sdk.name", "opentelemetry"),
                                    _kv("service.name", "inferlab-standin"), _kv("vllm.process_id", str(os.getpid()))])
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource=resource, scope_spans=[ScopeSpans(scope=InstrumentationScope(name=SCOPE), spans=spans)])])


class SpanExporter:
    """``add()`` spans from any thread; a background thread posts them in batches."""

    def __init__(self, endpoint: str, delay_ms: float | None = None) -> None:
        self.endpoint = endpoint
        self.delay_s = (delay_ms if delay_ms is not None else
                        float(os.environ.get("OTEL_BSP_SCHEDULE_DELAY", DEFAULT_DELAY_MS))) / 1000
        self.exported = self.failed_posts = 0
        self._pending: list[Span] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="standin-spans", daemon=True)

    def add(self, span: Span) -> None:
        with self._lock:
            self._pending.append(span)

    def _flush(self, client: httpx.Client) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            r = client.post(self.endpoint, content=export_request(batch).SerializeToString(),
                            headers={"Content-Type": "application/x-protobuf"})
            ok = r.status_code == 200
        except httpx.HTTPError:
            ok = False
        if ok:
            self.exported += len(batch)
        else:
            self.failed_posts += 1

    def _loop(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.wait(self.delay_s):
                self._flush(client)
            self._flush(client)

    def start(self) -> SpanExporter:
        self._thread.start()
        return self

    def stop(self, flush: bool = True) -> None:
        if not flush:
            with self._lock:
                self._pending = []
        self._stop.set()
        self._thread.join(timeout=15)
