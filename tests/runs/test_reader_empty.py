"""A run cut before its first answer: its tables keep their columns, and the comparison reads it.

Regression: an A/B's repeat SIGTERMed while its first cell had sent requests but none had ended
gave ``Run.requests`` only ``run_id, cell_id``, and ``repeat_table`` failed on the missing
``ok`` column (CI at f860fea, tests/sweep/test_ab.py's SIGTERM test, by timing)."""
from __future__ import annotations

from datetime import UTC, datetime

import inferlab
from inferlab.analysis.compare import repeat_table
from inferlab.ingest.k6 import REQUEST_COLUMNS
from inferlab.runs.manifest import CellRecord, HostInfo, Manifest, TargetInfo, Versions
from inferlab.paths import runs_dir
from inferlab.runs.store import RunWriter


def _cut_run(run_id: str) -> str:
    m = Manifest(run_id=run_id, kind="sweep", label="cut", created_at=datetime(2026, 12, 4, tzinfo=UTC),
                 status="running", target=TargetInfo(kind="local", base_url="http://127.0.0.1:9", model="smollm2"),
                 versions=Versions(inferlab="test", python="3"),
                 host=HostInfo(hostname="synthetic", cpu_model="synthetic", cores=2, utc_offset_minutes=0),
                 cells=[CellRecord(cell_id="short-c1", payload="short", executor="shared-iterations", vus=1,
                                   iterations=4, status="running"),
                        CellRecord(cell_id="short-c2", payload="short", executor="shared-iterations", vus=2,
                                   iterations=8, status="pending")])
    w = RunWriter.create(runs_dir() / run_id, m)
    w.write_bytes("cells/short-c1/k6.ndjson", b"")  # k6 started, no request ended
    w.finish("partial")
    return run_id


def test_a_run_with_no_request_has_the_request_columns_and_compares_as_never_ran(workspace):
    run = inferlab.load_run(_cut_run("20261204T000000Z-local-cut"))
    req = run.requests
    assert req.empty and {*REQUEST_COLUMNS, "phase", "run_id", "cell_id"} <= set(req.columns)
    assert req["start_ts"].dt.tz is not None and req["ok"].dtype == bool  # typed as a full table
    rows = repeat_table(run, "tuned", 5000.0)
    assert list(rows["cell_id"]) == ["short-c1", "short-c2"]
    assert list(rows["requests"]) == [0, 0] and list(rows["throughput"]) == [0.0, 0.0]
    assert list(rows["never_ran"]) == [1, 1]
