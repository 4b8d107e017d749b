"""One H200, session 10 (data/gpu-evidence/2026-12-05-h200-s10, its README): two complete
certified capacity searches at p99 TTFT and TPOT, and a complete 3+3 CUDA graphs vs eager A/B
with energy per good token, all made by the product on the GPU host. Re-read here with the
product's own verifier, capacity judge, comparison and energy code from the shipped raw files
(read-only); the figures the README and docs quote are asserted."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from inferlab.analysis.capacity_steps import read_segment
from inferlab.analysis.compare import compare_comparison
from inferlab.analysis.energy import energy_cell_metrics
from inferlab.analysis.step_decision import variance_inflation
from inferlab.report.capacity import front_line, headline
from inferlab.runs.reader import Run
from inferlab.runs.verify import verify_run

from .evidence import judged_again, link_workspace

D = Path(__file__).resolve().parents[2] / "data" / "gpu-evidence" / "2026-12-05-h200-s10"
CAP = {"cap-1": D / "cap-1/ws/data/runs/20261205T033905Z-local-cap-1",
       "cap-2": D / "cap-2/ws/data/runs/20261205T034456Z-local-cap-2"}
AB = D / "ab" / "ws" / "data"
C = "20261205T034923Z-local-ab-gpu-graphs-vs-eager"
KEYS = ("rate", "phase", "decision", "n ttft_ms", "t ttft_ms", "n e2e_ms", "t e2e_ms", "inflation",
        "ttft_ms share bounds")
# (rate, decision, TTFT violations, requests) of each certification step, as the README's table
CERT = {
    "cap-1": [(435.55, "pass", 0, 996), (497.77, "pass", 0, 993), (535.1, "pass", 0, 1987),
              (572.44, "undecided", 0, 3965), (597.33, "undecided", 0, 3950), (622.21, "undecided", 22, 3964),
              (647.1, "fail", 866, 991), (671.99, "fail", 782, 989), (696.88, "fail", 994, 2956),
              (721.77, "fail", 834, 992)],
    "cap-2": [(435.55, "pass", 0, 1988), (497.77, "pass", 0, 1986), (535.1, "pass", 0, 992),
              (572.44, "pass", 0, 992), (597.33, "pass", 0, 987), (622.21, "pass", 0, 988),
              (647.1, "undecided", 278, 3965), (671.99, "fail", 657, 989), (696.88, "fail", 951, 985),
              (721.77, "fail", 878, 986)],
}


def _all_runs() -> list[Path]:
    return [*CAP.values(), *sorted((AB / "runs").iterdir())]


@pytest.mark.parametrize("run_dir", _all_runs(), ids=lambda p: p.name)
def test_every_run_verifies_but_its_gzipped_engine_log_which_restores_the_recorded_bytes(run_dir):
    """Only engine/engine.log was gzipped for size (README, "What is left out"); gunzip gives
    back the bytes run.json records."""
    assert sorted((p.kind, p.path) for p in verify_run(run_dir)) == [
        ("missing", "engine/engine.log"), ("unrecorded", "engine/engine.log.gz")]
    entry = next(f for f in json.loads((run_dir / "run.json").read_text())["files"] if f["path"] == "engine/engine.log")
    raw = gzip.decompress((run_dir / "engine/engine.log.gz").read_bytes())
    assert len(raw) == entry["bytes"] and hashlib.sha256(raw).hexdigest() == entry["sha256"]


@pytest.mark.parametrize("label", sorted(CERT))
def test_each_search_is_complete_certified_and_its_steps_are_the_readmes(label):
    rec = Run(CAP[label]).capacity
    assert rec["complete"] is True and rec["judged"] == ["ttft_ms", "tpot_ms", "e2e_ms"] and rec["unmeasured"] == []
    assert rec["slo"] == {"ttft_ms": 500.0, "ttft_p": 99.0, "tpot_ms": 50.0, "tpot_p": 99.0, "e2e_ms": 2000.0,
                          "e2e_p": 95.0, "error_rate": 0.01}
    cert = [(s["rate"], s["decision"], s["t ttft_ms"], s["n ttft_ms"]) for s in rec["steps"] if s["phase"] == "certify"]
    assert cert == CERT[label]
    # no step broke TPOT: TTFT binds throughout
    assert all(s["t tpot_ms"] == 0 for s in rec["steps"] if s["phase"] == "certify") and rec["binding"] == "ttft_ms"
    certified = {"cap-1": 535.1, "cap-2": 622.21}[label]
    assert rec["certified_rate"] == certified
    assert headline(rec).startswith(f"**Certified: at least {certified} req/s with p99 ttft_ms <= 500 and "
                                    "p99 tpot_ms <= 50 and p95 e2e_ms <= 2000, 95% confidence.**")
    # the boundary fit cannot bound the boundary on these steps: said, not hidden
    assert (rec["interval_low"], rec["interval_high"]) == (0.0, np.inf)
    assert round(rec["boundary"]) == {"cap-1": 584, "cap-2": 638}[label]
    assert "boundary interval [0, inf]" in front_line(rec)


@pytest.mark.slow
def test_search_one_reproduces_step_by_step_and_its_boundary_interval_is_now_bounded():
    """Every step of cap-1 rebuilt from its cells' k6 files and spans by the current judge: the
    same steps and claim. Its boundary is not the recorded one: the product that recorded it cut
    the 535.1 req/s cert step out of the fit (0.86 x 622.214 = 535.104, held as 535.1, fell under a
    cut at exactly 0.86 x guess) and let TPOT's fit, which saw no violation at all, set the
    interval's low end to 0. Both fixed (analysis/certify.py boundary_interval; tests in
    test_certify.py): 590.7 req/s, 95 % interval [374.4, 628.7], not 584 and [0, inf]. cap-2's is
    unchanged (638, [0, inf]): `readings/read.py` re-judges both."""
    run = Run(CAP["cap-1"])
    again = judged_again(run)
    assert [[s.get(k) for k in KEYS] for s in again["steps"]] == [[s.get(k) for k in KEYS] for s in run.capacity["steps"]]
    assert again["certified_rate"] == 535.1 and again["claim"] == run.capacity["claim"]
    assert (round(run.capacity["boundary"], 1), run.capacity["interval_low"], run.capacity["interval_high"]) == \
        (584.0, 0.0, np.inf)
    assert (round(again["boundary"], 1), round(again["interval_low"], 1), round(again["interval_high"], 1)) == \
        (590.7, 374.4, 628.7)


def test_cap_1_572_is_undecided_with_no_violation_because_its_slowest_ttfts_cluster():
    """cap-1 at 572.44 req/s: 0 TTFT violations in 3,965 requests, yet undecided: the floor of
    the variance inflation (the 50 largest TTFTs, batches inside looks) reads D = 47.4, which
    leaves ~84 effective requests and an upper bound of 4.47 % against the 1 % allowed."""
    run = Run(CAP["cap-1"])
    cells = [c for c in run.manifest.cells if c.cell_id == "short-at572p44" or c.cell_id.startswith("short-at572p44-r")]
    segs = [read_segment(run.dir, run.run_id, c, 3.0) for c in cells]
    win = pd.concat([s.window for s in segs], ignore_index=True)
    ttft = win["ttft_ms"].to_numpy()
    assert len(ttft) == 3965 and int((ttft > 500).sum()) == 0
    ends = np.cumsum([len(s.window) for s in segs]).tolist()
    assert variance_inflation(ttft, ttft > 500, 500.0, ends=ends) == pytest.approx(47.42, abs=0.01)
    # what the floor reads: the largest TTFTs (at or above half the bound, none above 300 ms) all
    # lie in the first look, whose p99 stands well above the other three looks'
    big = np.flatnonzero(ttft >= 250)
    assert len(big) and big.max() < ends[0] and ttft.max() < 300
    p99 = [float(np.percentile(s.window["ttft_ms"], 99)) for s in segs]
    assert p99[0] > 280 and max(p99[1:]) < 170
    # the judged windows at these rates are short: ~1.7 s a look (1,000 requests at 572 req/s)
    spans = [(s.window["start_ts"].iloc[-1] - s.window["start_ts"].iloc[0]).total_seconds() for s in segs]
    assert all(1.5 < x < 1.9 for x in spans)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERLAB_HOME", str(link_workspace(tmp_path, AB)))
    return tmp_path


def test_ab_verdicts_ratios_and_intervals_as_reported(home):
    res, _ = compare_comparison(C)
    row = res.set_index(["cell", "metric"])
    # (ratio graphs/eager, Holm-adjusted interval) as the README's table reports them
    expect = {
        ("short-c1", "throughput"): (6.69, 6.34, 7.05),
        ("short-c1", "latency_p50"): (0.15, 0.14, 0.16),
        ("short-c1", "j_per_token"): (0.19, 0.18, 0.20),
        ("short-c1", "j_per_good_request"): (0.19, 0.18, 0.20),
        ("short-c64", "throughput"): (3.71, 3.47, 3.96),
        ("short-c64", "latency_p99"): (0.29, 0.26, 0.31),
        ("short-c64", "j_per_token"): (0.34, 0.29, 0.39),
        ("short-c64", "j_per_good_request"): (0.34, 0.28, 0.41),
    }
    for key, (ratio, lo, hi) in expect.items():
        r = row.loc[key]
        assert (round(r["ratio"], 2), round(r["ci_low_adj"], 2), round(r["ci_high_adj"], 2)) == (ratio, lo, hi), key
        assert r["verdict"] == "better" and r["validity"] == "VALID", key
    assert row.loc[("short-c1", "latency_p99"), "verdict"].startswith("no verdict: a repeat has < 100 window requests")


def test_answer_check_counts(home):
    from inferlab.report.answers import answer_lines

    text = "\n".join(answer_lines(C))
    assert "A/B differ on 16 of 32 prompts" in text
    assert "control (A against A) differ on 3 of 32 prompts" in text


def test_energy_per_token_of_each_side(home):
    per = {}
    for r in sorted((AB / "runs").iterdir()):
        m = energy_cell_metrics(Run(r))
        per.setdefault(r.name[-1], []).append((m["short-c1"]["j_per_token"], m["short-c64"]["j_per_token"]))
    eager, graphs = np.array(per["a"]), np.array(per["b"])
    assert len(eager) == len(graphs) == 3
    assert np.round(eager.mean(axis=0), 3).tolist() == [1.076, 0.021]
    assert np.round(graphs.mean(axis=0), 3).tolist() == [0.207, 0.007]


def test_the_load_test_report_of_a_graphs_repeat_plots_power_and_energy_beside_throughput():
    """readings/load-test-<run>.html is `inferlab report --runs <run>` of the graphs side's first
    repeat: its energy section (report.energy.section) is the method, the per-cell table and the
    throughput / power / J-per-token figure; the table's figures are the ones the HTML shows."""
    import matplotlib.figure

    from inferlab.analysis.energy import cell_energy
    from inferlab.report.energy import section

    run = Run(AB / "runs" / "20261205T035031Z-local-gpu-graphs-vs-eager-b")
    e = cell_energy(run).set_index("cell_id")
    assert e["method"].tolist() == ["energy counter", "energy counter"]
    assert np.round(e["j_per_token"], 3).tolist() == [0.208, 0.008]
    assert np.round(e["mean_power_w"], 1).tolist() == [167.0, 189.7]
    parts = list(section(run))
    assert len(parts) == 3 and isinstance(parts[2], matplotlib.figure.Figure)
    html = (D / "readings" / "load-test-20261205T035031Z-local-gpu-graphs-vs-eager-b.html").read_text()
    energy = html[html.index('id="GPU-power-and-energy-per-token"'):html.index('id="Span-cross-checks"')]
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", energy)
    assert energy.count("data:image/png") == 1 and "0.208" in cells and "0.008" in cells
