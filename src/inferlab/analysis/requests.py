"""One request, four witnesses: k6's row joined to the server's span, the edge's log line and
the stream clock's record.

Contract:
- :func:`join_requests`: one row per *measured* k6 request (warm-up rows out), every k6 column
  kept, plus the server's columns (``SERVER_COLUMNS``; NaN where no span), ``tpot_ms`` =
  decode_ms / (completion_tokens - 1), ``server_in_flight`` (request spans in progress at the
  server when this one arrived, warm-up and probe included: they load the server too), the edge
  columns when an edge table is given, the stream clock's ``client_*`` columns
  (ingest.stream_clock) when a clock table is given, and ``joined_server``/``joined_edge``/
  ``joined_clock`` (``joined_edge``/``joined_clock`` are <NA> without that table). The key is
  the X-Request-Id: k6's ``request_id`` = the span's = the edge line's = the clock record's.
  :func:`join_run` is that join over a Run's own tables.
- :func:`join_summary`: per cell, how many rows joined (span, edge line, clock record), how
  many did not, and the spans (and edge lines) that have no k6 row: warm-up, probe and untagged
  requests, or lost k6 rows.
- :func:`request_percentiles`, :func:`queue_vs_load`, :func:`time_breakdown`,
  :func:`token_crosscheck`: tidy per-cell tables for the report.

Where a request's time went (:func:`time_breakdown`): every component is a difference of two
durations measured on one clock each, so no clock offset between k6, nginx and vLLM enters.
vLLM's span starts at *arrival* (the OpenAI server renders the chat template and tokenizes from
then on) and ends at the engine iteration that finished the request; its e2e covers queue
(queued -> scheduled), prefill (scheduled -> first token), decode (first -> last token) and a
remainder it attributes to none of them (tokenization, the hop to EngineCore, output
processing). What lies outside the span (HTTP parsing before arrival, writing the response
after) is ``api_server`` with an edge (nginx's upstream time - e2e) and part of ``client``
without one (k6's duration - e2e: client, loopback network and that API-server time together).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from .window import min_requests

# X-Request-Id forms: <run_id>.<cell_id>.m<n> (k6, measured), .w<segment>-<n> (k6, warm-up; load/chat.js
# requestId), <run_id>.<cell_id>.p<n> (the probe under load) and <run_id>.probe.<n> (the idle probe;
# sweep runner). Cell ids have no dots (specs.planning.CELL_ID_RE), run ids may: the cell is the
# second field from the right.
REQUEST_ID_RE = re.compile(r"^(?P<run_id>.+)\.(?P<cell_id>[^.]+)\.(?P<kind>[mwp]?)(?P<n>\d+(?:-\d+)?)$")
ID_KINDS = {"m": "measure", "w": "warmup", "p": "probe", "": "probe"}
IDLE_PROBE_CELL = "probe"
SERVER_COLUMNS = {"trace_id": "trace_id", "start_ts": "server_start_ts", "end_ts": "server_end_ts",
                  "ttft_ms": "ttft_ms", "queue_ms": "queue_ms", "prefill_ms": "prefill_ms",
                  "decode_ms": "decode_ms", "inference_ms": "inference_ms", "e2e_ms": "e2e_ms",
                  "prompt_tokens": "prompt_tokens", "completion_tokens": "completion_tokens",
                  "max_tokens": "max_tokens"}
EDGE_COLUMNS = {"status": "edge_status", "request_time_ms": "edge_request_time_ms",
                "upstream_connect_ms": "upstream_connect_ms", "upstream_header_ms": "upstream_header_ms",
                "upstream_response_ms": "upstream_response_ms"}
QUANTILES = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99}
PERCENTILE_METRICS = {"ttft_ms": "TTFT (server span)", "client_ttft_ms": "TTFT (client stream)",
                      "tpot_ms": "TPOT (server span)", "client_tpot_ms": "TPOT (client stream)",
                      "e2e_ms": "e2e (server span)", "queue_ms": "queue (server span)", "duration_ms": "duration (k6)"}
# time_breakdown components, in the order a request meets them (stacked bars read bottom-up)
COMPONENTS = {
    "client": ("client + network (k6 duration - edge request_time, or - server e2e without an edge; a streamed "
               "cell's includes the stream clock relay and its connection to the target)"),
    "edge": "edge (nginx request_time - upstream response time)",
    "api_server": "API server outside the engine's span (upstream response time - e2e)",
    "queue": "queue (engine: queued -> scheduled)",
    "prefill": "prefill (engine: scheduled -> first token)",
    "decode": "decode (engine: first -> last token)",
    "remainder": "unattributed by the engine (e2e - queue - prefill - decode)",
}
CELL_KEYS = ("cell_id", "payload", "vus", "executor")
CLOCK_PREFIX = "client_"  # the stream clock's columns (ingest.stream_clock)


def _cell_keys(df: pd.DataFrame) -> list[str]:
    """The per-cell columns present (payload, vus, executor are constant within a cell)."""
    return [c for c in CELL_KEYS if c in df.columns]


def parse_request_id(ids: pd.Series) -> pd.DataFrame:
    """id_run, id_cell and id_phase (measure|warmup|probe) of each X-Request-Id; NaN for ids of
    another form (vLLM's own random ids for requests that sent none)."""
    parts = ids.astype("string").str.extract(REQUEST_ID_RE)
    phase = parts["kind"].map(ID_KINDS)
    return pd.DataFrame({"id_run": parts["run_id"], "id_cell": parts["cell_id"], "id_phase": phase}, index=ids.index)


def request_spans(spans: pd.DataFrame) -> pd.DataFrame:
    """The spans that name a request (``request_id`` set), in arrival order, with every server
    column (NaN where the table has none)."""
    if spans is None or spans.empty or "request_id" not in spans.columns:
        return pd.DataFrame(columns=["request_id", *SERVER_COLUMNS])
    req = spans[spans["request_id"].notna()].sort_values("start_ts", kind="stable").reset_index(drop=True)
    return req.assign(**{c: np.nan for c in SERVER_COLUMNS if c not in req.columns})


def _in_flight_at_arrival(req: pd.DataFrame) -> pd.Series:
    """For each request span: how many other request spans had started and not yet ended when it
    arrived (two sorted arrays and a binary search each, O(n log n))."""
    starts = np.sort(req["start_ts"].to_numpy("datetime64[ns]"))
    ends = np.sort(req["end_ts"].to_numpy("datetime64[ns]"))
    t = req["start_ts"].to_numpy("datetime64[ns]")
    started = np.searchsorted(starts, t, side="right")  # itself included
    ended = np.searchsorted(ends, t, side="right")
    return pd.Series(started - ended - 1, index=req.index, dtype="int64")


def edge_table(edge: pd.DataFrame | None) -> pd.DataFrame | None:
    """``edge`` when it is an edge log table (a ``request_id`` column, rows or none), else None:
    ``Run.edge`` of a run without an edge has no columns but run_id/cell_id."""
    return edge if edge is not None and "request_id" in edge.columns else None


def clock_table(clock: pd.DataFrame | None) -> pd.DataFrame | None:
    """``request_id`` and the ``client_*`` columns of a stream clock table (``Run.stream_clock``
    or ingest.stream_clock.read_stream_clock), or None for no table or an empty one (a run
    whose requests did not pass a clock)."""
    if clock is None or clock.empty or "request_id" not in clock.columns:
        return None
    return clock[["request_id", *(c for c in clock.columns if c.startswith(CLOCK_PREFIX))]]


def _attach(out: pd.DataFrame, table: pd.DataFrame | None, columns: dict[str, str], flag: str) -> pd.DataFrame:
    """``out`` left-joined on ``request_id`` to ``table``'s ``columns`` (renamed old -> new;
    new names already in ``out`` are replaced), with ``flag`` True where a row joined, False
    where not (and for rows without an id), <NA> throughout when there is no table. An id the
    table holds twice keeps its last record (a resumed cell re-sends its ids; the newest is this
    attempt's); callers count the duplicates their own way."""
    if table is None:
        return out.assign(**{flag: pd.array([pd.NA] * len(out), dtype="boolean")})
    t = table[table["request_id"].notna()].drop_duplicates("request_id", keep="last")
    t = t[["request_id", *columns]].rename(columns=columns).assign(**{flag: True})
    old = [col for col in t.columns if col != "request_id" and col in out.columns]
    merged = out.drop(columns=old).merge(t, on="request_id", how="left", validate="many_to_one")
    merged[flag] = (merged[flag].fillna(False).astype(bool) & merged["request_id"].notna()).astype("boolean")
    return merged


def with_clock(out: pd.DataFrame, clock: pd.DataFrame | None) -> pd.DataFrame:
    """``out`` (rows with ``request_id``) with the clock's ``client_*`` columns (replacing any
    already there) and ``joined_clock`` (<NA> without a clock table). A request id recorded
    twice keeps its last record (a resumed cell re-sends its ids; the newest is this attempt's)."""
    c = clock_table(clock)
    if c is None:
        return _attach(out, None, {}, "joined_clock")
    dup = int(c["request_id"].dropna().duplicated().sum())
    merged = _attach(out, c, {col: col for col in c.columns if col != "request_id"}, "joined_clock")
    merged.attrs = {**out.attrs, "join": {**out.attrs.get("join", {}), "duplicate_clock_lines": dup}}
    return merged


def join_run(run) -> pd.DataFrame:
    """:func:`join_requests` over a ``runs.reader.Run``'s tables: k6, spans, edge, stream clock."""
    return join_requests(run.requests, run.spans, run.edge, run.stream_clock)


def join_requests(k6_rows: pd.DataFrame, spans: pd.DataFrame, edge: pd.DataFrame | None = None,
                  clock: pd.DataFrame | None = None) -> pd.DataFrame:
    """Measured k6 rows joined to their server span (and edge line, and stream clock record);
    see the module docstring. ``edge``: an edge log table, or None / a table without
    ``request_id`` (no edge in the run); ``clock`` likewise. ``attrs["join"]`` counts ids seen
    twice on a side (the last is kept)."""
    edge = edge_table(edge)
    rows = k6_rows[k6_rows["phase"] == "measure"] if "phase" in k6_rows.columns else k6_rows
    if "request_id" not in rows.columns:
        rows = rows.assign(request_id=pd.NA)
    rows = rows.reset_index(drop=True)
    req = request_spans(spans)
    req = req.assign(server_in_flight=_in_flight_at_arrival(req)) if len(req) else req.assign(server_in_flight=[])
    # a resumed cell re-sends its ids: keep the newest record (this attempt's), count the others
    dup_spans = int(req["request_id"].duplicated().sum())
    server = req.drop_duplicates("request_id", keep="last")[["request_id", *SERVER_COLUMNS, "server_in_flight"]]
    server = server.rename(columns=SERVER_COLUMNS).assign(joined_server=True)
    out = rows.merge(server, on="request_id", how="left", validate="many_to_one")
    out["joined_server"] = out["joined_server"].fillna(False).astype(bool) & rows["request_id"].notna().to_numpy()
    for c in SERVER_COLUMNS.values():  # typed even when no span joined (an empty table merges as object)
        if c.endswith("_ts"):
            out[c] = pd.to_datetime(out[c], utc=True)
        elif c != "trace_id":
            out[c] = pd.to_numeric(out[c])
    tokens = out["completion_tokens"]
    out["tpot_ms"] = (out["decode_ms"] / (tokens - 1)).where(tokens > 1)
    dup_edge = int(edge["request_id"].duplicated().sum()) if edge is not None else 0
    out = _attach(out, edge, EDGE_COLUMNS, "joined_edge")
    out.attrs["join"] = {"duplicate_spans": dup_spans, "duplicate_edge_lines": dup_edge}
    return with_clock(out, clock)


def _unmatched(ids: pd.Series, joined_ids: set, known_cells: set) -> pd.DataFrame:
    """Ids with no measured k6 row, by the cell their id names (``probe`` for the idle probe,
    ``(none)`` for other ids) and kind."""
    left = ids[~ids.isin(joined_ids)]
    parsed = parse_request_id(left)
    cell = parsed["id_cell"].where(parsed["id_cell"].isin(known_cells | {IDLE_PROBE_CELL}), "(none)").fillna("(none)")
    kind = parsed["id_phase"].fillna("other")
    return pd.DataFrame({"cell_id": cell, "kind": kind})


def join_summary(joined: pd.DataFrame, spans: pd.DataFrame, edge: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per cell: k6 rows, rows joined to a span / an edge line, the unmatched counts and shares,
    and the request spans (edge lines) with no k6 row by kind: ``warmup``, ``probe``, ``measure``
    (a measured id whose k6 row is missing: a lost k6 line), ``other`` (ids of no known form:
    requests sent without an X-Request-Id; cell ``(none)``).
    A last row ``all`` totals the cells."""
    edge = edge_table(edge)
    cells = set(joined["cell_id"]) if "cell_id" in joined.columns else set()
    g = joined.assign(cell_id=joined.get("cell_id", "(all)"))
    has_edge = edge is not None
    per = g.groupby("cell_id", sort=False).agg(
        requests=("request_id", "size"), with_request_id=("request_id", "count"),
        joined_server=("joined_server", "sum"))
    per["joined_edge"] = g.groupby("cell_id", sort=False)["joined_edge"].sum() if has_edge else np.nan
    has_clock = "joined_clock" in g.columns and g["joined_clock"].notna().any()
    per["joined_clock"] = g.groupby("cell_id", sort=False)["joined_clock"].sum() if has_clock else np.nan
    joined_ids = set(joined["request_id"].dropna())
    extra = {"spans": _unmatched(request_spans(spans)["request_id"], joined_ids, cells)}
    if has_edge:
        extra["edge"] = _unmatched(edge["request_id"].dropna(), joined_ids, cells)
    for side, frame in extra.items():
        counts = frame.groupby(["cell_id", "kind"]).size().unstack("kind", fill_value=0)
        for kind in ("warmup", "probe", "measure", "other"):
            col = counts[kind] if kind in counts.columns else pd.Series(dtype="int64")
            per = per.join(col.rename(f"{side}_without_k6_{kind}"), how="outer")
    per = per.fillna({c: 0 for c in per.columns if c.endswith(("_warmup", "_probe", "_measure", "_other"))})
    per = per.fillna({c: 0 for c in ("requests", "with_request_id", "joined_server")})
    order = list(dict.fromkeys(g["cell_id"])) + sorted(set(per.index) - set(g["cell_id"]))
    per = per.reindex(order)  # cells as run, then probe and (none)
    total = per.sum(numeric_only=True, min_count=1).rename("all")
    per = pd.concat([per, total.to_frame().T])
    per["no_span"] = per["requests"] - per["joined_server"]
    per["share_joined_server"] = per["joined_server"] / per["requests"].where(per["requests"] > 0)
    per["no_edge_line"] = per["requests"] - per["joined_edge"] if has_edge else np.nan
    per["share_joined_edge"] = per["joined_edge"] / per["requests"].where(per["requests"] > 0) if has_edge else np.nan
    per["no_clock_record"] = per["requests"] - per["joined_clock"] if has_clock else np.nan
    per["share_joined_clock"] = per["joined_clock"] / per["requests"].where(per["requests"] > 0) if has_clock else np.nan
    lead = ["requests", "with_request_id", "joined_server", "no_span", "share_joined_server",
            "joined_edge", "no_edge_line", "share_joined_edge", "joined_clock", "no_clock_record", "share_joined_clock"]
    per = per[lead + [c for c in per.columns if c not in lead]]
    return per.rename_axis("cell_id").reset_index()


def _ok(joined: pd.DataFrame) -> pd.DataFrame:
    return joined[joined["ok"].fillna(False).astype(bool)] if "ok" in joined.columns else joined


def request_percentiles(joined: pd.DataFrame, quantiles: dict[str, float] = QUANTILES) -> pd.DataFrame:
    """Long: cell keys, metric, label, quantile, value (ms), n. Every successful measured request
    (ramp-up and drain included, unlike cell_summary's steady-state window: the question is "p99
    TTFT of the requests sent"); the server metrics over rows joined to a span. A quantile needs n (1-q) >= 1 requests
    (analysis.window.min_requests), else NaN: p99 of 40 requests is their maximum, not a p99.
    No interval: requests of one cell share its queue history, so a per-request interval would
    be too narrow (analysis.stats: the repeat is the unit of inference)."""
    ok, keys, rows = _ok(joined), _cell_keys(joined), []
    for key, g in ok.groupby(keys, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        for metric, label in PERCENTILE_METRICS.items():
            if metric not in g.columns:
                continue
            x = g[metric].dropna().to_numpy(float)
            for name, q in quantiles.items():
                value = float(np.quantile(x, q)) if len(x) >= min_requests(q) else np.nan
                rows.append({**dict(zip(keys, key)), "metric": metric, "label": label, "quantile": name,
                             "value": value, "n": len(x)})
    return pd.DataFrame(rows, columns=[*keys, "metric", "label", "quantile", "value", "n"])


def percentile_table(pct: pd.DataFrame) -> pd.DataFrame:
    """request_percentiles wide for reading: one row per cell and metric, a column per quantile."""
    keys = [c for c in pct.columns if c not in ("quantile", "value")]
    wide = pct.pivot(index=keys, columns="quantile", values="value")
    order = pct[keys].drop_duplicates()  # the long table's order (cells as run, metrics as listed)
    wide = order.merge(wide.reset_index(), on=keys, how="left")
    return wide[[*keys, *(q for q in QUANTILES if q in wide.columns)]]


def queue_vs_load(joined: pd.DataFrame) -> pd.DataFrame:
    """Per cell: load offered (vus; the measured arrival rate of its measured requests, from the
    server's arrival times where joined, else k6's start times) and carried (mean requests in
    flight at the server when each arrived), against queue time (mean, p50, p95; n-guarded)
    and its share of server e2e."""
    rows = []
    keys = _cell_keys(joined)
    for key, g in joined.groupby(keys, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        t = g["server_start_ts"].where(g["joined_server"], g["start_ts"]).dropna().sort_values()
        span_s = (t.iloc[-1] - t.iloc[0]).total_seconds() if len(t) > 1 else np.nan
        s = g[g["joined_server"]]
        q = s["queue_ms"].dropna().to_numpy(float)
        rows.append({**dict(zip(keys, key)), "requests": len(g), "joined": len(s),
                     "arrival_rate_rps": (len(t) - 1) / span_s if span_s and span_s > 0 else np.nan,
                     "in_flight_mean": float(s["server_in_flight"].mean()) if len(s) else np.nan,
                     "queue_mean_ms": float(q.mean()) if len(q) else np.nan,
                     "queue_p50_ms": float(np.quantile(q, 0.5)) if len(q) >= min_requests(0.5) else np.nan,
                     "queue_p95_ms": float(np.quantile(q, 0.95)) if len(q) >= min_requests(0.95) else np.nan,
                     "queue_share_of_e2e": float(s["queue_ms"].sum() / s["e2e_ms"].sum()) if len(s) else np.nan})
    return pd.DataFrame(rows)


def request_components(joined: pd.DataFrame) -> pd.DataFrame:
    """Per successful joined request: the ``COMPONENTS`` in ms (wide; edge and api_server only
    when the edge columns are there). Their sum is the k6 duration, exactly."""
    has_edge = "edge_request_time_ms" in joined.columns
    ok = _ok(joined)
    ok = ok[ok["joined_server"] & (ok["joined_edge"].fillna(False).astype(bool) if has_edge else True)]
    e2e = ok["e2e_ms"]
    parts = {}
    if has_edge:
        parts["client"] = ok["duration_ms"] - ok["edge_request_time_ms"]
        parts["edge"] = ok["edge_request_time_ms"] - ok["upstream_response_ms"]
        parts["api_server"] = ok["upstream_response_ms"] - e2e
    else:
        parts["client"] = ok["duration_ms"] - e2e
    parts.update(queue=ok["queue_ms"], prefill=ok["prefill_ms"], decode=ok["decode_ms"],
                 remainder=e2e - ok["queue_ms"] - ok["prefill_ms"] - ok["decode_ms"])
    return pd.concat([ok[[*_cell_keys(ok), "request_id", "duration_ms"]], pd.DataFrame(parts)], axis=1)


def time_breakdown(joined: pd.DataFrame) -> pd.DataFrame:
    """Long, per cell x component: mean_ms, share of the mean k6 duration (shares add up to 1),
    n, and the component's description. Successful requests joined to a span (and to an edge
    line when an edge table was joined). The engine's unattributed remainder is its own row."""
    comp = request_components(joined)
    keys = _cell_keys(comp)
    names = [c for c in COMPONENTS if c in comp.columns]
    rows = []
    for key, g in comp.groupby(keys, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        total = float(g["duration_ms"].mean())
        for c in names:
            mean = float(g[c].mean())
            rows.append({**dict(zip(keys, key)), "component": c, "mean_ms": mean, "share": mean / total,
                         "n": len(g), "description": COMPONENTS[c]})
    return pd.DataFrame(rows, columns=[*keys, "component", "mean_ms", "share", "n", "description"])


def token_crosscheck(joined: pd.DataFrame, spans: pd.DataFrame, k6_points: pd.DataFrame) -> pd.DataFrame:
    """Per cell: generated tokens of measured requests by k6's ``completion_tokens`` counter
    (the usage field of each response) and by the server's spans of the cell's measured ids;
    their difference, and the requests each side saw. Empty when k6 recorded no counter."""
    if k6_points is None or k6_points.empty or "completion_tokens" not in set(k6_points["metric"]):
        return pd.DataFrame(columns=["cell_id", "k6_tokens", "span_tokens", "difference", "k6_requests", "spans"])
    pts = k6_points[k6_points["metric"] == "completion_tokens"]
    if "phase" in pts.columns:
        pts = pts[pts["phase"] == "measure"]
    k6 = pts.groupby("cell_id")["value"].agg(k6_tokens="sum", k6_requests="size")
    req = request_spans(spans)
    ids = parse_request_id(req["request_id"])
    mine = req[(ids["id_phase"] == "measure") & ids["id_cell"].isin(set(joined.get("cell_id", [])))]
    srv = mine.groupby(ids.loc[mine.index, "id_cell"])["completion_tokens"].agg(span_tokens="sum", spans="size")
    out = k6.join(srv.rename_axis("cell_id"), how="outer")
    out["difference"] = out["span_tokens"] - out["k6_tokens"]
    return out.reset_index()[["cell_id", "k6_tokens", "span_tokens", "difference", "k6_requests", "spans"]]


def probe_vs_server(probe: pd.DataFrame, spans: pd.DataFrame) -> pd.DataFrame:
    """The streaming probe's own TTFT and e2e (client side) beside its server span's, per probe
    request that sent an X-Request-Id: the check that the span's TTFT, the only TTFT k6's
    requests have, is what a streaming client sees less HTTP and the work before arrival
    (``ttft_gap_ms`` = client - server; small and positive when the span is right)."""
    cols = ["cell_id", "request_id", "ttft_client_ms", "ttft_server_ms", "ttft_gap_ms", "e2e_client_ms",
            "e2e_server_ms", "e2e_gap_ms"]
    if probe is None or probe.empty or "request_id" not in probe.columns:
        return pd.DataFrame(columns=cols)
    ok = probe[probe["ok"].fillna(False).astype(bool) & probe["request_id"].notna()]
    srv = request_spans(spans).drop_duplicates("request_id")[["request_id", "ttft_ms", "e2e_ms"]]
    m = ok[["cell_id", "request_id", "ttft_ms", "e2e_ms"]].merge(srv, on="request_id", suffixes=("_client", "_server"))
    m = m.rename(columns={"ttft_ms_client": "ttft_client_ms", "ttft_ms_server": "ttft_server_ms",
                          "e2e_ms_client": "e2e_client_ms", "e2e_ms_server": "e2e_server_ms"})
    m["ttft_gap_ms"] = m["ttft_client_ms"] - m["ttft_server_ms"]
    m["e2e_gap_ms"] = m["e2e_client_ms"] - m["e2e_server_ms"]
    m.attrs["join"] = {"probe_requests": len(ok), "joined": len(m)}
    return m[cols]
