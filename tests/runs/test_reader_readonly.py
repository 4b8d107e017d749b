"""Reading a run never rewrites it (issue 18 item 2): a read-only copy of the sample plus a stale
``running`` run (its writer is gone) is loaded through the public reader; every file's bytes and
mtime stay as they were. The stale run shows as interrupted; only ``reconcile`` records it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import warnings
from pathlib import Path

import pytest

import inferlab
from inferlab.runs.store import INTERRUPTED, reconcile

STALE = "20261204T000000Z-local-stale-running"
SOURCE = "20261127T104711Z-local-prefix-cache-b"  # a small one-cell local run
TABLES = ("requests", "points", "summary", "probe", "probe_gaps", "gpus", "gpu", "host", "spans", "edge", "series",
          "server", "prometheus_meta", "workload", "capacity", "data_quality")
# every table is read for one run of each kind (reading all 41 takes ~25 s on 2 cores); every
# run is listed, opened and verified
EVERY_TABLE = ("20261126T205944Z-url-h200-tuned-cudagraphs", "20261127T082345Z-local-capacity-local-1",
               "20261127T110659Z-local-edge-ratelimit", "20261127T115936Z-local-alerts-overload",
               "20261127T121016Z-local-trace-timing-quiet", STALE)


def stale_running_run(runs_dir: Path) -> Path:
    """A copy of a sample run as its writer left it when killed mid-cell: status ``running``, a
    writer pid that cannot exist (above Linux's pid_max), the cell's files not recorded yet."""
    d = runs_dir / STALE
    shutil.copytree(runs_dir.parent / "sample" / SOURCE, d)
    m = json.loads((d / "run.json").read_text())
    m.update(run_id=STALE, status="running", ended_at=None,
             writer={"pid": 2**22 + 1, "hostname": socket.gethostname(), "process_started": 0.0})
    m["cells"][0]["status"] = "running"
    m["files"] = [f for f in m["files"] if not f["path"].startswith("cells/")]
    (d / "run.json").chmod(0o644)
    (d / "run.json").write_text(json.dumps(m, indent=2) + "\n")
    return d


def snapshot(root: Path) -> dict[str, tuple[bytes, int] | int]:
    """Every file's bytes and mtime, every directory's mtime (a file created or removed shows)."""
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) if p.is_file() else p.stat().st_mtime_ns
            for p in sorted(root.rglob("*"))}


@pytest.fixture
def readonly_data(workspace):
    data = workspace / "data"
    stale_running_run(data / "runs")
    subprocess.run(["chmod", "-R", "a-w", str(data)], check=True)
    yield data
    subprocess.run(["chmod", "-R", "u+w", str(data)], check=True)  # let tmp_path be cleaned


def test_reading_every_run_changes_nothing(readonly_data):
    before = snapshot(readonly_data)
    runs = inferlab.list_runs()
    assert len(runs) == len(os.listdir(readonly_data / "sample")) - 2 + 1  # less README.md, comparisons/
    stale = runs.set_index("run_id").loc[STALE]
    assert stale["status"] == INTERRUPTED and f"`inferlab reconcile {STALE}`" in stale["reason"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for rid in runs["run_id"]:
            run = inferlab.load_run(rid)
            assert run.verify() == [] or rid == STALE
            for name in TABLES if rid in EVERY_TABLE else ():
                getattr(run, name)
    run = inferlab.load_run(STALE)
    assert (run.status, run.manifest.status) == (INTERRUPTED, "running") and STALE in repr(run)
    assert len(run.requests) and any("interrupted (not reconciled)): read unverified" in n
                                     for q in run.data_quality["notes"] for n in q)
    assert snapshot(readonly_data) == before


def test_reconcile_is_the_explicit_step_that_records_it(readonly_data):
    d = readonly_data / "runs" / STALE
    subprocess.run(["chmod", "-R", "u+w", str(d)], check=True)
    m = reconcile(d)
    assert m.status == "partial" and "exited before finishing" in m.reason
    assert {f.path for f in m.files} >= {f"cells/{m.cells[0].cell_id}/k6.ndjson.gz"}
    run = inferlab.load_run(STALE)
    assert (run.status, run.reason) == ("partial", m.reason)
