"""What the edge did to each request: k6's rows joined to the edge's access log by request id.

Inputs are tidy: the k6 request table (``request_id``, ``cell_id`` (or k6's ``cell`` tag),
``duration_ms``, ``tls_handshaking_ms``, ``connecting_ms``, ``status``, ``start_ts``, ``end_ts``,
``phase``) and :func:`inferlab.ingest.edge_log.read_edge_log`'s table. Per cell: the join rate,
the edge's overhead as two differences of one request's three clocks (client duration - edge
``request_time``: the client's own and the network's share; edge ``request_time`` - upstream
``response_time``: nginx's share), TLS handshakes, the rejected share and when rejection began.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .requests import parse_request_id



def split_request_id(request_id: pd.Series) -> pd.DataFrame:
    """``<run_id>.<cell_id>.<m|w|p><n>`` (multi-turn ``m<session>-<turn>``) -> columns run_id,
    cell_id, measured (bool); NaN/False for ids of another form (nginx's own $request_id). One
    parser for the id format: :func:`inferlab.analysis.requests.parse_request_id`."""
    parts = parse_request_id(request_id)
    return pd.DataFrame({"run_id": parts["id_run"], "cell_id": parts["id_cell"],
                         "measured": (parts["id_phase"] == "measure").fillna(False).astype(bool)},
                        index=request_id.index)


def _cell_col(k6: pd.DataFrame) -> str:
    return "cell_id" if "cell_id" in k6.columns else "cell"


def join_edge(k6: pd.DataFrame, edge: pd.DataFrame) -> pd.DataFrame:
    """One row per k6 request, the edge's line beside it (``edge_*`` columns, NaN where none):
    ``joined``, ``client_minus_edge_ms`` and ``edge_minus_upstream_ms``. An id the edge logged
    twice keeps its first line; how many were dropped is in ``attrs["duplicate_edge_ids"]``."""
    # a resumed cell re-sends its ids: the newest line (later log file, later in it) is this attempt's
    dup = edge["request_id"].duplicated(keep="last")
    e = edge.loc[~dup, ["request_id", "ts", "status", "request_time_ms", "upstream_connect_ms",
                        "upstream_response_ms", "ssl_protocol", "ssl_session_reused"]]
    e = e.rename(columns={c: f"edge_{c}" for c in e.columns if c != "request_id"})
    out = k6.merge(e, on="request_id", how="left", validate="many_to_one")
    out["joined"] = out["edge_status"].notna()
    out["client_minus_edge_ms"] = out["duration_ms"] - out["edge_request_time_ms"]
    out["edge_minus_upstream_ms"] = out["edge_request_time_ms"] - out["edge_upstream_response_ms"]
    out.attrs["duplicate_edge_ids"] = int(dup.sum())
    return out


def predicted_rejected_share(rate_limit_rps: float, burst: float, offered_rps: float, duration_s: float) -> float:
    """The share of an open-loop load that ``limit_req ... burst=B nodelay`` rejects:
    ``1 - min(1, (rate*T + burst) / (offered*T))``.

    Assumes ingress-nginx's semantics: one client address (one zone key), ``nodelay`` (a
    request within the burst is served at once, not delayed, so admitted = what the leaky
    bucket lets through: ``rate`` per second plus the ``burst`` the empty bucket holds at the
    start), arrivals at a constant ``offered`` rate for ``T`` seconds, and a bucket empty at
    the start. Rejection then begins after about ``burst / (offered - rate)`` seconds."""
    if min(rate_limit_rps, offered_rps, duration_s) <= 0 or burst < 0:
        raise ValueError("rate, offered rate and duration must be > 0, burst >= 0")
    return 1 - min(1.0, (rate_limit_rps * duration_s + burst) / (offered_rps * duration_s))


def _q(s: pd.Series, q: float) -> float:
    s = s.dropna()
    return float(s.quantile(q)) if len(s) else np.nan


def _upstream_status(edge: pd.DataFrame) -> pd.Series:
    if "upstream_status" not in edge.columns:
        return pd.Series(np.nan, index=edge.index)
    return pd.to_numeric(edge["upstream_status"], errors="coerce")


def edge_rejected(edge: pd.DataFrame, limit_status: int = 503) -> pd.Series:
    """Whether each edge line is the edge's own rejection: status ``limit_status`` and no
    upstream status (nginx's ``limit_req`` answers without contacting an upstream, so its
    ``$upstream_status`` is ``-``). A 503 with an upstream status came from the upstream. A log
    without the ``upstream_status`` field cannot tell them apart: every ``limit_status`` line
    counts, as before (the table's ``attrs["upstream_status_known"]`` is then False)."""
    up = _upstream_status(edge)
    return (edge["status"] == limit_status) & up.isna()


def edge_cells(k6: pd.DataFrame, edge: pd.DataFrame, limit_status: int = 503) -> pd.DataFrame:
    """Per cell (measured requests only): requests, joined share, the overhead medians and p95s,
    TLS handshakes (count, median ms), rejected count and share from the edge log and
    ``rejection_began_s`` (the first rejected line's end time after the cell's first k6 start).

    A line is the edge's own rejection (:func:`edge_rejected`) when its status is
    ``limit_status`` and no upstream answered it; an upstream's 503 passing through the edge (the
    engine overloaded or restarting) is counted apart, in ``upstream_errors`` (every 5xx that an
    upstream sent), never as a rate-limit rejection."""
    cell = _cell_col(k6)
    measured = k6[k6["phase"] == "measure"] if "phase" in k6.columns else k6
    joined = join_edge(measured, edge)
    ids = split_request_id(edge["request_id"])
    lines = edge.assign(cell_id=ids["cell_id"])[ids["measured"]]
    rows = []
    for cell_id, g in joined.groupby(cell, sort=True):
        el = lines[lines["cell_id"] == cell_id]
        rejected = el[edge_rejected(el, limit_status)]
        upstream_5xx = _upstream_status(el) >= 500
        start = g["start_ts"].min()
        tls = g.loc[g["tls_handshaking_ms"] > 0, "tls_handshaking_ms"]
        rows.append({
            "cell_id": cell_id, "requests": len(g), "joined_share": g["joined"].mean(),
            "edge_lines": len(el), "rejected": len(rejected), "upstream_errors": int(upstream_5xx.sum()),
            "rejected_share": len(rejected) / len(el) if len(el) else np.nan,
            "rejection_began_s": (rejected["ts"].min() - start).total_seconds() if len(rejected) else np.nan,
            "client_minus_edge_p50_ms": _q(g["client_minus_edge_ms"], 0.5),
            "client_minus_edge_p95_ms": _q(g["client_minus_edge_ms"], 0.95),
            "edge_minus_upstream_p50_ms": _q(g["edge_minus_upstream_ms"], 0.5),
            "edge_minus_upstream_p95_ms": _q(g["edge_minus_upstream_ms"], 0.95),
            "tls_handshakes": len(tls), "tls_handshake_p50_ms": _q(tls, 0.5),
        })
    out = pd.DataFrame(rows)
    out.attrs["upstream_status_known"] = "upstream_status" in edge.columns
    return out


def tls_on_off(on: pd.DataFrame, off: pd.DataFrame) -> pd.DataFrame:
    """TLS cost from two k6 request tables through the edge, TLS on and TLS off: the median of
    ``connecting_ms + tls_handshaking_ms`` over requests that opened a connection (the set-up a
    new connection pays), and the median duration of all requests. Tidy: one row per side."""
    rows = []
    for side, df in (("tls on", on), ("tls off", off)):
        new = df[(df["connecting_ms"] > 0) | (df["tls_handshaking_ms"] > 0)]
        rows.append({"side": side, "requests": len(df), "new_connections": len(new),
                     "setup_p50_ms": _q(new["connecting_ms"] + new["tls_handshaking_ms"], 0.5),
                     "tls_handshake_p50_ms": _q(new.loc[new["tls_handshaking_ms"] > 0, "tls_handshaking_ms"], 0.5),
                     "duration_p50_ms": _q(df["duration_ms"], 0.5)})
    return pd.DataFrame(rows)


def rejected_vs_prediction(cells: pd.DataFrame, rate_limit_rps: float, burst: float, offered_rps: float,
                           duration_s: float) -> pd.DataFrame:
    """``edge_cells`` rows with the predicted share beside the measured one (points apart)."""
    pred = predicted_rejected_share(rate_limit_rps, burst, offered_rps, duration_s)
    out = cells[["cell_id", "edge_lines", "rejected", "rejected_share", "rejection_began_s"]].copy()
    out["predicted_share"] = pred
    out["predicted_began_s"] = burst / (offered_rps - rate_limit_rps) if offered_rps > rate_limit_rps else np.nan
    out["difference_points"] = (out["rejected_share"] - pred) * 100
    return out
