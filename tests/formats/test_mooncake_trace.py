"""The Mooncake trace layout (inferlab.formats.mooncake_trace): ms timestamps to seconds, hash ids
kept, a byte-exact writer, and a bad line named by file, line and field (a SpecError)."""

from __future__ import annotations

import pytest

from inferlab.formats.mooncake_trace import TraceFormatError, read_trace, write_trace
from inferlab.specs import SpecError


def test_reads_the_published_layout(fixtures):
    t = read_trace(fixtures / "mooncake-trace" / "mooncake_trace-head.jsonl")
    assert list(t.columns) == ["line", "offset_s", "context_tokens", "generated_tokens", "hash_ids"]
    assert t["offset_s"].tolist() == [0.0, 0.25, 1.0, 1.75, 4.0]  # ms -> s
    assert t["hash_ids"].iloc[3] == [46, 47, 2, 6, 7] and t["context_tokens"].iloc[3] == 2100


def test_write_round_trips_byte_for_byte(fixtures, tmp_path):
    src = fixtures / "mooncake-trace" / "mooncake_trace-head.jsonl"
    t = read_trace(src)
    out = tmp_path / "out.jsonl"
    write_trace(out, t.assign(timestamp_ms=(t["offset_s"] * 1000).round().astype(int)))
    assert out.read_text() == src.read_text()


def test_unsorted_lines_and_blank_lines(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text('{"timestamp": 900, "input_length": 5, "output_length": 1, "hash_ids": [1], "extra": 1}\n\n'
                 '{"timestamp": 400, "input_length": 7, "output_length": 2, "hash_ids": []}\n')
    t = read_trace(p)
    assert t["line"].tolist() == [3, 1] and t["offset_s"].tolist() == [0.0, 0.5] and t.attrs["blank_lines"] == [2]


GOOD = '{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": [0]}\n'


@pytest.mark.parametrize("line, expected", [
    ('{"timestamp": 0, "input_length": 5, "output_length": 1', "a JSON object"),
    ('[1, 2]', "a JSON object"),
    ('{"timestamp": 0, "input_length": 5, "hash_ids": [0]}', "field output_length"),
    ('{"timestamp": 1.5, "input_length": 5, "output_length": 1, "hash_ids": [0]}', "field timestamp: a non-negative"),
    ('{"timestamp": 1, "input_length": -5, "output_length": 1, "hash_ids": [0]}', "field input_length"),
    ('{"timestamp": 1, "input_length": 5, "output_length": true, "hash_ids": [0]}', "field output_length"),
    ('{"timestamp": 1, "input_length": 5, "output_length": 1, "hash_ids": "0,1"}', "field hash_ids: a list"),
    ('{"timestamp": 1, "input_length": 5, "output_length": 1, "hash_ids": [0, -1]}', "field hash_ids"),
])
def test_a_bad_line_names_file_line_and_field(tmp_path, line, expected):
    p = tmp_path / "bad.jsonl"
    p.write_text(GOOD + line + "\n")
    with pytest.raises(SpecError, match=r"bad\.jsonl:2: expected " + expected) as e:
        read_trace(p)
    assert isinstance(e.value, TraceFormatError) and e.value.line == 2


def test_an_empty_file_is_an_error(tmp_path):
    p = tmp_path / "empty.jsonl"
    p.write_text("\n")
    with pytest.raises(TraceFormatError, match="at least one request"):
        read_trace(p)
