"""A target that dies mid-cell, on the stand-in server (a child process, killed with SIGKILL
while the second cell's k6 writes requests) and the real k6: the cut cell is failed with the
evidence, the run partial and intact; ``--resume`` against the server restarted re-runs that
cell, the cut attempt kept aside. The real engine's own runs are tests/e2e/test_comparison.py."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import inferlab
from inferlab.analysis.crosscheck import crosscheck
from inferlab.load.k6 import REQUEST_MARK
from inferlab.procs import free_port
from inferlab.runs.verify import verify_run
from inferlab.specs import builtin_spec, load_spec
from inferlab.standin import StandIn, StandInConfig
from inferlab.sweep.runner import run


def _kill_when(runs: Path, pattern: str, marks: int, server: StandIn, done: threading.Event, killed: list) -> None:
    """SIGKILL ``server`` once a file matching ``pattern`` under ``runs`` holds ``marks`` k6
    requests: the target dies mid-cell."""
    deadline = time.time() + 120
    while time.time() < deadline and not done.is_set():
        for p in runs.glob(pattern):
            try:
                n = p.read_bytes().count(REQUEST_MARK)
            except OSError:
                continue
            if n >= marks:
                server.proc.kill()
                killed.append(n)
                return
        time.sleep(0.05)


def test_target_killed_mid_cell_is_failed_and_resume_reruns_it(workspace, monkeypatch):
    key = "standin-key"
    monkeypatch.setenv("INFERLAB_API_KEY", key)
    server = StandInConfig(port=free_port(), api_key=key, tpot_ms=20)  # 16-token answers in ~0.3 s
    spec = load_spec(builtin_spec("ci-tiny"), {"iterations_per_vu": 10})  # short-c2: 20 requests
    runs = workspace / "data" / "runs"
    done, killed = threading.Event(), []
    with StandIn(server, process=True) as s:
        threading.Thread(target=_kill_when, args=(runs, "*/cells/short-c2/.k6.ndjson.partial", 4, s, done, killed),
                         daemon=True).start()
        try:
            rid = run(spec, target="url", base_url=s.base_url)
        finally:
            done.set()
    assert killed, "the stand-in was not killed mid-cell"
    r = inferlab.load_run(rid)
    m = r.manifest
    c1, c2 = m.cells
    assert m.status == "partial" and "target unhealthy after cell short-c2" in m.reason, m.reason
    assert c1.status == "complete" and c2.status == "failed", (c2.status, c2.reason)
    assert c2.reason.startswith("target died during the cell:") and "closing /metrics scrape failed" in c2.reason
    assert "/health did not answer 200 at the end of the cell" in c2.reason
    assert "requests failed to connect (status 0, k6 error" in c2.reason
    assert verify_run(r) == []  # every file the cut cell left is recorded
    assert not (r.dir / "cells/short-c2/metrics-after.prom").exists()

    with StandIn(server, process=True) as s:  # the server back, on the same address
        assert run(spec, target="url", base_url=s.base_url, resume=rid) == rid
    r = inferlab.load_run(rid)
    m = r.manifest
    assert m.status == "complete", m.reason
    assert [c.status for c in m.cells] == ["complete", "complete"]
    recorded = {f.path for f in m.files}
    attempt = sorted({p.split("/")[1] for p in recorded if p.startswith("cells/.short-c2.attempt-")})
    assert len(attempt) == 1 and f"cells/{attempt[0]}/k6.ndjson.gz" in recorded
    assert any(n.startswith("cell short-c2: the earlier attempt (failed: target died during the cell")
               and f"cells/{attempt[0]}/" in n for n in m.notes), m.notes
    assert {"telemetry/host-resume1.csv", "cells/short-c2/metrics-after.prom"} <= recorded
    c2 = m.cells[1]
    window = r.host[(r.host["ts"] >= c2.started_at) & (r.host["ts"] <= c2.ended_at) & (r.host["metric"] == "cpu_pct")]
    assert "k6" in set(window["process"]), "the resumed cell has no CPU samples"
    assert verify_run(r) == []
    cc = crosscheck(r)
    assert set(cc[cc.check == "requests"].scope) == {"idle", "short-c1", "short-c2"}, cc
