"""The OTLP/JSON span file (``spans.otlp.jsonl.gz``) and vLLM's request-span conventions: what
the span receiver (``telemetry.otlp``, write side) writes and ``ingest.spans`` (read side) reads.

The file is the OpenTelemetry Collector file exporter's format: one OTLP/JSON
``ExportTraceServiceRequest`` a line, trace and span ids in lowercase hex (:func:`hex_ids`).
vLLM names each request's span :data:`REQUEST_SPAN` and carries the request id in
:data:`REQUEST_ID_ATTR` as ``chatcmpl-<X-Request-Id>`` (:data:`REQUEST_ID_PREFIX`). On Kubernetes
the Collector itself writes the file (:data:`COLLECTOR_SPANS_FILE`).
"""

from __future__ import annotations

import base64

REQUEST_ID_ATTR = "gen_ai.request.id"
REQUEST_ID_PREFIX = "chatcmpl-"  # vLLM's chat completions name a request chatcmpl-<X-Request-Id>
REQUEST_SPAN = "llm_request"
# The tracing component's OpenTelemetry Collector (platform/components/tracing) writes what vLLM
# exports here with its file exporter, in the same line format; a rotated file lies beside it as
# spans-<UTC time>.jsonl. platform.tracing checks the component writes here; the k8s target reads it.
COLLECTOR_SPANS_FILE = "/var/lib/otelcol/spans.jsonl"
_ID_KEYS = ("traceId", "spanId", "parentSpanId")


def hex_ids(doc: dict) -> dict:
    """In place: the base64 trace/span ids of protobuf's JSON mapping -> OTLP/JSON's lowercase
    hex (the OTLP spec's one deviation from the standard mapping, spans and their links)."""
    for rs in doc.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for span in ss.get("spans", []):
                for obj in (span, *span.get("links", [])):
                    for k in _ID_KEYS:
                        if obj.get(k):
                            obj[k] = base64.b64decode(obj[k]).hex()
    return doc


def request_id_of(span: dict) -> str | None:
    """An OTLP/JSON span's request id (:data:`REQUEST_ID_ATTR`'s string, without
    :data:`REQUEST_ID_PREFIX`), or None when it carries none."""
    for kv in span.get("attributes") or []:
        if kv.get("key") == REQUEST_ID_ATTR:
            value = (kv.get("value") or {}).get("stringValue")
            return value.removeprefix(REQUEST_ID_PREFIX) if isinstance(value, str) else None
    return None
