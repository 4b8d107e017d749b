import pytest

from inferlab.ingest.errors import IngestError
from inferlab.ingest.lines import _UTF8_SLICE, check_utf8


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
