"""read_edge_log on access logs the real nginx wrote (the local edge, TLS and plain), on the
variants nginx writes under retries, and on broken lines (each error names file, line, field)."""

from __future__ import annotations

import json
import math
import shutil

import pandas as pd
import pytest

from inferlab.ingest.edge_log import COLUMNS, read_edge_log
from inferlab.ingest.errors import IngestError, TruncatedLineWarning
from tests.targets.upstream import record_edge_log

pytestmark = pytest.mark.skipif(not shutil.which("nginx") and not shutil.which("/usr/sbin/nginx"),
                                reason="nginx not installed (`make system-deps`)")


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    d = tmp_path_factory.mktemp("edge-logs")
    import os

    old = os.environ.get("INFERLAB_HOME")
    (d / "pyproject.toml").write_text("")
    (d / "data").mkdir()
    os.environ["INFERLAB_HOME"] = str(d)  # the project CA goes into this throwaway workspace
    try:
        return {"tls": record_edge_log(d, tls=True), "plain": record_edge_log(d, tls=False)}
    finally:
        if old is None:
            os.environ.pop("INFERLAB_HOME")
        else:
            os.environ["INFERLAB_HOME"] = old


def _lines(path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def _write(tmp_path, objs_or_lines, name="access.log"):
    p = tmp_path / name
    p.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in objs_or_lines))
    return p


def test_real_log_reads_into_the_tidy_columns(logs):
    df = read_edge_log(logs["tls"])
    assert list(df.columns) == COLUMNS and len(df) == 8
    assert str(df["ts"].dt.tz) == "UTC" and df["ts"].is_monotonic_increasing
    assert (df["ts"].dt.microsecond % 1000 == 0).all() and df["ts"].dt.microsecond.any()  # ms, not whole seconds
    assert df["status"].dtype == "Int64" and df["bytes_sent"].dtype == "Int64"
    chat = df[df["uri"] == "/v1/chat/completions"]
    assert chat["status"].tolist() == [200, 503, 503, 503, 503, 401, 200]
    rejected = chat[chat["status"] == 503]
    assert rejected[["upstream_connect_ms", "upstream_header_ms", "upstream_response_ms"]].isna().all().all()
    assert rejected["upstream_status"].isna().all()
    served = chat[chat["status"] != 503]
    assert served["upstream_response_ms"].notna().all() and served["upstream_status"].tolist() == [200, 401, 200]
    assert chat["request_id"].iloc[0] == "run.short-c1.m0" and len(chat["request_id"].iloc[-1]) == 32
    assert set(df["ssl_protocol"]) == {"TLSv1.3"} and df["ssl_session_reused"].dtype == bool
    assert df.attrs["ingest"]["lines_used"] == 8 and df.attrs["ingest"]["lines_skipped"] == 0


def test_plain_log_has_no_tls_fields(logs):
    df = read_edge_log(logs["plain"])
    assert set(df["ssl_protocol"]) == {""} and not df["ssl_session_reused"].any()


def test_upstream_lists_and_dashes_from_retries(logs, tmp_path):
    base = _lines(logs["plain"])[1]
    variants = [dict(base, upstream_response_time="0.001, 0.040", upstream_connect_time="-, 0.000",
                     upstream_header_time="0.002 : 0.003", upstream_status="502, 200"),
                dict(base, upstream_response_time="-", upstream_connect_time="-", upstream_header_time="-",
                     upstream_status="-", ssl_session_reused="r")]
    df = read_edge_log(_write(tmp_path, variants))
    assert df["upstream_response_ms"].iloc[0] == pytest.approx(41.0) and df["upstream_header_ms"].iloc[0] == pytest.approx(5.0)
    assert df["upstream_connect_ms"].iloc[0] == 0.0 and df["upstream_status"].iloc[0] == 200
    assert math.isnan(df["upstream_response_ms"].iloc[1]) and pd.isna(df["upstream_status"].iloc[1])
    assert df["ssl_session_reused"].tolist() == [False, True]


@pytest.mark.parametrize(("change", "field"), [
    ({"status": "abc"}, "status"),
    ({"status": 42}, "status"),
    ({"request_time": None}, "request_time"),
    ({"upstream_response_time": "0.1, soon"}, "upstream_response_time"),
    ({"upstream_status": "ok"}, "upstream_status"),
    ({"time": "2026-11-27T09:41:22+00:00"}, "time"),  # no milliseconds: not this format
    ({"ssl_session_reused": "yes"}, "ssl_session_reused"),
    ({"request_id": ""}, "request_id"),
    ({"uri": None}, "uri"),
])
def test_a_bad_field_names_file_line_and_field(logs, tmp_path, change, field):
    objs = _lines(logs["plain"])
    objs[2] = dict(objs[2], **change)
    p = _write(tmp_path, objs)
    with pytest.raises(IngestError, match=rf"access\.log:3: expected field '{field}'") as err:
        read_edge_log(p)
    assert err.value.line == 3


def test_a_missing_field_and_a_non_json_line_are_errors(logs, tmp_path):
    objs = _lines(logs["plain"])
    del objs[1]["upstream_status"]
    with pytest.raises(IngestError, match=r":2: expected field 'upstream_status'.*missing"):
        read_edge_log(_write(tmp_path, objs))
    lines = logs["plain"].read_text().splitlines()
    lines.insert(3, "I1127 09:41:22.000000 7 controller.go:190] reloading")
    with pytest.raises(IngestError, match=r":4: expected one JSON object per line"):
        read_edge_log(_write(tmp_path, lines, "b.log"))  # in the local edge's own file every line is an access line


def test_controller_log_skips_and_counts_its_own_lines(logs, tmp_path):
    lines = logs["tls"].read_text().splitlines()
    mixed = ["-------------------------------------------------------------------------------",
             "NGINX Ingress controller", "  Release:       v1.11.3",
             *lines[:4], 'I1127 09:41:22.000000       7 controller.go:214] "Backend successfully reloaded"',
             *lines[4:], ""]
    df = read_edge_log(_write(tmp_path, mixed), source="controller")
    assert len(df) == len(lines)
    st = df.attrs["ingest"]
    assert (st["lines_read"], st["lines_used"], st["lines_skipped"]) == (len(mixed), len(lines), 5)
    assert any("5 blank or non-access (controller) lines skipped" in n for n in st["notes"])


def test_truncated_last_line_is_skipped_with_a_warning(logs, tmp_path):
    text = logs["plain"].read_text()
    p = tmp_path / "cut.log"
    p.write_text(text + text.splitlines()[1][:40])
    with pytest.warns(TruncatedLineWarning):
        df = read_edge_log(p)
    assert len(df) == 8 and df.attrs["ingest"]["lines_skipped"] == 1


def test_empty_log_is_an_empty_table(tmp_path):
    df = read_edge_log(_write(tmp_path, []))
    assert list(df.columns) == COLUMNS and df.empty
