"""The BurstGPT trace layout (inferlab.formats.burstgpt_trace): seconds, failed requests kept, a
byte-exact writer, and a bad row named by file, line and field (a SpecError)."""

from __future__ import annotations

import pytest

from inferlab.formats.burstgpt_trace import TraceFormatError, read_trace, write_trace
from inferlab.specs import SpecError

HEADER = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"


def test_reads_the_published_layout(fixtures):
    t = read_trace(fixtures / "burstgpt-trace" / "BurstGPT-head.csv")
    assert list(t.columns) == ["line", "offset_s", "model", "log_type", "context_tokens", "generated_tokens"]
    assert t["offset_s"].tolist() == [0.0, 0.0, 2.0, 6.0, 14.0]  # seconds since the first request
    assert t["generated_tokens"].tolist() == [18, 0, 412, 120, 240]  # the failed request stays, 0 tokens
    assert t["model"].iloc[2] == "GPT-4" and t["log_type"].iloc[2] == "API log"


def test_write_round_trips_byte_for_byte(fixtures, tmp_path):
    src = fixtures / "burstgpt-trace" / "BurstGPT-head.csv"
    t = read_trace(src)
    out = tmp_path / "out.csv"
    write_trace(out, t.assign(timestamp_s=t["offset_s"] + 5))
    assert out.read_text() == src.read_text()


def test_columns_in_any_order_and_fractional_seconds(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("Log Type,Total tokens,Response tokens,Request tokens,Model,Timestamp,Note\n"
                 "API log,15,5,10,ChatGPT,3.25,x\nConversation log,3,1,2,GPT-4,1.5,y\n\n")
    t = read_trace(p)
    assert t["line"].tolist() == [3, 2] and t["offset_s"].tolist() == [0.0, 1.75] and t.attrs["blank_lines"] == [4]


@pytest.mark.parametrize("row, field", [
    ("soon,ChatGPT,5,1,6,API log", "field Timestamp"),
    ("-1,ChatGPT,5,1,6,API log", "field Timestamp"),
    ("1,ChatGPT,5.5,1,6.5,API log", "field Request tokens"),
    ("1,ChatGPT,5,-1,4,API log", "field Response tokens"),
    ("1,ChatGPT,5,1,7,API log", r"field Total tokens: Request tokens \+ Response tokens \(6\)"),
    ("1,ChatGPT,5,1,6,Chat log", "field Log Type"),
    ("1,,5,1,6,API log", "field Model"),
    ("1,ChatGPT,5,1", "6 fields"),
])
def test_a_bad_row_names_file_line_and_field(tmp_path, row, field):
    p = tmp_path / "bad.csv"
    p.write_text(HEADER + "0,ChatGPT,5,1,6,API log\n" + row + "\n")
    with pytest.raises(SpecError, match=r"bad\.csv:3: expected " + field) as e:
        read_trace(p)
    assert isinstance(e.value, TraceFormatError) and e.value.line == 3


def test_a_missing_column_names_it(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("Timestamp,Model,Request tokens,Response tokens,Log Type\n0,ChatGPT,5,1,API log\n")
    with pytest.raises(TraceFormatError, match=r"bad\.csv:1: expected .*missing Total tokens"):
        read_trace(p)
