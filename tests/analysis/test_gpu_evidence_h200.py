"""The one-H200 A/B evidence (data/gpu-evidence/2026-12-04-h200-product-runs/ab: CUDA graphs vs
--enforce-eager, smollm2, 2 complete pairs + a cut third) re-read with the product's own loader,
verifier and comparison: a change to the readers, the repeat folding or the interval that would
alter the figures its README reports fails here. Uses the shipped files only (read-only)."""
from pathlib import Path

import pytest

from inferlab.analysis.compare import compare_comparison
from inferlab.runs.reader import Run
from inferlab.runs.verify import verify_run

from .evidence import link_workspace

D = Path(__file__).resolve().parents[2] / "data" / "gpu-evidence" / "2026-12-04-h200-product-runs" / "ab" / "ws" / "data"
C = "20261204T084102Z-local-ab-gpu-graphs-vs-eager"
CUT = "20261204T085001Z-local-gpu-graphs-vs-eager-b"  # the third B run, killed mid-cell by the call limit


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERLAB_HOME", str(link_workspace(tmp_path, D)))
    return tmp_path


def test_every_finished_run_verifies_and_the_cut_one_shows_its_unrecorded_files():
    for r in sorted((D / "runs").iterdir()):
        problems = verify_run(r)
        if r.name == CUT:  # killed while writing: files on disk the manifest never recorded
            assert problems and {p.kind for p in problems} == {"unrecorded"}
        else:
            assert problems == [], r.name


def test_ratios_and_intervals_as_reported(home):
    res, _ = compare_comparison(C)
    row = res.set_index(["cell", "metric"])
    # (ratio tuned/baseline, Holm-adjusted interval) as the README's table reports them
    expect = {
        ("short-c1", "throughput"): (7.51, 5.23, 10.78),
        ("short-c1", "latency_p50"): (0.134, 0.05, 0.33),
        ("short-c1", "j_per_token"): (0.157, 0.08, 0.29),
        ("short-c64", "latency_p50"): (0.380, 0.00, 56.94),
        ("short-c64", "latency_p95"): (0.279, 0.02, 3.92),
        ("short-c64", "j_per_token"): (0.368, 0.00, 2210.07),
    }
    for key, (ratio, lo, hi) in expect.items():
        r = row.loc[key]
        assert r["ratio"] == pytest.approx(ratio, abs=0.005), key
        assert round(r["ci_low_adj"], 2) == pytest.approx(lo, abs=0.011), key
        assert round(r["ci_high_adj"], 2) == pytest.approx(hi, rel=0.002), key
    # 2 complete repeats on the tuned side: the verdict rule (3 a side) withholds every verdict
    # (short-c1 is INVALID besides: its latency drifts across the window in 3 repeats)
    assert res["verdict"].str.startswith("no verdict").all()
    assert (res.loc[res["cell"] == "short-c64", "verdict"] == "no verdict: 2 repeats on a side (a verdict needs 3)").all()


def test_answer_check_counts(home):
    from inferlab.report.answers import answer_lines

    text = "\n".join(answer_lines(C))
    assert "A/B differ on 14 of 32 prompts" in text
    assert "control (A against A) identical on all 32 prompts" in text


def test_energy_per_token_of_the_complete_runs(home):
    from inferlab.analysis.energy import energy_cell_metrics

    a = energy_cell_metrics(Run(D / "runs" / "20261204T084102Z-local-gpu-graphs-vs-eager-a"))
    b = energy_cell_metrics(Run(D / "runs" / "20261204T084359Z-local-gpu-graphs-vs-eager-b"))
    assert a["short-c1"]["j_per_token"] == pytest.approx(2.174, abs=0.001)
    assert b["short-c1"]["j_per_token"] == pytest.approx(0.326, abs=0.001)
    assert a["short-c64"]["j_per_token"] == pytest.approx(0.0371, abs=0.0001)
    assert b["short-c64"]["j_per_token"] == pytest.approx(0.0150, abs=0.0001)
