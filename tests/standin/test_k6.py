"""The real k6 against the stand-in through the project's own cell runner (load/k6.py): a short
closed-loop cell whose request count, ids and tokens agree with the server's ground truth."""

import gzip
import json

from inferlab.load.k6 import REQUEST_MARK, run_cell
from inferlab.specs import builtin_spec, load_spec, plan_cells
from inferlab.standin import StandIn


def test_a_closed_loop_k6_cell_is_counted_by_the_standin(tmp_path):
    spec = load_spec(builtin_spec("ci-tiny"), {"concurrency": [4], "min_iterations": 12, "warmup_requests": 2})
    cell = plan_cells(spec)[0]
    with StandIn(slots=2, tpot_ms=5, api_key="k6-key") as s:
        result = run_cell(spec, cell, s.base_url, s.api_key, tmp_path, run_id="run9")
        st = s.stats()
    assert result.exit_code == 0, result.stderr_tail
    lines = gzip.decompress((tmp_path / "k6.ndjson.gz").read_bytes()).splitlines()
    assert sum(REQUEST_MARK in ln for ln in lines) == result.requests_seen == st.completed == st.arrived
    measured = sorted(r.request_id for r in st.requests if ".m" in r.request_id)
    assert measured == sorted(f"run9.{cell.cell_id}.m{i}" for i in range(cell.iterations))
    assert len(st.requests) - len(measured) == 4  # warm-up: a full round of the cell's 4 VUs
    assert st.max_running == 2 and st.rejected == 0
    tokens = sum(json.loads(ln)["data"]["value"] for ln in lines
                 if b'"metric":"completion_tokens","type":"Point"' in ln)
    assert tokens == sum(r.completion_tokens for r in st.requests) == st.completed * 16
