"""The Azure trace layout (inferlab.formats.azure_trace): written to 100 ns, and a bad trace named by a
workload is a SpecError (what the CLI prints as one line)."""

from __future__ import annotations

import pytest

from inferlab.specs import SpecError
from inferlab.formats.azure_trace import TraceFormatError, read_trace, write_trace


def test_write_round_trips_to_100_ns(tmp_path, fixtures):
    src = fixtures / "azure-trace" / "AzureLLMInferenceTrace_conv-head.csv"
    out = tmp_path / "out.csv"
    write_trace(out, read_trace(src))
    assert out.read_text() == src.read_text()


def test_a_bad_trace_is_a_spec_error_naming_line_and_field(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2024-01-01 00:00:00,5,1\nyesterday,5,1\n")
    with pytest.raises(SpecError, match=r"bad\.csv:3: expected field TIMESTAMP.*'yesterday'") as e:
        read_trace(p)
    assert isinstance(e.value, TraceFormatError) and (e.value.line, e.value.got) == (3, "yesterday")
