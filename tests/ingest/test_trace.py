"""The Azure-layout trace reader under the ingest contract (IngestError, line accounting) on a
fixture in the public format; the format and its writer: tests/formats/test_azure_trace.py."""

from __future__ import annotations

import pandas as pd
import pytest

from inferlab.ingest.errors import IngestError
from inferlab.ingest.trace import read_azure_trace


def test_reads_the_public_layout(fixtures):
    t = read_azure_trace(fixtures / "azure-trace" / "AzureLLMInferenceTrace_conv-head.csv")
    assert list(t.columns) == ["line", "ts", "offset_s", "context_tokens", "generated_tokens"]
    assert len(t) == 8 and t.attrs["ingest"]["lines_used"] == 8
    assert t["ts"].iloc[0] == pd.Timestamp("2023-11-16 18:15:46.68059", tz="UTC")
    assert t["offset_s"].iloc[-1] == pytest.approx(55.744006 - 46.68059)
    assert t["context_tokens"].tolist()[:3] == [374, 396, 879] and t["generated_tokens"].iloc[-1] == 27


def test_columns_in_any_order_extra_columns_and_unsorted_rows(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("GeneratedTokens,Note,ContextTokens,TIMESTAMP\n5,x,10,2024-05-01 00:00:02.5\n"
                 "7,y,20,2024-05-01 00:00:01\n\n")
    t = read_azure_trace(p)
    assert t["line"].tolist() == [3, 2] and t["offset_s"].tolist() == [0.0, 1.5]
    assert {k: t.attrs["ingest"][k] for k in ("lines_read", "lines_used", "lines_skipped")} == \
        {"lines_read": 4, "lines_used": 2, "lines_skipped": 1}
    assert t.attrs["ingest"]["notes"] == [f"{p}:4: blank line skipped"] and "blank_lines" not in t.attrs


@pytest.mark.parametrize("body, line, field", [
    ("TIMESTAMP,ContextTokens\n2024-01-01 00:00:00,5\n", 1, "GeneratedTokens"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n2024-01-01 00:00:00,5,1\nyesterday,5,1\n", 3, "TIMESTAMP"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n2024-01-01 00:00:00,5,1\n2024-01-01 00:00:01,-3,1\n", 3,
     "ContextTokens"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n2024-01-01 00:00:00,5,1.5\n", 2, "GeneratedTokens"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n2024-01-01 00:00:00,5\n", 2, "3 fields"),
])
def test_errors_name_file_line_and_field(tmp_path, body, line, field):
    p = tmp_path / "bad.csv"
    p.write_text(body)
    with pytest.raises(IngestError, match=field) as e:
        read_azure_trace(p)
    assert e.value.line == line and e.value.path == str(p)


def test_empty_file_is_an_error(tmp_path):
    p = tmp_path / "empty.csv"
    p.write_text("")
    with pytest.raises(IngestError, match="header"):
        read_azure_trace(p)


def test_mooncake_and_burstgpt_under_the_ingest_contract(fixtures, tmp_path):
    from inferlab.ingest.trace import read_burstgpt_trace, read_mooncake_trace

    m = read_mooncake_trace(fixtures / "mooncake-trace" / "mooncake_trace-head.jsonl")
    b = read_burstgpt_trace(fixtures / "burstgpt-trace" / "BurstGPT-head.csv")
    assert m.attrs["ingest"]["lines_used"] == 5 and m.attrs["ingest"]["lines_read"] == 5
    assert b.attrs["ingest"]["lines_used"] == 5 and b.attrs["ingest"]["lines_read"] == 6
    p = tmp_path / "bad.jsonl"
    p.write_text('{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": [0]}\n\n{"timestamp": 1}\n')
    with pytest.raises(IngestError, match="input_length") as e:
        read_mooncake_trace(p)
    assert (e.value.path, e.value.line) == (str(p), 3)
