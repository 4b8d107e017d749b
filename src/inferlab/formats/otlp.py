"""The OTLP/JSON span file (``spans.otlp.jsonl.gz``) and vLLM's request-span conventions: what
the span receiver (``telemetry.otlp``, write side) writes and ``ingest.spans`` (read side) reads.

The file is the OpenTelemetry Collector file exporter's format: one OTLP/JSON
``ExportTraceServiceRequest`` a line, trace and span ids in lowercase hex (:func:`hex_ids`).
vLLM names each request's span :data:`REQUEST_SPAN` and carries the request id in
:data:`REQUEST_ID_ATTR` as ``chatcmpl-<X-Request-Id>`` (:data:`REQUEST_ID_PREFIX`).
"""

from __future__ import annotations

import base64

REQUEST_ID_ATTR = "gen_ai.request.id"
REQUEST_ID_PREFIX = "chatcmpl-"  # vLLM's chat completions name a request chatcmpl-<X-Request-Id>
REQUEST_SPAN = "llm_request"
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
