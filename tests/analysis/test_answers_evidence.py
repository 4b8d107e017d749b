"""The answer-check evidence on the real engine (data/answers-evidence, docs/verdicts.md "Same
answers"): every figure re-derived from the shipped answer files with the product's reader and
diff, and checked against what the records and findings.json say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inferlab.analysis.answers import diff_answers
from inferlab.ingest.answers import read_answers
from inferlab.runs.answer_record import LOGPROB_ABS_TOL
from inferlab.runs.comparison import load_comparison
from inferlab.specs.answer_prompts import load_prompt_set

D = Path(__file__).resolve().parents[2] / "data" / "answers-evidence"
FINDINGS = json.loads((D / "findings.json").read_text())
ORDER = [p.id for p in load_prompt_set()]


@pytest.mark.parametrize("row", FINDINGS["comparisons"], ids=lambda r: r["what"])
def test_each_finding_reproduces_from_its_answer_files(row):
    d = diff_answers(read_answers(D / f"{row['a']}.jsonl"), read_answers(D / f"{row['b']}.jsonl"), LOGPROB_ABS_TOL,
                     order=ORDER)
    assert (d.n_prompts, d.n_differ, d.n_missing, d.identical, d.differing) == (
        row["n_prompts"], row["n_differ"], row["n_missing"], row["identical"], row["differing"])


def test_the_findings_the_docs_quote():
    """Batching (8 in flight vs 1) changes 14 of 32 greedy answers, an fp8 KV cache 28 of 32,
    prefix caching none; every same-configuration second pass is identical."""
    got = {r["what"]: r["n_differ"] for r in FINDINGS["comparisons"]}
    assert got["default: 8 in flight vs 1 (batching)"] == 14
    assert got["default vs fp8kv at 8 in flight"] == 28
    assert got["default vs noprefix at 8 in flight"] == 0
    assert all(n == 0 for w, n in got.items() if "A/A" in w)


@pytest.mark.parametrize(("cid", "control_file"), [("20261204T080145Z-local-ab-dtype-bf16-vs-fp32", "baseline-p1-2"),
                                                   ("20261204T081818Z-local-ab-ci", "baseline-p2")])
def test_the_ab_records_answer_checks_reproduce_from_their_files(cid, control_file):
    """Both recorded A/Bs (bf16 vs fp32): 14 of 32 prompts differ, the control (a second pass on
    the same engine; a fresh engine) is identical."""
    ans = D / cid / "answers"
    ab = diff_answers(read_answers(ans / "baseline-p1.jsonl"), read_answers(ans / "tuned-p1.jsonl"), LOGPROB_ABS_TOL,
                      order=ORDER)
    control = diff_answers(read_answers(ans / "baseline-p1.jsonl"), read_answers(ans / f"{control_file}.jsonl"),
                           LOGPROB_ABS_TOL, order=ORDER)
    assert (ab.n_differ, control.identical) == (14, True)
    rec = load_comparison(D / cid).answers
    assert (rec.ab.n_differ, rec.control.n_differ) == (ab.n_differ, control.n_differ)
