"""Two certified capacity searches of one configuration on this workspace's CPU engine, 30
minutes apart on fresh engines (data/capacity-evidence/2026-12-05-local-cpu-s10, its README),
re-read with the product's own verifier and search from the shipped raw files (read-only):
every recorded step reproduces, both certify a rate, and what the README and docs/capacity.md
quote is asserted here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inferlab.report.capacity import front_line, headline, invalid_under_claim
from inferlab.runs.reader import Run

from .evidence import judged_again, shipped_search

D = Path(__file__).resolve().parents[2] / "data" / "capacity-evidence" / "2026-12-05-local-cpu-s10"
RUNS = {p.name.rsplit("-local-", 1)[1]: p for p in sorted((D / "runs").iterdir()) if p.is_dir()}
KEYS = ("rate", "phase", "decision", "n e2e_ms", "t e2e_ms", "inflation", "e2e_ms share bounds")
# (rate, decision, e2e violations, requests) of each certification step, as the README's table
CERT = {
    "cap-g": [(2.63, "pass", 0, 800), (3.01, "pass", 0, 800), (3.46, "pass", 0, 640), (3.76, "fail", 137, 160),
              (4.06, "fail", 145, 160)],
    "cap-h": [(2.51, "pass", 0, 800), (2.86, "pass", 0, 640), (3.29, "pass", 0, 800), (3.58, "pass", 4, 800),
              (3.87, "undecided", 20, 800)],
}
CERTIFIED = {"cap-g": 3.46, "cap-h": 3.58}
INTERVAL = {"cap-g": (3.57, 0.0, np.inf), "cap-h": (None, 0.0, np.inf)}  # (boundary, low, high) re-judged; None: not located


def _cert(rec: dict) -> list[dict]:
    return [s for s in rec["steps"] if s["phase"] == "certify"]


@pytest.mark.parametrize("label", sorted(CERT))
def test_each_search_verifies_reproduces_and_certifies_what_the_readme_says(label):
    run, rec, again = shipped_search(RUNS[label])
    assert [[s.get(k) for k in KEYS] for s in again["steps"]] == [[s.get(k) for k in KEYS] for s in rec["steps"]]
    assert [(s["rate"], s["decision"], s["t e2e_ms"], s["n e2e_ms"]) for s in _cert(rec)] == CERT[label]
    assert rec["certified_rate"] == again["certified_rate"] == CERTIFIED[label]
    assert headline(rec).startswith(f"**Certified: at least {CERTIFIED[label]} req/s")
    b, lo, hi = INTERVAL[label]
    assert (round(again["interval_low"], 2), round(again["interval_high"], 2)) == (lo, hi)
    assert np.isnan(again["boundary"]) if b is None else round(again["boundary"], 2) == b


def test_the_two_searches_agree_on_where_the_boundary_lies():
    """Both certify; every certification step that passed ran below every one that failed."""
    steps = [s for label in CERT for s in _cert(Run(RUNS[label]).capacity)]
    passed = [s["rate"] for s in steps if s["decision"] == "pass"]
    failed = [s["rate"] for s in steps if s["decision"] == "fail"]
    assert max(passed) < min(failed)
    assert (max(passed), min(failed)) == (3.58, 3.76)


def test_a_claim_resting_on_invalid_steps_says_so_on_the_front_page():
    """cap-g's claim rests on three certification steps; 2.63 req/s holds two INVALID looks (send
    lag p99 above 10 ms, and arrivals off their schedule), 3.46 one (send lag): k6 and the engine
    share 2 cores. The claim stands, and the front line and headline say what it rests on; the
    replay reproduces those verdicts."""
    run = Run(RUNS["cap-g"])
    rec, again = run.capacity, judged_again(run)
    assert [s["rate"] for s in invalid_under_claim(again)] == [s["rate"] for s in invalid_under_claim(rec)] == [2.63, 3.46]
    assert front_line(rec).endswith("2 of the 3 certification steps it rests on hold an INVALID look.")
    assert "**2 of the 3 certification steps the claim rests on hold an INVALID look** (2.63, 3.46 req/s; " \
           "checks: arrivals, send_lag_p99)" in headline(rec)
    h = Run(RUNS["cap-h"]).capacity
    assert invalid_under_claim(h) == [] and "INVALID look" not in front_line(h) + headline(h)
