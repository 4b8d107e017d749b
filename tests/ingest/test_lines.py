import gzip
import zlib

import pytest

from inferlab.ingest.errors import IngestError, LineStats, TruncatedLineWarning
from inferlab.ingest.lines import (_UTF8_SLICE, check_utf8, iter_json_lines, iter_line_chunks, read_json,
                                   read_lines)


def test_ascii_and_valid_multibyte_pass():
    assert check_utf8(b"a\nb\n", "f", 1) == 4
    data = "é\n€\n🚀\n".encode()
    assert check_utf8(data, "f", 1) == len(data)


def test_multibyte_character_across_a_slice_boundary_passes():
    data = b"x" * (_UTF8_SLICE - 1) + "🚀\n".encode() + b"y\n"  # the 4 bytes straddle the slice
    assert check_utf8(data, "f", 1) == len(data)


def test_invalid_byte_names_line_and_column_from_first_line():
    data = b"ok\nalso ok\nbad \xff here\nok\n"
    with pytest.raises(IngestError) as e:
        check_utf8(data, "f.ndjson", 101)
    assert str(e.value).startswith("f.ndjson:103: expected valid UTF-8, but byte 0xff at column 5 is not")
    assert "bad \ufffd here" in str(e.value)


def test_invalid_byte_after_the_first_slice_names_its_line():
    data = b"x\n" * (_UTF8_SLICE // 2 + 10) + b"\xc3(\n"  # 0xc3 followed by a non-continuation byte
    with pytest.raises(IngestError, match=rf"f:{_UTF8_SLICE // 2 + 11}: expected valid UTF-8, but byte 0xc3"):
        check_utf8(data, "f", 1)


def test_character_cut_at_the_end_is_truncation_only_when_incomplete():
    data = b'{"a":"\xc3\xa9\xc3'  # an unterminated last line ending inside a 2-byte character
    assert check_utf8(data, "f", 7, complete=False) == len(data) - 1
    with pytest.raises(IngestError, match="f:7: expected valid UTF-8"):
        check_utf8(data, "f", 7, complete=True)
    with pytest.raises(IngestError, match="f:7: expected valid UTF-8"):  # a bad byte before the cut
        check_utf8(b'{"a":"\xff\xc3', "f", 7, complete=False)


# --- the prologue and the JSON-lines loop ---------------------------------------------------


def test_plain_and_gzip_read_the_same_lines_and_a_cut_last_line_is_dropped_with_a_note(tmp_path):
    plain, packed = tmp_path / "a.txt", tmp_path / "a.renamed"  # gzip by its magic, not its name
    plain.write_bytes(b"one\ntwo\nthr")
    packed.write_bytes(gzip.compress(b"one\ntwo\nthr"))
    for p in (plain, packed):
        stats = LineStats(str(p))
        with pytest.warns(TruncatedLineWarning):
            assert read_lines(p, stats) == ["one", "two"]
        assert (stats.lines_read, stats.lines_skipped, stats.notes) == (3, 1, [f"{p}:3: truncated final line skipped"])
    empty = tmp_path / "e"
    empty.write_bytes(b"")
    assert read_lines(empty, LineStats(str(empty))) == []


def test_a_gzip_stream_cut_short_reads_to_its_last_flush_with_a_note(tmp_path):
    z = zlib.compressobj(wbits=31)
    data = z.compress(b"a\nb\n") + z.flush(zlib.Z_SYNC_FLUSH) + z.compress(b"c\n")  # never finished
    p = tmp_path / "cut.gz"
    p.write_bytes(data)
    stats = LineStats(str(p))
    assert read_lines(p, stats) == ["a", "b"]
    assert stats.notes == [f"{p}: gzip stream ends early (writer stopped mid-file): read up to its last flush"]


def test_streamed_chunks_follow_the_same_rules(tmp_path):
    p = tmp_path / "k.ndjson"
    p.write_bytes(b"a\nb\nc\nd\ne")
    stats = LineStats(str(p))
    with pytest.warns(TruncatedLineWarning):
        chunks = list(iter_line_chunks(p, stats, chunk_bytes=3))
    assert chunks == [(1, b"a\nb\n"), (3, b"c\nd\n")]
    assert (stats.lines_read, stats.lines_skipped) == (5, 1)


def test_json_lines_loop_skips_blank_and_foreign_lines_and_names_a_bad_line(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"a": 1}\n\nklog line\n{"a": 2}\n')
    stats = LineStats(str(p))
    got = list(iter_json_lines(p, stats, "a record", foreign=lambda line: line.startswith("klog"),
                               foreign_what="klog lines"))
    assert [(n, obj) for n, obj, _ in got] == [(1, {"a": 1}), (4, {"a": 2})]
    assert stats.lines_skipped == 2 and stats.notes == [f"{p}:2: blank line skipped", f"{p}: 1 klog lines skipped"]
    with pytest.raises(IngestError, match=r"x.jsonl:3: expected a record; got 'klog line'"):
        list(iter_json_lines(p, LineStats(str(p)), "a record"))


def test_a_json_document_error_names_its_line(tmp_path):
    p = tmp_path / "d.json"
    p.write_text('{"a":\n  1,\n  oops}')
    with pytest.raises(IngestError, match=r"d.json:3: expected a summary"):
        read_json(p, LineStats(str(p)), "a summary")
