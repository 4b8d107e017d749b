"""k6 ``--out json`` NDJSON -> one row per HTTP request (and the other metrics in long form).

How it stays fast (see ``make perf``): lines are streamed in chunks and split into fields by
literal substring search in polars (k6's Go encoder writes Point keys in a fixed order), so
Python never touches a line. Tag objects repeat across requests, so only the *distinct* tag
strings are JSON-decoded. A line the fast split does not fit is decoded by ``json`` as a fallback
(other key order, ``metadata``), and only a line that is not a k6 Point/Metric at all is an
error. The ``http_req_*`` Points of one request share one timestamp and tag set and k6
writes them as one block that starts with ``http_reqs``: requests are numbered by those
anchors when that verifies, else grouped by (time, tags, n-th occurrence).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import polars as pl

from .errors import IngestError, LineStats, attach
from .lines import DEFAULT_CHUNK_BYTES, iter_line_chunks, parse_json_line
from .timeparse import parse_rfc3339_ns, require_parsed

_PREFIX = '{"metric":"'
_SEP_TIME = '","type":"Point","data":{"time":"'
_SEP_VALUE = '","value":'
_SEP_TAGS = ',"tags":'
METRIC_PREFIX = '{"type":"Metric"'
# k6 trend metric -> tidy column (milliseconds, as k6 reports them)
TIMINGS = {
    "http_req_duration": "duration_ms",
    "http_req_waiting": "waiting_ms",
    "http_req_sending": "sending_ms",
    "http_req_receiving": "receiving_ms",
    "http_req_connecting": "connecting_ms",
    "http_req_tls_handshaking": "tls_handshaking_ms",
    "http_req_blocked": "blocked_ms",
}
REQUEST_METRICS = [*TIMINGS, "http_reqs", "http_req_failed"]
EXPECTED = "a k6 JSON output line ({'type':'Metric'|'Point', ...})"


class _TagTable:
    """Maps each distinct tag-object string to a small integer and its decoded dict."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}  # raw tag string -> id (the cache)
        self.by_content: dict[str, int] = {}  # canonical JSON of the decoded tags -> id
        self.decoded: list[dict] = []

    def encode(self, strings: pl.Series, stats: LineStats, first_line: int) -> pl.Series:
        for s in strings.unique(maintain_order=True).to_list():  # first seen first: a stable column order
            if s not in self.ids:
                try:
                    obj = json.loads('{"tags":' + s + "}")
                except json.JSONDecodeError as exc:
                    raise IngestError(stats.path, first_line, "a JSON tags object", s) from exc
                tags = dict(obj["tags"] or {})
                tags.update({f"meta_{k}": v for k, v in (obj.get("metadata") or {}).items()})
                # k6 writes metadata keys in Go map order, which differs between the Points of one
                # request: equal content must be one id, or the request splits into several rows
                key = json.dumps(tags, sort_keys=True)
                if key not in self.by_content:
                    self.by_content[key] = len(self.decoded)
                    self.decoded.append(tags)
                self.ids[s] = self.by_content[key]
        return strings.replace_strict(self.ids, return_dtype=pl.Int32)

    def frame(self) -> pl.DataFrame:
        rows = [{**{k: str(v) for k, v in t.items()}, "_tags": i} for i, t in enumerate(self.decoded)]
        if not rows:
            return pl.DataFrame({"_tags": pl.Series([], dtype=pl.Int32)})
        return pl.DataFrame(rows, infer_schema_length=None).with_columns(pl.col("_tags").cast(pl.Int32))


def _chunk_lines(data: bytes) -> pl.Series:
    """The chunk's lines (complete, checked UTF-8: :func:`iter_line_chunks`) as one string
    column. read_csv with a separator and quote that never occur in JSON text is the fastest
    splitter, but it drops blank lines: when the line lengths do not add up to the bytes read,
    split in Python instead, which keeps every line (exact line numbers)."""
    try:
        col = pl.read_csv(
            data, has_header=False, separator="\x1f", quote_char=None,
            new_columns=["line"], schema={"line": pl.String}, encoding="utf8-lossy",
        )["line"]
        if int(col.str.len_bytes().sum() or 0) + len(col) == len(data):
            return col
    except pl.exceptions.ComputeError:
        pass
    return pl.Series("line", data.decode("utf-8").split("\n")[:-1], dtype=pl.String)


def _split_point_fields(line: pl.Expr) -> list[pl.Expr]:
    """metric, time, value, tags by literal search: k6 writes a Point's keys in a fixed order,
    and substring search is an order of magnitude faster than a capturing regex."""
    m_end = line.str.find(_SEP_TIME, literal=True)
    t_start = m_end + len(_SEP_TIME)
    t_end = line.str.find(_SEP_VALUE, literal=True)
    v_start = t_end + len(_SEP_VALUE)
    g_start = line.str.find(_SEP_TAGS, literal=True)
    tags_start = g_start + len(_SEP_TAGS)
    ok = (
        line.str.starts_with(_PREFIX) & line.str.ends_with("}}")
        & (t_end > t_start) & (g_start > v_start)
    )
    return [
        pl.when(ok).then(line.str.slice(len(_PREFIX), m_end - len(_PREFIX))).alias("metric"),
        line.str.slice(t_start, t_end - t_start).alias("time"),
        line.str.slice(v_start, g_start - v_start).alias("value"),
        line.str.slice(tags_start, line.str.len_chars() - tags_start - 2).alias("tags"),
    ]


def _fallback(line: str, stats: LineStats, line_no: int) -> tuple | None:
    """Decode a line the fast path did not match. Returns (metric, time, value, tags_json) or None."""
    obj = parse_json_line(line, line_no, stats, EXPECTED)
    if obj is None:
        return None
    if not isinstance(obj, dict) or obj.get("type") not in ("Point", "Metric"):
        raise IngestError(stats.path, line_no, EXPECTED, line)
    if obj["type"] == "Metric":
        return None
    data = obj.get("data") or {}
    try:
        tags = json.dumps(data.get("tags") or {}, separators=(",", ":"))
        if data.get("metadata"):
            tags += ',"metadata":' + json.dumps(data["metadata"], separators=(",", ":"))
        return obj["metric"], data["time"], float(data["value"]), tags
    except (KeyError, TypeError, ValueError) as exc:
        raise IngestError(stats.path, line_no, "a Point with metric, data.time, data.value", line) from exc


def _parse_chunk(data: bytes, first_line: int, stats: LineStats, tags: _TagTable) -> pl.DataFrame:
    """Points of one chunk: ln, metric, value, ts_ns, tag_id. ``first_line`` is 1-based."""
    lines = _chunk_lines(data)
    df = pl.DataFrame({"line": lines.fill_null("")}).with_row_index("ln", offset=first_line)
    fields = df.select("ln", "line", *_split_point_fields(pl.col("line")))
    matched = fields.filter(pl.col("metric").is_not_null())
    rest = fields.filter(pl.col("metric").is_null() & ~pl.col("line").str.starts_with(METRIC_PREFIX))
    extra = []
    for ln, line in rest.select("ln", "line").iter_rows():
        got = _fallback(line, stats, ln)
        if got:
            extra.append((ln, *got))
    if len(matched) and matched["value"].cast(pl.Float64, strict=False).null_count():
        bad = matched.filter(pl.col("value").cast(pl.Float64, strict=False).is_null()).row(0, named=True)
        raise IngestError(stats.path, bad["ln"], "a numeric Point value", bad["line"])
    out = matched.select(
        "ln", "metric", "time", pl.col("value").cast(pl.Float64), "tags"
    )
    if extra:
        out = pl.concat([out, pl.DataFrame(extra, schema=out.schema, orient="row")])
    out = out.with_columns(
        ts_ns=parse_rfc3339_ns(pl.col("time")),
        tag_id=tags.encode(out["tags"], stats, first_line),
    )
    require_parsed(out, "ts_ns", "time", "ln", stats.path)
    out = out.drop("time", "tags")
    return out.with_columns(pl.col("metric").cast(pl.Categorical))


def _scan(path: str | Path, chunk_bytes: int,
          requests: bool | None) -> tuple[pl.DataFrame, pl.DataFrame, _TagTable, LineStats]:
    """The file's Points in one pass: (request metrics, all the others, tags, line stats).
    ``requests`` True or False keeps only that side, filtered per chunk, so a 2 GB file never
    holds the Points it does not need (the other side comes back empty); None keeps both."""
    stats = LineStats(str(path))
    tags = _TagTable()
    is_request = pl.col("metric").cast(pl.String).is_in(REQUEST_METRICS)
    req_parts, other_parts = [], []
    for first, data in iter_line_chunks(path, stats, chunk_bytes):
        points = _parse_chunk(data, first, stats, tags)
        if requests is not False:
            req_parts.append(points.filter(is_request))
        if requests is not True:
            other_parts.append(points.filter(~is_request))
    if stats.lines_read == 0:
        raise IngestError(path, None, EXPECTED, "an empty file")
    schema = {"ln": pl.UInt32, "metric": pl.Categorical, "value": pl.Float64, "ts_ns": pl.Int64, "tag_id": pl.Int32}
    both = [pl.concat(parts) if parts else pl.DataFrame(schema=schema) for parts in (req_parts, other_parts)]
    return both[0], both[1], tags, stats


def _used_tags(tags: _TagTable, ids: pl.Series) -> pl.DataFrame:
    """The tag columns of the given tag ids only (no all-null columns from other metrics' tags),
    keyed by ``_tags`` always (no ids: an empty frame of that key alone, still joinable)."""
    frame = tags.frame().filter(pl.col("_tags").is_in(ids.unique().implode()))
    return frame.select([c for c in frame.columns if c == "_tags" or frame[c].null_count() < len(frame)])


def _to_pandas_utc(df: pl.DataFrame, ts_cols: list[str]) -> pd.DataFrame:
    out = df.to_pandas(use_pyarrow_extension_array=False)
    for c in ts_cols:
        out[c] = pd.to_datetime(out[c], utc=True)
    return out


def _requests_by_anchor(req: pl.DataFrame) -> pl.DataFrame | None:
    """Fast path: k6 writes one request's ``http_req*`` Points as one block that starts with
    ``http_reqs``, so a running count of those anchors numbers the requests in O(n). Trusted
    only when verified: every Point shares its anchor's time and tags, and the pivot lost no
    value (no metric twice in a block). Otherwise None, and the caller takes the general path."""
    anchor = pl.col("metric") == "http_reqs"
    req = req.with_columns(rid=anchor.cum_sum())
    consistent = req.select(
        (anchor.first()
         & (pl.when(anchor).then(pl.col("ts_ns")).forward_fill() == pl.col("ts_ns")).all()
         & (pl.when(anchor).then(pl.col("tag_id")).forward_fill() == pl.col("tag_id")).all())
    ).item()
    if not consistent:
        return None
    wide = req.pivot(on="metric", index="rid", values="value", aggregate_function="first")
    kept = sum(len(wide) - wide[c].null_count() for c in wide.columns if c != "rid")
    if kept != len(req):
        return None
    heads = req.filter(anchor).select("rid", "ts_ns", "tag_id", pl.col("ln").alias("line"))
    return heads.join(wide, on="rid", maintain_order="left").drop("rid")


def _requests_by_key(req: pl.DataFrame) -> pl.DataFrame:
    """General path: a request is the group (time, tags, n-th occurrence of the metric), so two
    requests ending in the same nanosecond with identical tags still stay two."""
    req = req.with_columns(occ=pl.int_range(pl.len()).over("ts_ns", "tag_id", "metric"))
    wide = req.pivot(on="metric", index=["ts_ns", "tag_id", "occ"], values="value", aggregate_function="first")
    first_line = req.group_by("ts_ns", "tag_id", "occ").agg(pl.col("ln").min().alias("line"))
    return wide.join(first_line, on=["ts_ns", "tag_id", "occ"]).sort("line").drop("occ")


# The columns every request table has, even one with no rows (runs.reader.Run.requests), typed
# so that an empty table reads as a full one does (``.dt`` on the times, booleans in ``ok``).
REQUEST_COLUMNS = {"end_ts": "datetime64[ns, UTC]", "start_ts": "datetime64[ns, UTC]", "duration_ms": "float64",
                   "status": "Int32", "ok": "bool"}


def empty_requests(extra: dict[str, str] | None = None) -> pd.DataFrame:
    """A request table with no rows: :data:`REQUEST_COLUMNS` (and ``extra``: name -> dtype)."""
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in {**REQUEST_COLUMNS, **(extra or {})}.items()})


def read_k6(path: str | Path, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> pd.DataFrame:
    """One row per HTTP request: end_ts, start_ts (= end_ts - duration), timings in ``_ms``,
    method, url, status, ok, error, error_code, every custom tag as a column, Point metadata as
    ``meta_<key>`` columns, and ``request_id`` (the X-Request-Id chat.js sent) where recorded."""
    req, _, tags, stats = _scan(path, chunk_bytes, requests=True)
    return _request_table(req, tags, stats)


def read_k6_points(path: str | Path, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> pd.DataFrame:
    """Every non-request metric (iterations, dropped_iterations, checks, data_sent, vus, ...)
    in long form: ts, metric, value and the Point's tags as columns."""
    _, other, tags, stats = _scan(path, chunk_bytes, requests=False)
    return _point_table(other, tags, stats)


def read_k6_tables(path: str | Path, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(read_k6(path), read_k6_points(path))`` from one pass over the file: the same two
    frames, line accounting included, for the reader that needs both (a capacity step)."""
    req, other, tags, stats = _scan(path, chunk_bytes, requests=None)
    return _request_table(req, tags, stats), _point_table(other, tags, stats)


def _request_table(req: pl.DataFrame, tags: _TagTable, stats: LineStats) -> pd.DataFrame:
    stats.lines_used = len(req)
    if req.is_empty():
        return attach(empty_requests(), stats)
    wide = _requests_by_anchor(req)
    if wide is None:
        wide = _requests_by_key(req)
    wide = wide.rename({m: c for m, c in TIMINGS.items() if m in wide.columns})
    for c in TIMINGS.values():
        if c not in wide.columns:
            wide = wide.with_columns(pl.lit(None, dtype=pl.Float64).alias(c))
    wide = wide.join(_used_tags(tags, wide["tag_id"]), left_on="tag_id", right_on="_tags", how="left")
    ok = pl.col("expected_response") == "true" if "expected_response" in wide.columns else pl.lit(None)
    wide = wide.with_columns(
        end_ts=pl.col("ts_ns").cast(pl.Datetime("ns", "UTC")),
        start_ts=(pl.col("ts_ns") - (pl.col("duration_ms") * 1e6).cast(pl.Int64)).cast(pl.Datetime("ns", "UTC")),
        status=pl.col("status").cast(pl.Int32, strict=False) if "status" in wide.columns else pl.lit(None, pl.Int32),
        ok=ok,
        failed=pl.col("http_req_failed") == 1 if "http_req_failed" in wide.columns else pl.lit(None),
    )
    for col in ("error", "error_code", "method", "url"):
        if col not in wide.columns:
            wide = wide.with_columns(pl.lit(None, pl.String).alias(col))
    if "meta_request_id" in wide.columns:  # chat.js sends it as X-Request-Id (Point metadata, not a tag)
        wide = wide.rename({"meta_request_id": "request_id"})
    lead = ["end_ts", "start_ts", "method", "url", "status", "ok", *TIMINGS.values(), "error", "error_code"]
    drop = {"ts_ns", "tag_id", "http_reqs", "http_req_failed", "expected_response", "line"}
    tag_cols = sorted(c for c in wide.columns if c not in drop and c not in lead)
    result = wide.select(*lead, *[c for c in tag_cols if c != "failed"], "failed")
    return attach(_to_pandas_utc(result, []), stats)


def _point_table(other: pl.DataFrame, tags: _TagTable, stats: LineStats) -> pd.DataFrame:
    stats.lines_used = len(other)
    other = other.join(_used_tags(tags, other["tag_id"]), left_on="tag_id", right_on="_tags", how="left")
    other = other.with_columns(
        ts=pl.col("ts_ns").cast(pl.Datetime("ns", "UTC")), metric=pl.col("metric").cast(pl.String)
    ).drop("ts_ns", "tag_id", "ln")
    return attach(_to_pandas_utc(other.select("ts", "metric", "value", pl.exclude("ts", "metric", "value")), []), stats)
