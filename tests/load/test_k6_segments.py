"""k6 execution segments with the REAL k6 binary: one cell split over processes, outputs per
segment, merged by the run loader. The target is a closed port, so requests fail fast and
no engine is needed; the split itself is what is checked."""

import gzip

import pytest

from inferlab.load.k6 import combined_exit_code, execution_segments, k6_argv, run_cell
from inferlab.specs import SpecError, builtin_spec, load_spec, plan_cells
from inferlab.runs.layout import segment_files, segment_name


def test_segments_and_names():
    assert execution_segments(1) == (["0:1"], "0,1")
    assert execution_segments(3) == (["0:1/3", "1/3:2/3", "2/3:1"], "0,1/3,2/3,1")
    assert segment_name("k6.ndjson.gz", 0, 2) == "k6.seg1of2.ndjson.gz"
    assert segment_name("k6-summary.json", 1, 2) == "k6-summary.seg2of2.json"
    assert segment_files(0, 1) == {"ndjson": "k6.ndjson.gz", "summary": "k6-summary.json", "log": "k6.log"}
    argv = k6_argv("k6", {"ndjson": "a", "summary": "b"}, "s.js", 1, 2)
    assert argv[argv.index("--execution-segment") + 1] == "1/2:1"
    assert "--execution-segment" not in k6_argv("k6", {"ndjson": "a", "summary": "b"}, "s.js", 0, 1)


def test_more_segments_than_vus_is_a_spec_error():
    with pytest.raises(SpecError, match="k6_segments=2 exceeds the fewest VUs of a cell"):
        load_spec(builtin_spec("ci-tiny"), {"k6_segments": 2})


def test_combined_exit_code():
    assert combined_exit_code([0, 0]) == 0
    assert combined_exit_code([0, 99]) == 99
    assert combined_exit_code([99, 107]) == 107
    assert combined_exit_code([0, None]) == -1


@pytest.mark.parametrize("n", [1, 2])
def test_real_k6_splits_a_cell(tmp_path, n):
    spec = load_spec(builtin_spec("ci-tiny"), {"k6_segments": n, "concurrency": [2], "min_iterations": 10,
                                               "warmup_requests": 0})
    cell = plan_cells(spec)[0]
    result = run_cell(spec, cell, "http://127.0.0.1:1", None, tmp_path)
    counts = []
    for i in range(n):
        f = segment_files(i, n)
        assert (tmp_path / f["summary"]).is_file() and (tmp_path / f["log"]).is_file()
        counts.append(gzip.decompress((tmp_path / f["ndjson"]).read_bytes()).count(b'"metric":"http_reqs","type":"Point"'))
    assert sum(counts) == cell.iterations == result.requests_seen == 10
    assert counts == [10 // n] * n  # equal segments of a shared-iterations cell
    assert not list(tmp_path.glob(".*partial"))
