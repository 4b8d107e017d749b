"""OTLP/JSON trace files (``spans.otlp.jsonl.gz``) -> one row per span.

The file is what :class:`inferlab.telemetry.otlp.OtlpReceiver` wrote: one OTLP/JSON
``ExportTraceServiceRequest`` a line (the OpenTelemetry Collector file exporter's format; ids in
hex, 64-bit integers as strings). Columns: trace_id, span_id, parent_span_id, name, kind,
start_ts, end_ts (UTC), span_ms, request_id (``gen_ai.request.id`` without ``chatcmpl-``), the
vLLM request attributes in :data:`ATTRIBUTES` under tidy names (seconds turned into ``_ms``;
NaN where a span lacks one), and ``attributes``/``resource`` as JSON text holding every other
attribute. An empty file is an empty table (no span arrived is a result, not an error).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..formats.otlp import REQUEST_ID_ATTR, REQUEST_ID_PREFIX
from .errors import IngestError, LineStats, attach
from .lines import iter_json_lines


# vLLM attribute -> (column, factor to the column's unit): the ones vLLM 0.32's llm_request span
# carries (v1/engine/output_processor.py do_tracing; seconds). Others it may add (SpanAttributes
# also names time_in_scheduler, time_in_model_forward/execute, response.model) stay in ``attributes``.
ATTRIBUTES = {
    "gen_ai.latency.time_to_first_token": ("ttft_ms", 1000.0),
    "gen_ai.latency.time_in_queue": ("queue_ms", 1000.0),
    "gen_ai.latency.time_in_model_prefill": ("prefill_ms", 1000.0),
    "gen_ai.latency.time_in_model_decode": ("decode_ms", 1000.0),
    "gen_ai.latency.time_in_model_inference": ("inference_ms", 1000.0),
    "gen_ai.latency.e2e": ("e2e_ms", 1000.0),
    "gen_ai.usage.prompt_tokens": ("prompt_tokens", 1.0),
    "gen_ai.usage.completion_tokens": ("completion_tokens", 1.0),
    "gen_ai.request.max_tokens": ("max_tokens", 1.0),
    "gen_ai.request.temperature": ("temperature", 1.0),
    "gen_ai.request.top_p": ("top_p", 1.0),
    "gen_ai.request.n": ("n", 1.0),
}
COLUMNS = ["trace_id", "span_id", "parent_span_id", "name", "kind", "start_ts", "end_ts", "span_ms", "request_id",
           *(c for c, _ in ATTRIBUTES.values()), "attributes", "resource"]
EXPECTED = "an OTLP/JSON ExportTraceServiceRequest ({'resourceSpans': [...]}) on one line"


def any_value(v: dict):
    """An OTLP/JSON AnyValue -> Python (int64 strings -> int, arrays -> list, kvlists -> dict)."""
    if "stringValue" in v:
        return v["stringValue"]
    if "intValue" in v:
        return int(v["intValue"])
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "arrayValue" in v:
        return [any_value(x) for x in v["arrayValue"].get("values", [])]
    if "kvlistValue" in v:
        return {kv["key"]: any_value(kv.get("value", {})) for kv in v["kvlistValue"].get("values", [])}
    if "bytesValue" in v:
        return v["bytesValue"]
    if not v:
        return None  # an empty AnyValue is allowed (an unset value)
    raise ValueError(f"unknown AnyValue {sorted(v)}")


def _attrs(items, where: str) -> dict:
    try:
        return {kv["key"]: any_value(kv.get("value", {})) for kv in items or []}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"{where}: key/value pairs ({exc})") from exc


def _span_row(span: dict, resource: str) -> dict:
    try:
        start, end = int(span["startTimeUnixNano"]), int(span["endTimeUnixNano"])
        if not (0 <= start < 2 ** 63 and 0 <= end < 2 ** 63):  # int64 nanoseconds: the columns' range
            raise ValueError(f"outside 0 to 2**63-1 ns: {start}, {end}")
        row = {"trace_id": span["traceId"], "span_id": span["spanId"], "parent_span_id": span.get("parentSpanId", ""),
               "name": span["name"], "kind": int(span.get("kind", 0))}
    except KeyError as exc:
        raise ValueError(f"span field {exc.args[0]}") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"span times/kind as integers ({exc})") from None
    attrs = _attrs(span.get("attributes"), f"span {row['span_id']} attributes")
    rid = attrs.pop(REQUEST_ID_ATTR, None)
    # times stay integer nanoseconds here: read_spans makes the columns UTC times at once
    row.update(start_ts=start, end_ts=end, span_ms=(end - start) / 1e6,
               request_id=rid.removeprefix(REQUEST_ID_PREFIX) if isinstance(rid, str) else None)
    for key, (col, factor) in ATTRIBUTES.items():
        val = attrs.pop(key, None)
        if val is not None and not isinstance(val, int | float):
            raise ValueError(f"span {row['span_id']} attribute {key}: a number, got {val!r}")
        row[col] = float(val) * factor if val is not None else np.nan
    row["attributes"] = json.dumps(attrs, sort_keys=True)
    row["resource"] = resource
    return row


def _line_rows(doc, rows: list[dict]) -> None:
    if not isinstance(doc, dict) or not isinstance(doc.get("resourceSpans", []), list):
        raise ValueError("resourceSpans: a list")
    for rs in doc.get("resourceSpans", []):
        resource = json.dumps(_attrs((rs.get("resource") or {}).get("attributes"), "resource attributes"),
                              sort_keys=True)
        for ss in rs.get("scopeSpans", []):
            for span in ss.get("spans", []):
                rows.append(_span_row(span, resource))


def read_spans(path: str | Path) -> pd.DataFrame:
    """One row per span of an OTLP/JSON file (see the module docstring); gzip or plain."""
    stats = LineStats(str(path))
    rows: list[dict] = []
    for line_no, doc, line in iter_json_lines(path, stats, EXPECTED):
        try:
            _line_rows(doc, rows)
        except ValueError as exc:
            raise IngestError(path, line_no, f"{EXPECTED}; bad field: {exc}", line) from None
        stats.lines_used += 1
    df = pd.DataFrame(rows, columns=COLUMNS)
    for c in ("start_ts", "end_ts"):
        df[c] = pd.to_datetime(df[c].astype("int64"), unit="ns", utc=True)
    return attach(df, stats)
