"""analysis.edge on small hand-made tables (each row states what it tests). The prediction is
checked against the real nginx in tests/targets/test_edge.py; here its arithmetic and the join."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from inferlab.analysis import edge as ae

T0 = pd.Timestamp("2026-11-27T10:00:00", tz="UTC")


def _k6(rows):
    df = pd.DataFrame(rows, columns=["request_id", "cell", "duration_ms", "tls_handshaking_ms", "connecting_ms",
                                     "status", "phase"])
    df["start_ts"] = T0 + pd.to_timedelta(range(len(df)), unit="s")
    df["end_ts"] = df["start_ts"] + pd.to_timedelta(df["duration_ms"], unit="ms")
    return df


def _edge(rows):
    df = pd.DataFrame(rows, columns=["request_id", "status", "request_time_ms", "upstream_response_ms", "at_s"])
    df["ts"] = T0 + pd.to_timedelta(df.pop("at_s"), unit="s")
    df["upstream_connect_ms"] = 0.0
    df["ssl_protocol"], df["ssl_session_reused"] = "TLSv1.3", False
    return df


def test_prediction_arithmetic():
    assert ae.predicted_rejected_share(10, 10, 20, 20) == pytest.approx(1 - 210 / 400)
    assert ae.predicted_rejected_share(50, 250, 40, 60) == 0  # under the limit: nothing rejected
    assert ae.predicted_rejected_share(1, 0, 100, 10) == pytest.approx(0.99)
    assert "nodelay" in ae.predicted_rejected_share.__doc__ and "burst" in ae.predicted_rejected_share.__doc__
    with pytest.raises(ValueError):
        ae.predicted_rejected_share(10, 10, 0, 20)


def test_request_ids_split_from_the_right():
    ids = pd.Series(["20261127T100000Z-local-v1.2.short-c1.m7", "r.short-at20.w0-3", "4531375ce497fc6f77a82b1d3d416f87",
                     "a.b"])
    out = ae.split_request_id(ids)
    assert out["run_id"].tolist()[:2] == ["20261127T100000Z-local-v1.2", "r"]
    assert out["cell_id"].tolist()[:2] == ["short-c1", "short-at20"]
    assert out["measured"].tolist() == [True, False, False, False]
    assert out["cell_id"].iloc[2:].isna().all()


def test_join_and_overheads():
    k6 = _k6([("r.c-c1.m0", "c-c1", 12.0, 3.0, 0.5, 200, "measure"),
              ("r.c-c1.m1", "c-c1", 10.0, 0.0, 0.0, 200, "measure"),
              ("r.c-c1.m2", "c-c1", 11.0, 0.0, 0.0, 200, "measure")])  # no edge line: not joined
    edge = _edge([("r.c-c1.m0", 200, 8.0, 7.0, 0.1), ("r.c-c1.m1", 200, 9.0, 9.0, 1.1),
                  ("r.c-c1.m1", 200, 9.0, 9.0, 1.1)])  # logged twice: the first kept, counted
    j = ae.join_edge(k6, edge)
    assert len(j) == 3 and j["joined"].tolist() == [True, True, False] and j.attrs["duplicate_edge_ids"] == 1
    assert j["client_minus_edge_ms"].tolist()[:2] == [4.0, 1.0] and math.isnan(j["client_minus_edge_ms"].iloc[2])
    assert j["edge_minus_upstream_ms"].tolist()[:2] == [1.0, 0.0]


def test_cells_rejected_share_and_onset():
    k6 = _k6([(f"r.c-at4.m{i}", "c-at4", 5.0, 2.0 if i == 0 else 0.0, 0.3 if i == 0 else 0.0,
               200 if i < 2 else 503, "measure") for i in range(4)]
             + [("r.c-at4.w0-0", "c-at4", 5.0, 0.0, 0.0, 200, "warmup")])
    edge = _edge([("r.c-at4.m0", 200, 4.0, 3.5, 0.0), ("r.c-at4.m1", 200, 4.0, 3.5, 1.0),
                  ("r.c-at4.m2", 503, 0.1, math.nan, 2.5), ("r.c-at4.m3", 503, 0.1, math.nan, 3.0),
                  ("r.c-at4.w0-0", 503, 0.1, math.nan, -5.0),  # warm-up: not the cell's measured load
                  ("1f2e", 200, 1.0, 1.0, 0.5)])  # /metrics scrape: no cell
    cells = ae.edge_cells(k6, edge, limit_status=503)
    r = cells.iloc[0]
    assert (r["cell_id"], r["requests"], r["edge_lines"], r["rejected"]) == ("c-at4", 4, 4, 2)
    assert r["rejected_share"] == 0.5 and r["rejection_began_s"] == 2.5 and r["joined_share"] == 1.0
    assert (r["tls_handshakes"], r["tls_handshake_p50_ms"]) == (1, 2.0)
    pred = ae.rejected_vs_prediction(cells, rate_limit_rps=2, burst=2, offered_rps=4, duration_s=4)
    assert pred["predicted_share"].iloc[0] == pytest.approx(0.375) and pred["predicted_began_s"].iloc[0] == 1.0
    assert pred["difference_points"].iloc[0] == pytest.approx(12.5)


def test_tls_on_off_compares_new_connections():
    on = _k6([("a", "c", 10.0, 2.0, 0.2, 200, "measure"), ("b", "c", 6.0, 0.0, 0.0, 200, "measure")])
    off = _k6([("a", "c", 8.0, 0.0, 0.2, 200, "measure"), ("b", "c", 6.0, 0.0, 0.0, 200, "measure")])
    t = ae.tls_on_off(on, off).set_index("side")
    assert t.loc["tls on", "setup_p50_ms"] == pytest.approx(2.2) and t.loc["tls off", "setup_p50_ms"] == 0.2
    assert t.loc["tls on", "new_connections"] == 1 and math.isnan(t.loc["tls off", "tls_handshake_p50_ms"])


def test_an_upstream_503_is_not_a_rate_limit_rejection():
    """Both lines say 503 to the client; only the one no upstream answered is the edge's limit_req."""
    k6 = _k6([(f"r.c-at4.m{i}", "c-at4", 5.0, 0.0, 0.0, 503, "measure") for i in range(3)])
    edge = _edge([("r.c-at4.m0", 503, 0.1, math.nan, 0.5),  # limit_req: no upstream contacted
                  ("r.c-at4.m1", 503, 9.0, 8.5, 1.5),  # the engine's own 503, passed through
                  ("r.c-at4.m2", 503, 0.1, math.nan, 2.5)])
    edge["upstream_status"] = [math.nan, 503, math.nan]
    assert ae.edge_rejected(edge).tolist() == [True, False, True]
    r = ae.edge_cells(k6, edge, limit_status=503).iloc[0]
    assert (r["rejected"], r["upstream_errors"], r["rejection_began_s"]) == (2, 1, 0.5)
    assert r["rejected_share"] == pytest.approx(2 / 3)
    # a log without the field cannot tell them apart: every 503 counts, and the table says so
    cells = ae.edge_cells(k6, edge.drop(columns="upstream_status"), limit_status=503)
    assert cells["rejected"].iloc[0] == 3 and cells.attrs["upstream_status_known"] is False
