"""The real-engine `--max-num-seqs 1` A/B re-recorded with spans on a quiet machine
(data/attribution-evidence/2026-12-05-local-maxseqs1-spans, its README): 3 + 3 interleaved
repeats, each a fresh engine with the span receiver. Re-read here with the product's verifier,
comparison and attribution from the shipped raw files (read-only): at 16 users the loss is
attributed to queueing, with the interval and Holm q the README quotes; at 1 user (one request
at a time either way) no part moves; the parts add up; the answer check is what it recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferlab.analysis import attribution as at
from inferlab.analysis.compare import compare_comparison
from inferlab.runs.comparison import load_comparison
from inferlab.runs.reader import Run
from inferlab.runs.verify import verify_run

from .evidence import link_workspace

D = Path(__file__).resolve().parents[2] / "data" / "attribution-evidence" / "2026-12-05-local-maxseqs1-spans"
DATA = D / "ws" / "data"
C = "20261205T163750Z-local-ab-maxseqs1-spans-quiet"


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERLAB_HOME", str(link_workspace(tmp_path, DATA)))


def _sides() -> tuple[list[Run], list[Run]]:
    c = load_comparison(C)
    runs = {side: [Run(DATA / "runs" / r.run_id) for r in c.repeats if r.side == side] for side in ("baseline", "tuned")}
    return runs["baseline"], runs["tuned"]


@pytest.mark.parametrize("run_dir", sorted((DATA / "runs").iterdir()), ids=lambda p: p.name)
def test_every_repeat_verifies_and_carries_spans(run_dir):
    assert verify_run(run_dir) == []
    assert Run(run_dir).manifest.status == "complete"
    assert sorted(p.parent.name for p in run_dir.glob("cells/*/spans.otlp.jsonl.gz")) == ["short-c1", "short-c16"]


def test_the_comparison_is_abba_with_fresh_engines_and_calls_the_16_user_loss(home):
    c = load_comparison(C)
    assert c.status == "complete" and c.order == "abba"
    assert [r.side for r in c.repeats] == ["baseline", "tuned", "tuned", "baseline", "baseline", "tuned"]
    assert len({r.engine["pid"] for r in c.repeats}) == 6
    assert all("--max-num-seqs" in r.engine["args"] for r in c.repeats if r.side == "tuned")
    res, _ = compare_comparison(C)
    row = lambda cell, m: res[(res["cell"] == cell) & (res["metric"] == m)].iloc[0]  # noqa: E731
    many = row("short-c16", "throughput")
    assert (round(many["ratio"], 2), round(many["ci_low_adj"], 2), round(many["ci_high_adj"], 2)) == (0.13, 0.12, 0.15)
    assert many["verdict"] == "worse" and (res["validity"] == "VALID").all()
    assert row("short-c1", "throughput")["verdict"] == "no significant difference"


def test_attribution_names_queueing_at_16_users_and_nothing_at_1(home):
    att = at.attribute(*_sides())
    one, many = at.sentences(att)
    assert one == ("short-c1: mean e2e 1.03x (1940 -> 2005 ms, +65 ms [-153, 283]): no part differs beyond noise "
                   "(Holm across the parts)")
    assert many == ("short-c16: mean e2e 7.46x (4175 -> 31161 ms, +26986 ms [24740, 29232]): queue +29161 ms "
                    "[26966, 31356], decode -1571 ms [-1843, -1300], prefill -604 ms [-630, -578], the rest within noise")
    p = att.parts.set_index(["cell", "part"])
    q = p.loc[("short-c16", "queue")]
    assert q["called"] and round(q["q_value"], 3) == 0.003
    assert round(q["tuned_share"], 3) == 0.936 and q["baseline_share"] < 1e-5  # 93.6 % and 0.001 % (README)
    tuned = att.repeats[(att.repeats["side"] == "tuned") & (att.repeats["cell"] == "short-c16")]
    assert (round(tuned["queue"].min() / 1000, 1), round(tuned["queue"].max() / 1000, 1)) == (28.2, 29.9)
    # the largest part by far; decode and prefill shrink (one sequence at a time runs faster once admitted)
    assert p.loc["short-c16"]["delta_ms"].abs().idxmax() == "queue"
    assert set(p.loc["short-c16"].index[p.loc["short-c16"]["called"]]) == {"queue", "decode", "prefill"}
    assert not p.loc["short-c1"]["called"].any()
    for cell, g in att.parts.groupby("cell"):  # the parts add up to the total delta exactly
        assert g["delta_ms"].sum() == pytest.approx(att.totals.set_index("cell").loc[cell, "delta_ms"], rel=1e-12)


def test_the_answer_check_differs_on_14_of_32_and_its_control_is_identical(home):
    a = load_comparison(C).answers
    assert a is not None
    assert (a.ab.n_differ, a.ab.n_prompts, a.ab.n_missing) == (14, 32, 0)
    assert (a.control.n_differ, a.control.n_prompts) == (0, 32)
