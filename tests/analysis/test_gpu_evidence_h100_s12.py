"""One H100, session 12 (data/gpu-evidence/2026-12-05-h100-s12, its README): a certified p99
search at the default cap (20,000 requests a step), cut by the device call's limit, and a 3+3
A/A of detailed traces (untraced vs ``--collect-detailed-traces all``), both made by the product
on the GPU host. Re-read here with the product's verifier, capacity judge and comparison from
the shipped raw files (read-only); the figures the README and docs quote are asserted."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest

from inferlab.analysis.capacity_steps import partial_record, replay
from inferlab.analysis.compare import compare_comparison
from inferlab.runs.reader import Run
from inferlab.runs.verify import verify_run
from inferlab.specs import LoadSpec

from .evidence import link_workspace

D = Path(__file__).resolve().parents[2] / "data" / "gpu-evidence" / "2026-12-05-h100-s12"
CAP = D / "cap-1/ws/data/runs/20261205T113207Z-local-cap-1"
AA = D / "traces-aa" / "ws" / "data"
C = "20261205T114148Z-local-ab-gpu-detailed-traces"
KEYS = ("rate", "phase", "decision", "n ttft_ms", "t ttft_ms", "n e2e_ms", "t e2e_ms", "inflation",
        "ttft_ms share bounds")


@pytest.mark.parametrize("run_dir", [CAP, *sorted((AA / "runs").iterdir())], ids=lambda p: p.name)
def test_every_run_verifies_but_its_gzipped_engine_log_which_restores_the_recorded_bytes(run_dir):
    assert sorted((p.kind, p.path) for p in verify_run(run_dir)) == [
        ("missing", "engine/engine.log"), ("unrecorded", "engine/engine.log.gz")]
    entry = next(f for f in json.loads((run_dir / "run.json").read_text())["files"] if f["path"] == "engine/engine.log")
    raw = gzip.decompress((run_dir / "engine/engine.log.gz").read_bytes())
    assert hashlib.sha256(raw).hexdigest() == entry["sha256"]


@pytest.mark.slow
def test_the_cut_search_makes_no_claim_and_reproduces_step_by_step():
    run = Run(CAP)
    rec = run.capacity
    assert rec["certified_rate"] is None and rec["claim"].startswith("no claim")
    assert rec["explore_bracket"] == [234.75, 245.14] and rec["config"]["cap_requests"] == 20000
    assert rec["open_step"]["rate"] == 191.91 and rec["open_step"]["looks_done"] == 4
    again = partial_record(replay(run), LoadSpec.model_validate(run.manifest.spec), rec["stop_reason"])
    assert [[s.get(k) for k in KEYS] for s in again["steps"]] == [[s.get(k) for k in KEYS] for s in rec["steps"]]


def test_its_claim_step_passed_only_at_the_fifth_look_with_no_violation_at_all():
    """0.7 x the guess, 167.92 req/s: 0 TTFT violations of 19,970, yet the bound reached 0.93 %
    (allowed 1 %) only at the cap: the floor of the variance inflation (D 46.6) makes 20,000
    requests worth ~430 independent ones. Its looks are INVALID (latency drifts in the window)."""
    step = next(s for s in Run(CAP).capacity["steps"] if s["phase"] == "certify")
    assert (step["rate"], step["decision"], step["n ttft_ms"], step["t ttft_ms"]) == (167.92, "pass", 19970, 0)
    assert step["inflation"]["ttft_ms"] == pytest.approx(46.63, abs=0.01)
    assert step["ttft_ms share bounds"] == "[0.00%, 0.93%]" and len(step["cells"]) == 5
    assert step["validity"] == "INVALID" and step["validity_reasons"].count("stationarity") == 3


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERLAB_HOME", str(link_workspace(tmp_path, AA)))


def test_detailed_traces_aa_finds_no_difference_at_1_vu_and_gives_no_verdict_on_invalid_64_vu_data(home):
    res, _ = compare_comparison(C)
    row = lambda cell, m: res[(res["cell"] == cell) & (res["metric"] == m)].iloc[0]  # noqa: E731
    one = row("short-c1", "throughput")
    assert (round(one["ratio"], 2), round(one["ci_low_adj"], 2), round(one["ci_high_adj"], 2)) == (1.0, 0.65, 1.54)
    assert one["verdict"] == "no significant difference"
    many = row("short-c64", "throughput")
    # recorded 1.08; session 14's window corrections (analysis/window.py) moved it
    assert round(many["ratio"], 2) == 1.07 and many["validity"] == "INVALID"
    assert many["verdict"].startswith("no verdict: INVALID data") and "stationarity" in many["verdict"]
