"""The stream clock's JSON lines -> one typed row per request (ingest/stream_clock.py)."""

from __future__ import annotations

import json

import pytest

from inferlab.ingest import IngestError
from inferlab.ingest.errors import TruncatedLineWarning
from inferlab.ingest.stream_clock import COLUMNS, read_stream_clock

LINE = {"schema": "inferlab.stream-clock/1", "request_id": "r.c.m0", "start_unix": 1796358047.5, "status": 200,
        "sse": True, "headers_ms": 1.3, "ttft_ms": 12.1, "last_token_ms": 91.5, "e2e_ms": 91.7, "text_events": 5,
        "completion_tokens": 5, "tpot_ms": 19.85, "error": None}


def test_rows_are_typed_and_named_client(tmp_path):
    p = tmp_path / "stream-clock.jsonl"
    p.write_text(json.dumps(LINE) + "\n" + json.dumps({**LINE, "request_id": "r.c.m1", "status": 400, "sse": False,
                                                       "ttft_ms": None, "tpot_ms": None}) + "\n")
    df = read_stream_clock(p)
    assert list(df.columns) == COLUMNS and len(df) == 2
    assert df["client_ttft_ms"].tolist()[0] == 12.1 and df["client_ttft_ms"].isna().tolist() == [False, True]
    assert str(df["client_status"].dtype) == "Int64" and df["client_sse"].tolist() == [True, False]
    assert str(df["client_start_ts"].dt.tz) == "UTC" and df.attrs["ingest"]["lines_used"] == 2


def test_a_line_of_another_schema_names_its_line(tmp_path):
    p = tmp_path / "stream-clock.jsonl"
    p.write_text(json.dumps(LINE) + "\n" + json.dumps({"schema": "inferlab.probe/1"}) + "\n")
    with pytest.raises(IngestError, match=r":2"):
        read_stream_clock(p)


def test_a_cut_last_line_is_skipped_and_counted_and_connect_ms_is_read(tmp_path):
    p = tmp_path / "stream-clock.jsonl"
    whole = json.dumps({**LINE, "connect_ms": 0.12}) + "\n"
    p.write_text(whole + json.dumps({**LINE, "request_id": "r.c.m1"})[:40])  # the writer died mid-line
    with pytest.warns(TruncatedLineWarning):
        df = read_stream_clock(p)
    assert df["request_id"].tolist() == ["r.c.m0"] and df["client_connect_ms"].tolist() == [0.12]
    q = df.attrs["ingest"]
    assert (q["lines_used"], q["lines_skipped"]) == (1, 1) and "truncated final line skipped" in q["notes"][0]
    older = tmp_path / "older.jsonl"
    older.write_text(json.dumps(LINE) + "\n")  # a file made before connect_ms was recorded
    assert read_stream_clock(older)["client_connect_ms"].isna().all()
