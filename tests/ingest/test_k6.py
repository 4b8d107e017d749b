import gzip
import json

import pandas as pd
import pytest

from inferlab.ingest import IngestError, TruncatedLineWarning, read_k6, read_k6_points


@pytest.fixture
def k6_lines(fixtures):
    return gzip.decompress((fixtures / "k6-1.1.0" / "short_c1.ndjson.gz").read_bytes()).decode().splitlines()


def write(tmp_path, lines, name="k6.ndjson", newline=True):
    p = tmp_path / name
    p.write_text("\n".join(lines) + ("\n" if newline else ""))
    return p


def test_golden_reference_cell(fixtures):
    df = read_k6(fixtures / "k6-1.1.0" / "short_c1.ndjson.gz")
    assert len(df) == 24  # shared-iterations, 24 iterations at 1 VU
    assert df["status"].eq(200).all() and df["ok"].all() and not df["failed"].any()
    assert str(df["end_ts"].dt.tz) == "UTC" and str(df["start_ts"].dt.tz) == "UTC"
    delta_ms = (df["end_ts"] - df["start_ts"]).dt.total_seconds() * 1000
    assert (delta_ms - df["duration_ms"]).abs().max() < 1e-3
    assert df["duration_ms"].iloc[0] == pytest.approx(130.410865)
    assert df["waiting_ms"].iloc[0] == pytest.approx(130.105261)
    assert {"payload", "scenario", "proto", "method", "url", "error", "error_code"} <= set(df.columns)
    assert df["payload"].eq("short").all()
    # the k6 summary agrees with the per-request table
    summary = json.loads((fixtures / "k6-1.1.0" / "short_c1.summary.json").read_text())
    assert df["duration_ms"].max() == pytest.approx(summary["metrics"]["http_req_duration"]["max"])
    stats = df.attrs["ingest"]
    assert stats["lines_skipped"] == 0 and stats["lines_used"] == 24 * 9


def test_plain_and_gzip_agree(tmp_path, fixtures, k6_lines):
    a = read_k6(write(tmp_path, k6_lines))
    b = read_k6(fixtures / "k6-1.1.0" / "short_c1.ndjson.gz")
    pd.testing.assert_frame_equal(a, b)


def test_small_chunks_give_the_same_table(tmp_path, k6_lines):
    p = write(tmp_path, k6_lines)
    pd.testing.assert_frame_equal(read_k6(p), read_k6(p, chunk_bytes=777))


def test_tolerant_timestamps_and_offsets(tmp_path, k6_lines):
    first = next(i for i, l in enumerate(k6_lines) if '"http_req_duration","type":"Point"' in l)
    stamp = json.loads(k6_lines[first])["data"]["time"]
    variants = {"2026-11-26T20:59:44.92695Z": "2026-11-26T20:59:44.92695",
                "2026-11-26T21:59:44.1+01:00": "2026-11-26T20:59:44.1",
                "2026-11-26T20:59:44Z": "2026-11-26T20:59:44"}
    for raw, expected in variants.items():
        lines = [l.replace(stamp, raw) for l in k6_lines]
        df = read_k6(write(tmp_path, lines, f"{hash(raw)}.ndjson"))
        assert df["end_ts"].iloc[0] == pd.Timestamp(expected, tz="UTC")


def test_points_without_fast_path_key_order_still_load(tmp_path, k6_lines):
    reordered = []
    for l in k6_lines:
        obj = json.loads(l)
        reordered.append(json.dumps({"type": obj["type"], "data": obj["data"], "metric": obj["metric"]}))
    a, b = read_k6(write(tmp_path, reordered)), read_k6(write(tmp_path, k6_lines, "b.ndjson"))
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_like=True)


def test_two_requests_same_instant_and_tags_stay_two(tmp_path, k6_lines):
    first_req = [l for l in k6_lines if '"type":"Point"' in l and '"http_req' in l][:9]
    df = read_k6(write(tmp_path, first_req + first_req))
    assert len(df) == 2


def test_interleaved_request_blocks_take_the_general_path(tmp_path, k6_lines):
    # the fast path numbers requests by their http_reqs anchor; when two requests' Points are
    # interleaved that does not verify, and the (time, tags, occurrence) grouping must decide
    points = [l for l in k6_lines if '"type":"Point"' in l and '"http_req' in l]
    a, b = points[:9], points[9:18]
    mixed = [x for pair in zip(a, b, strict=True) for x in pair]
    df = read_k6(write(tmp_path, mixed))
    plain = read_k6(write(tmp_path, a + b, "plain.ndjson"))
    assert len(df) == 2
    pd.testing.assert_frame_equal(df, plain)


def test_blank_lines_keep_line_numbers(tmp_path, k6_lines):
    # a blank line makes the fast splitter's byte count disagree -> exact Python split, same numbering
    lines = k6_lines[:5] + [""] + k6_lines[5:8] + ["not json"] + k6_lines[8:]
    with pytest.raises(IngestError, match=r"k6.ndjson:10: expected a k6 JSON"):
        read_k6(write(tmp_path, lines))


def _with_bad_byte(k6_lines, i):
    """Line i (0-based) of the reference file with one byte of its url tag replaced by 0xff."""
    lines = [l.encode() for l in k6_lines]
    assert b'"url":"http' in lines[i]
    lines[i] = lines[i].replace(b'"url":"http', b'"url":"\xfftp', 1)
    return b"\n".join(lines) + b"\n"


@pytest.mark.parametrize("chunk_bytes", [None, 777])
def test_invalid_utf8_inside_a_request_is_an_error_naming_its_line(tmp_path, k6_lines, chunk_bytes):
    # before: utf8-lossy/"replace" turned 0xff into U+FFFD, the Point got other tags than its
    # request's other Points, and the request silently became two rows
    i = [n for n, l in enumerate(k6_lines) if '"http_req_waiting","type":"Point"' in l][3]
    p = tmp_path / "k6.ndjson"
    p.write_bytes(_with_bad_byte(k6_lines, i))
    kwargs = {"chunk_bytes": chunk_bytes} if chunk_bytes else {}
    expected = rf"k6.ndjson:{i + 1}: expected valid UTF-8, but byte 0xff at column \d+"
    with pytest.raises(IngestError, match=expected) as e:
        read_k6(p, **kwargs)
    assert "http_req_waiting" in str(e.value)  # the offending line is quoted
    with pytest.raises(IngestError, match=rf"k6.ndjson:{i + 1}: expected valid UTF-8"):
        read_k6_points(p)


def test_invalid_utf8_in_gzip_input_names_its_line(tmp_path, k6_lines):
    i = next(n for n, l in enumerate(k6_lines) if '"http_req_duration","type":"Point"' in l)
    p = tmp_path / "k6.ndjson.gz"
    p.write_bytes(gzip.compress(_with_bad_byte(k6_lines, i)))
    with pytest.raises(IngestError, match=rf"k6.ndjson.gz:{i + 1}: expected valid UTF-8"):
        read_k6(p)


def test_valid_non_ascii_tags_still_read(tmp_path, k6_lines):
    # the UTF-8 check must not reject real multi-byte text (isascii() fails -> full decode)
    lines = [l.replace('"payload":"short"', '"payload":"kurz-\u00e9t\u00e9-\U0001f680"') for l in k6_lines]
    df = read_k6(write(tmp_path, lines))
    assert len(df) == 24 and df["payload"].eq("kurz-\u00e9t\u00e9-\U0001f680").all()


def test_truncated_final_line_cut_inside_a_character_is_a_truncated_tail(tmp_path, k6_lines):
    last = k6_lines[-1].replace('"tags":{', '"tags":{"n":"\u00e9\u00e9",', 1).encode()
    cut = last[: last.index("\u00e9".encode()) + 1]  # the first byte of a 2-byte character
    p = tmp_path / "k6.ndjson"
    p.write_bytes(("\n".join(k6_lines) + "\n").encode() + cut)
    with pytest.warns(TruncatedLineWarning):
        df = read_k6(p)
    assert len(df) == 24 and df.attrs["ingest"]["lines_skipped"] == 1


def test_csv_given_as_k6_names_file_and_line(tmp_path, fixtures):
    p = tmp_path / "gpu.json"
    p.write_bytes((fixtures / "nvidia-smi-580" / "h200-matrix.csv").read_bytes())
    with pytest.raises(IngestError) as e:
        read_k6(p)
    assert f"{p}:1" in str(e.value) and "k6 JSON" in str(e.value)


def test_garbage_line_mid_file_is_an_error(tmp_path, k6_lines):
    lines = k6_lines[:10] + ["this is not json"] + k6_lines[10:]
    with pytest.raises(IngestError, match=r":11: expected"):
        read_k6(write(tmp_path, lines))


def test_non_numeric_value_is_an_error(tmp_path, k6_lines):
    i = next(i for i, l in enumerate(k6_lines) if '"http_req_duration","type":"Point"' in l)
    bad = k6_lines[i].replace('"value":130.410865', '"value":"x"')
    lines = k6_lines[:i] + [bad] + k6_lines[i + 1:]
    with pytest.raises(IngestError, match=f":{i + 1}:"):
        read_k6(write(tmp_path, lines))


def test_truncated_final_line_is_tolerated_and_counted(tmp_path, k6_lines):
    lines = k6_lines + [k6_lines[-1][:40]]
    with pytest.warns(TruncatedLineWarning):
        df = read_k6(write(tmp_path, lines, newline=False))
    assert len(df) == 24
    assert df.attrs["ingest"]["lines_skipped"] == 1
    assert df.attrs["ingest"]["lines_read"] == len(lines)


def test_blank_lines_are_counted_not_silent(tmp_path, k6_lines):
    df = read_k6(write(tmp_path, k6_lines[:5] + [""] + k6_lines[5:]))
    assert len(df) == 24 and df.attrs["ingest"]["lines_skipped"] == 1


@pytest.mark.parametrize("chunk_bytes", [None, 999])
def test_blank_lines_in_the_middle_are_skipped_with_a_note(tmp_path, k6_lines, chunk_bytes):
    # blank and whitespace-only lines inside a request's block and between blocks: the table is
    # unchanged, each is counted as skipped and named by a note with its line number
    lines = k6_lines[:40] + [""] + k6_lines[40:43] + ["   "] + k6_lines[43:100] + ["", ""] + k6_lines[100:]
    p = write(tmp_path, lines)
    kwargs = {"chunk_bytes": chunk_bytes} if chunk_bytes else {}
    df = read_k6(p, **kwargs)
    pd.testing.assert_frame_equal(df, read_k6(write(tmp_path, k6_lines, "clean.ndjson")))
    stats = df.attrs["ingest"]
    assert stats["lines_read"] == len(lines) and stats["lines_skipped"] == 4
    assert stats["notes"] == [f"{p}:{n}: blank line skipped" for n in (41, 45, 103, 104)]
    assert read_k6_points(p, **kwargs).attrs["ingest"]["lines_skipped"] == 4


def test_empty_file_is_an_error(tmp_path):
    p = tmp_path / "e.ndjson"
    p.write_text("")
    with pytest.raises(IngestError, match="empty"):
        read_k6(p)


def test_points_long_form(fixtures):
    pts = read_k6_points(fixtures / "k6-1.1.0" / "short_c1.ndjson.gz")
    counts = pts["metric"].value_counts()
    assert counts["iterations"] == 24 and counts["checks"] == 24
    assert not pts["metric"].str.startswith("http_req").any()
    assert str(pts["ts"].dt.tz) == "UTC"


def test_ramp_dropped_iterations_in_sample():
    import inferlab

    run = inferlab.load_run("20261126T214243Z-url-h200-stress")
    pts = run.points
    ramp = pts[pts["cell_id"] == "short-rate20to600"]
    assert ramp.loc[ramp["metric"] == "dropped_iterations", "value"].sum() == 2974
    assert (run.requests["cell_id"] == "short-rate20to600").sum() == 24920


@pytest.mark.parametrize(("name", "chunk_bytes"), [("k6-1.1.0/short_c1.ndjson.gz", None),
                                                    ("k6-1.1.0/short_c1.ndjson.gz", 777),
                                                    ("k6-1.1.0-workload/mt-poisson-at20.ndjson.gz", None)])
def test_one_pass_gives_both_tables_as_the_two_readers_do(fixtures, name, chunk_bytes):
    """read_k6_tables (a capacity step reads both) is the two readers' frames and line
    accounting from one pass, in whatever chunks."""
    from inferlab.ingest import read_k6_tables

    path, kw = fixtures / name, {"chunk_bytes": chunk_bytes} if chunk_bytes else {}
    req, pts = read_k6_tables(path, **kw)
    for got, want in ((req, read_k6(path, **kw)), (pts, read_k6_points(path, **kw))):
        pd.testing.assert_frame_equal(got, want)
        assert got.attrs["ingest"] == want.attrs["ingest"]
    assert len(req) and len(pts)
