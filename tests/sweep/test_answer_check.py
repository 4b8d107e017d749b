"""The answer check's orchestration against the stand-in server (target url): passes on each
side's server while it is up and after its cells, the control on the next baseline server, the
files written once with their sha256, the result against the stand-in's ground truth (which
prompts its ``answer_change_share`` knob changes), and tune's component gate."""

from __future__ import annotations

import os
import stat
from datetime import datetime

import pytest

import inferlab
from inferlab.analysis.answers import recheck
from inferlab.ingest.answers import read_answers
from inferlab.procs import free_port
from inferlab.runs.answer_record import AnswerCheck, AnswerPass
from inferlab.runs.comparison import Comparison, find_comparison, load_comparison, save_comparison
from inferlab.runs.tune_record import TuneRecord
from inferlab.specs import builtin_spec, load_spec
from inferlab.specs.answer_prompts import load_prompt_set
from inferlab.standin import StandInConfig
from inferlab.standin.answer_change import changed_at
from inferlab.standin.text import chat_prompt_tokens
from inferlab.sweep.ab import run_comparison
from inferlab.sweep.answer_check import MAX_TOKENS, AnswerChecker, component_gate

from .test_ab import SideSwitcher

SHARE = 0.25


def expected_changed() -> list[str]:
    """The stand-in's ground truth: the prompts whose answer its knob changes, in set order."""
    return [p.id for p in load_prompt_set()
            if changed_at(chat_prompt_tokens(p.messages), MAX_TOKENS, SHARE) is not None]


def _ab(monkeypatch, tuned_update: dict, pairs: int = 2, label: str = "answers", **kw) -> str:
    key = "standin-key"
    monkeypatch.setenv("INFERLAB_API_KEY", key)
    server = StandInConfig(port=free_port(), api_key=key, tpot_ms=1, prefill_ms_per_token=0.01)
    switcher = SideSwitcher({"baseline": server, "tuned": server.model_copy(update=tuned_update)})
    spec = {"concurrency": [2]}
    base = load_spec(builtin_spec("ci-tiny"), {**spec, "name": "tiny-a"})
    tuned = load_spec(builtin_spec("ci-tiny"), {**spec, "name": "tiny-b"})
    try:
        return run_comparison(base, tuned, target="url", base_url=f"http://127.0.0.1:{server.port}", pairs=pairs,
                              label=label, on_repeat=switcher, **kw)
    finally:
        switcher.stop()


def test_a_setting_that_changes_answers_is_found_prompt_by_prompt(workspace, monkeypatch):
    cid = _ab(monkeypatch, {"answer_change_share": SHARE})
    c = load_comparison(cid)
    folder = find_comparison(cid).parent
    chk = c.answers
    assert c.status == "complete" and chk is not None and chk.status == "complete", (c.reason, chk)
    # which engines: the first baseline and tuned repeats, the control on the second baseline one
    assert [(p.role, p.side, p.pair, p.engine) for p in chk.passes] == [
        ("baseline", "baseline", 1, "fresh"), ("tuned", "tuned", 1, "fresh"), ("control", "baseline", 2, "fresh")]
    truth = expected_changed()
    assert 3 <= len(truth) <= 14  # the knob changes some prompts, not none or all
    assert chk.ab.differing == truth and chk.ab.n_differ == len(truth) and chk.ab.unit == "token ids"
    assert chk.label == f"answers differ on {len(truth)} of 32 prompts"
    assert chk.control.identical and chk.control.summary == "identical on all 32 prompts"
    first = chk.ab.first[0]
    assert first.prompt_id == truth[0] and first.baseline_text != first.tuned_text
    assert first.baseline_token.startswith("token_id:") and first.baseline_token != first.tuned_token
    prompt = next(p for p in load_prompt_set() if p.id == truth[0])
    assert first.position == changed_at(chat_prompt_tokens(prompt.messages), MAX_TOKENS, SHARE)
    # outside the measured window: after the repeat's cells, on the server of that repeat
    repeat = {(r.side, r.pair): r for r in c.repeats}
    for p in chk.passes:
        run = inferlab.load_run(repeat[(p.side, p.pair)].run_id)
        assert max(x.ended_at for x in run.manifest.cells) <= p.started_at <= p.ended_at <= run.manifest.ended_at
        assert run.verify() == []
        f = folder / p.file.path
        assert p.answered == 32 and not (f.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    assert recheck(folder, chk) == []
    # the compare report's section and the CLI's lines say the same
    from inferlab.analysis.compare import compare_sides, sides
    from inferlab.report.answers import answer_lines, section

    res = compare_sides(*sides(comparison=cid)[:2])
    parts = list(section(cid, res))
    head = parts[0].data
    assert head.startswith(f"**Same answers:** answers differ on {len(truth)} of 32 prompts. Control (A against A")
    assert "identical on all 32 prompts" in head and "fixed before the run" in head
    labels, table = parts[1], parts[3]
    assert all(v.endswith(f", answers differ on {len(truth)} of 32 prompts") for v in labels["verdict"])
    assert list(table["prompt"]) == truth[:5] and (table["baseline answer"] != table["tuned answer"]).all()
    lines = answer_lines(cid)
    assert lines[0] == (f"Answer check: A/B differ on {len(truth)} of 32 prompts; control (A against A) identical "
                        "on all 32 prompts")
    assert f"A/B {truth[0]}: first divergence at token {first.position}" in "\n".join(lines)


def test_a_check_of_the_first_n_prompts_asks_those_only_and_a_resume_keeps_n(workspace, monkeypatch):
    """``answer_prompts=N`` (``ab --answer-prompts N``): every pass asks the set's first N prompts,
    the record says N, the verdict's phrase counts N, and a reopened check (a resume) asks the
    same N. A count outside 1-32 is refused before the comparison's folder exists."""
    n = 10
    cid = _ab(monkeypatch, {"answer_change_share": SHARE}, pairs=1, label="first-n", answer_prompts=n)
    c = load_comparison(cid)
    chk, folder = c.answers, find_comparison(cid).parent
    first = [p.id for p in load_prompt_set()[:n]]
    truth = [x for x in expected_changed() if x in first]
    assert 1 <= len(truth) < n  # some of the first 10 change, not all
    assert chk.status == "complete" and chk.n_prompts == n and [p.answered for p in chk.passes] == [n] * 3
    for p in chk.passes:
        assert [x.prompt_id for x in read_answers(folder / p.file.path)] == first
    assert chk.ab.differing == truth and chk.label == f"answers differ on {len(truth)} of {n} prompts"
    assert chk.control.summary == f"identical on all {n} prompts" and recheck(folder, chk) == []
    assert [p.id for p in AnswerChecker(c, folder, c.pairs).prompts] == first  # a resume's checker
    from inferlab.report.answers import answer_lines

    assert answer_lines(cid)[1].startswith(f"  prompt set `answers-32-v1` (the first {n} of its 32 prompts, sha256 ")
    spec = load_spec(builtin_spec("ci-tiny"))
    for bad in (0, 33):
        with pytest.raises(ValueError, match=f"1 to 32 prompts of answers-32-v1, not {bad}"):
            run_comparison(spec, spec, target="url", base_url="http://127.0.0.1:9", label="bad", answer_prompts=bad)
    assert [x.name for x in find_comparison(cid).parent.parent.iterdir()] == [cid]  # no folder for either


def test_a_same_configuration_comparison_has_identical_answers_and_a_same_engine_control(workspace, monkeypatch):
    cid = _ab(monkeypatch, {}, pairs=1, label="aa")
    chk = load_comparison(cid).answers
    assert [(p.role, p.pair, p.engine) for p in chk.passes] == [("baseline", 1, "fresh"), ("control", 1, "same"),
                                                                ("tuned", 1, "fresh")]
    assert chk.status == "complete" and chk.ab.identical and chk.control.identical
    assert chk.ab.max_logprob_diff == 0.0 and chk.label == "answers identical on all 32 prompts"


def test_a_pass_that_gets_no_answer_is_retried_on_the_sides_next_repeat(workspace, tmp_path):
    c = Comparison(comparison_id="x", created_at=datetime.now(), target="url", order="alternate", seed=0,
                   baseline={}, tuned={})
    ch = AnswerChecker(c, tmp_path, pairs=3)
    assert ch.roles("baseline", 1) == ["baseline"] and ch.roles("tuned", 1) == ["tuned"]
    ch.check.passes.append(AnswerPass(role="baseline", side="baseline", pair=1, reason="no prompt answered: 503"))
    assert ch.roles("baseline", 2) == ["baseline"] and ch.roles("baseline", 3) == ["baseline", "control"]
    ch.finish()
    assert ch.check.status == "incomplete" and "no usable pass for baseline, tuned, control" in ch.check.reason
    assert "503" in ch.check.reason and ch.check.label.startswith("answers not checked")


def _recorded(workspace, name: str, ab_identical: bool | None) -> str:
    from inferlab.analysis.answers import diff_answers
    from inferlab.formats.answers import AnswerLine

    a = [AnswerLine(prompt_id="p1", status=200, tokens=["x"], token_ids=[1])]
    b = [AnswerLine(prompt_id="p1", status=200, tokens=["y"], token_ids=[1 if ab_identical else 2])]
    chk = AnswerCheck(prompt_set="s", prompt_set_sha256="0" * 64, n_prompts=1, max_tokens=4, concurrency=1,
                      ab=None if ab_identical is None else diff_answers(a, b, 0.05),
                      control=diff_answers(a, a, 0.05), reason="" if ab_identical is not None else "no usable pass")
    c = Comparison(comparison_id=name, created_at=datetime.now(), target="local", order="alternate", seed=0,
                   baseline={}, tuned={}, answers=chk)
    d = workspace / "data" / "comparisons" / name
    os.makedirs(d)
    save_comparison(c, d)
    return name


@pytest.mark.parametrize("identical, accept, written", [(True, False, True), (False, False, False),
                                                        (False, True, True), (None, False, False)])
def test_tune_writes_no_component_whose_answers_differ_without_accept(workspace, identical, accept, written):
    from inferlab.sweep.tune import _answers_allow

    cid = _recorded(workspace, f"20260101T000000Z-local-ab-{identical}-{accept}".lower(), identical)
    ok, why = component_gate(cid, accept)
    assert ok is written
    if not written:
        assert "--accept-output-change" in why and why.startswith("component not written")
    if identical is False and not accept:
        assert "answers differ on 1 of 1 prompts" in why
    rec = TuneRecord(tune_id="t", created_at=datetime.now(), target="local", spec={}, capacity_spec={})
    rec.confirmation.comparison_id = cid
    assert _answers_allow(rec, accept) is written
    assert [n for n in rec.notes if n.startswith("answer check:")] == [f"answer check: {why}"]
