"""One certified capacity search on this workspace's CPU engine with the full default grid
(data/capacity-evidence/2026-12-05-local-cpu-s11, its README), re-read with the product's own
verifier and search from the shipped raw files (read-only): every recorded step reproduces, the
claim is what the README says, and the violations that came in bursts at rates below passing
steps leave the boundary unlocated."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from inferlab.report.capacity import front_line, invalid_under_claim

from .evidence import shipped_search

D = Path(__file__).resolve().parents[2] / "data" / "capacity-evidence" / "2026-12-05-local-cpu-s11"
RUN = D / "runs" / "20261205T070218Z-local-cap-i"
KEYS = ("rate", "phase", "decision", "n e2e_ms", "t e2e_ms", "inflation", "e2e_ms share bounds", "validity")
# (rate, decision, e2e violations, requests) of each certification step, as the README's table
CERT = [(2.38, "pass", 0, 640), (2.72, "pass", 0, 800), (2.93, "undecided", 15, 800), (3.13, "undecided", 20, 800),
        (3.27, "pass", 0, 800), (3.4, "pass", 0, 801), (3.54, "pass", 0, 800), (3.68, "pass", 0, 800),
        (3.81, "undecided", 39, 800), (3.95, "pass", 0, 800)]


def test_the_search_verifies_reproduces_and_certifies_what_the_readme_says():
    run, rec, again = shipped_search(RUN)
    assert [[s.get(k) for k in KEYS] for s in again["steps"]] == [[s.get(k) for k in KEYS] for s in rec["steps"]]
    cert = [s for s in rec["steps"] if s["phase"] == "certify"]
    assert [(s["rate"], s["decision"], s["t e2e_ms"], s["n e2e_ms"]) for s in cert] == CERT
    assert rec["certified_rate"] == again["certified_rate"] == 2.72  # fixed sequence stops at 2.93's non-pass
    # violations at 2.93, 3.13 and 3.81 with every step between passing: no crossing to fit
    assert np.isnan(again["boundary"]) and (again["interval_low"], again["interval_high"]) == (0.0, np.inf)
    assert [s["rate"] for s in invalid_under_claim(rec)] == [2.38]
    assert front_line(rec).endswith("1 of the 2 certification steps it rests on holds an INVALID look.")
