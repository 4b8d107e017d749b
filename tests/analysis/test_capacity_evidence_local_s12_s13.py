"""Two certified capacity searches of one configuration on this workspace's CPU engine with the
full default grid, on fresh engines 3 hours apart (data/capacity-evidence/
2026-12-05-local-cpu-s12-s13, its README), re-read with the product's own verifier and search
from the shipped raw files (read-only): every recorded step reproduces, each certifies what the
README says, and both boundary intervals are bounded and overlap: issue [R]'s local bar."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from inferlab.report.capacity import front_line, headline, invalid_under_claim
from inferlab.runs.reader import Run

from .evidence import shipped_search

D = Path(__file__).resolve().parents[2] / "data" / "capacity-evidence" / "2026-12-05-local-cpu-s12-s13"
RUNS = {p.name.rsplit("-local-", 1)[1]: p for p in sorted((D / "runs").iterdir()) if p.is_dir()}
KEYS = ("rate", "phase", "decision", "n e2e_ms", "t e2e_ms", "inflation", "e2e_ms share bounds", "validity")
# (rate, decision, e2e violations, requests) of each certification step, as the README's table
CERT = {
    "cap-j": [(2.51, "pass", 0, 160), (2.86, "pass", 0, 640), (3.08, "pass", 0, 800), (3.29, "pass", 0, 800),
              (3.44, "pass", 0, 800), (3.58, "pass", 0, 800), (3.72, "undecided", 15, 800),
              (3.87, "undecided", 51, 800), (4.01, "undecided", 67, 800), (4.15, "fail", 85, 160)],
    "cap-k": [(3.07, "pass", 0, 800), (3.51, "pass", 0, 800), (3.77, "pass", 0, 800), (4.03, "pass", 0, 800),
              (4.21, "undecided", 47, 800), (4.38, "fail", 113, 160), (4.56, "fail", 151, 160),
              (4.73, "fail", 154, 160), (4.91, "fail", 153, 160), (5.08, "fail", 158, 160)],
}
CERTIFIED = {"cap-j": 3.58, "cap-k": 4.03}
# (boundary, low, high) of the 95 % boundary interval, as recorded and re-judged, rounded to 0.01 req/s
INTERVAL = {"cap-j": (3.96, 3.88, 4.01), "cap-k": (4.19, 3.39, 4.34)}
INVALID_UNDER_CLAIM = {"cap-j": [3.44], "cap-k": [3.07]}


def _cert(rec: dict) -> list[dict]:
    return [s for s in rec["steps"] if s["phase"] == "certify"]


def _interval(rec: dict) -> tuple[float, float, float]:
    return round(rec["boundary"], 2), round(rec["interval_low"], 2), round(rec["interval_high"], 2)


@pytest.mark.parametrize("label", sorted(CERT))
def test_each_search_verifies_reproduces_and_certifies_what_the_readme_says(label):
    run, rec, again = shipped_search(RUNS[label])
    assert rec["config"]["cert_grid"] == [0.86, 0.92, 0.96, 1.0, 1.04, 1.08, 1.12, 1.16]  # the default grid
    assert rec["config"]["claim_grid"] == [0.7, 0.8]
    assert [[s.get(k) for k in KEYS] for s in again["steps"]] == [[s.get(k) for k in KEYS] for s in rec["steps"]]
    assert [(s["rate"], s["decision"], s["t e2e_ms"], s["n e2e_ms"]) for s in _cert(rec)] == CERT[label]
    assert rec["certified_rate"] == again["certified_rate"] == CERTIFIED[label]
    assert headline(rec).startswith(f"**Certified: at least {CERTIFIED[label]} req/s")
    assert _interval(rec) == _interval(again) == INTERVAL[label]
    assert [s["rate"] for s in invalid_under_claim(rec)] == INVALID_UNDER_CLAIM[label]
    n = len(INVALID_UNDER_CLAIM[label])
    if n:
        assert f"{n} of the " in front_line(rec) and "INVALID look" in front_line(rec)


def test_both_intervals_are_bounded_and_overlap():
    """The issue's local bar: two certified searches of one configuration, fresh engines at least
    30 minutes apart, whose 95 % boundary intervals overlap. Bounded ones: an interval of [0, inf]
    overlaps everything and says nothing (sessions 9-11)."""
    assert len(CERT) == 2
    engines = sorted((Run(RUNS[label]).manifest.target.process for label in CERT), key=lambda p: p["started_at"])
    gap = datetime.fromisoformat(engines[1]["started_at"]) - datetime.fromisoformat(engines[0]["stopped_at"])
    assert gap.total_seconds() >= 30 * 60  # the second engine started half an hour after the first stopped
    iv = [(rec["interval_low"], rec["interval_high"]) for rec in (Run(RUNS[label]).capacity for label in sorted(CERT))]
    assert all(0 < lo < hi < float("inf") for lo, hi in iv)
    assert max(lo for lo, _ in iv) <= min(hi for _, hi in iv)
