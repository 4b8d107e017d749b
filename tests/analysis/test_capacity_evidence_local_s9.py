"""Three certified capacity searches of one configuration on this workspace's CPU engine
(data/capacity-evidence/2026-12-04-local-cpu-s9, its README), re-read with the product's own
verifier and search from the shipped raw files (read-only): every recorded step reproduces, the
claims are what the README says, and the steps agree on where the boundary lies although only
search A certified a rate. The figures its README and docs/capacity.md quote are asserted here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from inferlab.analysis.capacity_steps import read_segment
from inferlab.analysis.step_decision import variance_inflation
from inferlab.report.capacity import front_line, headline
from inferlab.runs.reader import Run

from .evidence import judged_again, shipped_search

D = Path(__file__).resolve().parents[2] / "data" / "capacity-evidence" / "2026-12-04-local-cpu-s9"
RUNS = {p.name.rsplit("-local-", 1)[1]: p for p in sorted((D / "runs").iterdir()) if p.is_dir()}
KEYS = ("rate", "phase", "decision", "n e2e_ms", "t e2e_ms", "inflation", "e2e_ms share bounds")
# (rate, decision, e2e violations, requests) of each certification step, as the README's table
CERT = {
    "cap-d": [(3.01, "pass", 0, 640), (3.31, "pass", 0, 800), (3.61, "pass", 2, 800), (3.91, "pass", 0, 800)],
    "cap-e": [(3.39, "undecided", 18, 800), (3.76, "pass", 0, 640), (4.14, "fail", 87, 160),
              (4.52, "fail", 152, 160), (4.89, "fail", 160, 160)],
    "cap-f": [(3.56, "undecided", 20, 800), (3.96, "undecided", 144, 800), (4.35, "fail", None, 160),
              (4.75, "fail", None, 160), (5.15, "fail", None, 160)],
}


def _cert(rec: dict) -> list[dict]:
    return [s for s in rec["steps"] if s["phase"] == "certify"]


@pytest.mark.parametrize("label", sorted(CERT))
def test_each_search_verifies_reproduces_and_claims_what_the_readme_says(label):
    run, rec, again = shipped_search(RUNS[label])  # every step rebuilt from its cells' raw files by the current rule
    # C ran the current rule; A and B ran it before the floor counted degrees of freedom only
    # from looks it can measure: the same decisions and counts, a larger D at three passing steps
    keys = KEYS if label == "cap-f" else KEYS[:5]
    assert [[s.get(k) for k in keys] for s in again["steps"]] == [[s.get(k) for k in keys] for s in rec["steps"]]
    moved = [(a["rate"], a["inflation"]["e2e_ms"], b["inflation"]["e2e_ms"], b["e2e_ms share bounds"])
             for a, b in zip(_cert(rec), _cert(again)) if a["inflation"] != b["inflation"]]
    assert moved == {"cap-d": [(3.01, 12.09, 15.67, "[0.00%, 9.93%]"), (3.91, 14.56, 16.0, "[0.00%, 7.72%]")],
                     "cap-e": [(3.76, 12.78, 14.04, "[0.00%, 8.94%]")], "cap-f": []}[label]
    got = [(s["rate"], s["decision"], s["t e2e_ms"], s["n e2e_ms"]) for s in _cert(rec)]
    want = CERT[label]
    assert [(r, d, n) for r, d, _, n in got] == [(r, d, n) for r, d, _, n in want]
    assert [t for (_, _, t, _), (_, _, w, _) in zip(got, want) if w is not None] == [w for *_, w, _ in want
                                                                                      if w is not None]
    certified = {"cap-d": 3.91, "cap-e": None, "cap-f": None}[label]
    assert rec["certified_rate"] == certified
    if certified is None:  # the lowest step did not pass: nothing is claimed, and the pages say so
        assert rec["claim"].startswith("no rate certified") and "Certified capacity" not in front_line(rec)
        assert headline(rec).startswith("**No rate certified")
    else:
        assert headline(rec).startswith("**Certified: at least 3.91 req/s") and rec["interval_high"] == np.inf


def test_the_searches_agree_on_where_the_boundary_lies():
    """Every certification step that passed ran at or below 3.91 req/s, every one that failed at
    or above 4.14: the boundary of this configuration that evening lies between them."""
    steps = [s for label in CERT for s in _cert(Run(RUNS[label]).capacity)]
    passed = [s["rate"] for s in steps if s["decision"] == "pass"]
    failed = [s["rate"] for s in steps if s["decision"] == "fail"]
    assert max(passed) == 3.91 and min(failed) == 4.14


def test_search_b_lowest_step_is_one_burst_in_an_invalid_look():
    """B's 3.39 req/s step: its 18 violations are consecutive requests of its first look, which
    is INVALID (k6's send lag); D from the violations themselves is 61, so the step is undecided."""
    run = Run(RUNS["cap-e"])
    cells = [c for c in run.manifest.cells if c.cell_id.startswith("short-at3p39")]
    segs = [read_segment(run.dir, run.run_id, c, 5.0) for c in cells]
    e = pd.concat([s.window for s in segs], ignore_index=True)["e2e_ms"].to_numpy()
    assert np.flatnonzero(e > 5000).tolist() == list(range(18, 36))
    assert segs[0].validity == "INVALID" and "send lag p99" in segs[0].validity_reasons[0]
    ends = np.cumsum([len(s.window) for s in segs]).tolist()
    assert variance_inflation(e, e > 5000, 5000.0, ends=ends) == pytest.approx(61.4, abs=0.05)


def test_search_c_undecided_steps_come_from_slow_looks():
    """C's 3.56 req/s step: 20 violations, all in its second look (median e2e 4,530 ms against
    3,513-4,238 ms in the others); its look spread, 10.7 %, is what the report warns about."""
    run = Run(RUNS["cap-f"])
    cells = [c for c in run.manifest.cells if c.cell_id == "short-at3p56" or c.cell_id.startswith("short-at3p56-r")]
    segs = [read_segment(run.dir, run.run_id, c, 5.0) for c in cells]
    per_look = [int((s.window["e2e_ms"] > 5000).sum()) for s in segs]
    assert per_look == [0, 20, 0, 0, 0]
    first = _cert(run.capacity)[0]
    assert first["look spread"] == pytest.approx(0.1068, abs=1e-4)
    assert "2 of 2 certification steps had a look spread" in headline(run.capacity)


def test_re_judged_by_the_fixed_fit_search_c_interval_closes():
    """Session 10 fixed the boundary fit (a cert step whose rate rounded down for k6 was cut out
    of it; a never-violated bound set the low end): re-judged, C's interval closes at [3.22,
    4.02] req/s around 3.84, and A's every-step-passing fit locates no boundary."""
    got = {}
    for label in ("cap-d", "cap-f"):
        run = Run(RUNS[label])
        rec = judged_again(run)
        got[label] = (round(rec["boundary"], 2), round(rec["interval_low"], 2), round(rec["interval_high"], 2))
    assert np.isnan(got["cap-d"][0]) and got["cap-d"][1:] == (0.0, np.inf)
    assert got["cap-f"] == (3.84, 3.22, 4.02)
