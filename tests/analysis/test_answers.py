"""The answer check's comparison logic: token-level diff, first divergence, units, the
log-probability tolerance, the control's phrase, and the recorded files' sha256."""

from __future__ import annotations

import hashlib
import json

import pytest

from inferlab.analysis.answers import diff_answers, first_divergence, label, recheck, verdict_label, verify_file
from inferlab.formats.answers import AnswerLine
from inferlab.ingest.answers import read_answers
from inferlab.ingest.errors import IngestError
from inferlab.runs.answer_record import AnswerCheck, AnswerPass
from inferlab.runs.manifest import FileEntry

TOL = 0.05


def line(pid: str, ids: list[int] | None, lps: list[float] | None = None, text: str | None = None, status: int = 200,
         error: str = "") -> AnswerLine:
    toks = [f"token_id:{i}" for i in ids] if ids is not None else []
    return AnswerLine(prompt_id=pid, status=status, error=error, text=text if text is not None else
                      " ".join(map(str, ids or [])), tokens=toks, token_ids=ids, logprobs=lps)


@pytest.mark.parametrize("a, b, want", [([1, 2, 3], [1, 2, 3], None), ([1, 2, 3], [1, 9, 3], 1), ([5], [6], 0),
                                        ([1, 2], [1, 2, 3], 2), ([1, 2, 3], [1, 2], 2), ([], [], None), ([], [4], 0)])
def test_first_divergence(a, b, want):
    assert first_divergence(a, b) == want


def test_identical_answers_are_identical_on_all_prompts():
    a = [line(f"p{i}", [i, i + 1, i + 2], [-0.1, -0.2, -0.3]) for i in range(4)]
    d = diff_answers(a, [x.model_copy() for x in a], TOL)
    assert d.identical and d.n_differ == 0 and d.n_prompts == 4 and d.unit == "token ids"
    assert d.summary == "identical on all 4 prompts" and d.max_logprob_diff == 0.0 and d.first == []


def test_differences_give_count_first_position_and_both_texts_in_set_order():
    a = [line(f"p{i}", [1, 2, 3, 4]) for i in range(10)]
    b = [line(f"p{i}", [1, 2, 3, 4] if i % 3 else [1, 2, 7 + i, 4]) for i in range(10)]  # p0 p3 p6 p9 differ at 2
    d = diff_answers(a, b, TOL, shown=3)
    assert not d.identical and d.n_differ == 4 and d.differing == ["p0", "p3", "p6", "p9"]
    assert d.summary == "differ on 4 of 10 prompts"
    assert [(p.prompt_id, p.position) for p in d.first] == [("p0", 2), ("p3", 2), ("p6", 2)]  # only `shown` kept
    assert d.first[1].baseline_token == "token_id:3" and d.first[1].tuned_token == "token_id:10"
    assert d.first[1].baseline_text == "1 2 3 4" and d.first[1].tuned_text == "1 2 10 4"


def test_a_missing_or_failed_answer_counts_as_differing_and_missing():
    a = [line("p1", [1, 2]), line("p2", [1, 2]), line("p3", [3])]
    b = [line("p1", [1, 2]), line("p2", None, status=500, error="boom")]  # p3 absent
    d = diff_answers(a, b, TOL)
    assert d.n_differ == 2 and d.n_missing == 2 and d.differing == ["p2", "p3"]
    assert d.summary == "differ on 2 of 3 prompts (2 without an answer)"
    assert d.first[0].position is None and "boom" in d.first[0].note and "not in the file" in d.first[1].note


def test_a_shorter_answer_diverges_where_it_ends():
    d = diff_answers([line("p1", [1, 2, 3])], [line("p1", [1, 2])], TOL)
    assert d.first[0].position == 2 and d.first[0].tuned_token == "(end of answer)"


def test_units_fall_back_to_token_strings_then_text():
    toks = AnswerLine(prompt_id="p1", status=200, text="a b", tokens=[" a", " b"])
    other = AnswerLine(prompt_id="p1", status=200, text="a b", tokens=[" a", " c"])
    d = diff_answers([toks], [other], TOL)
    assert d.unit == "tokens" and d.first[0].position == 1 and d.first[0].tuned_token == " c"
    plain = [AnswerLine(prompt_id="p1", status=200, text="abc")]
    d = diff_answers(plain, [AnswerLine(prompt_id="p1", status=200, text="abd")], TOL)
    assert d.unit == "text characters" and d.first[0].position == 2 and d.max_logprob_diff is None


def test_logprobs_are_compared_over_identical_tokens_only_against_the_stated_tolerance():
    a = [line("p1", [1, 2, 3], [-1.0, -2.0, -3.0]), line("p2", [1, 2, 3], [-1.0, -2.0, -3.0])]
    b = [line("p1", [1, 2, 3], [-1.0, -2.1, -3.0]),  # same tokens, 0.1 apart: beyond the tolerance
         line("p2", [1, 9, 3], [-1.01, -9.0, -9.0])]  # diverges at 1: only position 0 is compared
    d = diff_answers(a, b, TOL)
    assert d.n_differ == 1 and d.differing == ["p2"]  # logprobs never make answers "differ"
    assert d.max_logprob_diff == pytest.approx(0.1) and d.n_logprob_beyond_tol == 1


def _check(ab=None, control=None) -> AnswerCheck:
    return AnswerCheck(prompt_set="s", prompt_set_sha256="0" * 64, n_prompts=2, max_tokens=4, concurrency=2,
                       ab=ab, control=control)


def test_label_states_the_ab_and_a_failed_control():
    same = diff_answers([line("p1", [1])], [line("p1", [1])], TOL)
    diff = diff_answers([line("p1", [1]), line("p2", [2])], [line("p1", [1]), line("p2", [3])], TOL)
    assert label(None) == "answers not checked"
    assert label(_check(ab=same, control=same)) == "answers identical on all 1 prompts"
    assert verdict_label("better", _check(ab=diff, control=same)) == "better, answers differ on 1 of 2 prompts"
    assert label(_check(ab=diff, control=diff)).endswith(
        "the control (A against A): answers differ on 1 of 2 prompts too, so not attributable to the change")
    assert label(_check(ab=diff)) == "answers differ on 1 of 2 prompts (no control)"


def _write(folder, rel, lines):
    data = "".join(json.dumps(x.model_dump(mode="json")) + "\n" for x in lines).encode()
    (folder / rel).write_bytes(data)
    return FileEntry(path=rel, sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))


def test_recheck_recomputes_from_the_files_and_a_changed_file_is_refused(tmp_path):
    a, b = [line("p1", [1, 2]), line("p2", [3])], [line("p1", [1, 5]), line("p2", [3])]
    chk = _check()
    chk.passes = [AnswerPass(role="baseline", side="baseline", pair=1, file=_write(tmp_path, "a.jsonl", a)),
                  AnswerPass(role="tuned", side="tuned", pair=1, file=_write(tmp_path, "b.jsonl", b)),
                  AnswerPass(role="control", side="baseline", pair=2, file=_write(tmp_path, "c.jsonl", a))]
    chk.ab, chk.control = diff_answers(a, b, TOL), diff_answers(a, a, TOL)
    assert recheck(tmp_path, chk) == []
    chk.ab = diff_answers(a, a, TOL)  # a record that says otherwise than its files
    assert recheck(tmp_path, chk) == [
        "ab: recorded 'identical on all 2 prompts', the files give 'differ on 1 of 2 prompts'"]
    (tmp_path / "b.jsonl").write_bytes((tmp_path / "b.jsonl").read_bytes().replace(b"5", b"2"))
    with pytest.raises(ValueError, match="b.jsonl: sha256 .* is not the recorded"):
        verify_file(tmp_path, chk.passes[1].file)


def test_a_bad_answer_file_names_file_line_and_field(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text(json.dumps(line("p1", [1]).model_dump(mode="json")) + "\n" + '{"prompt_id": "p2", "status": "x"}\n')
    with pytest.raises(IngestError, match=r"x.jsonl:2: expected an answer line .* field 'status'"):
        read_answers(p)
    one = json.dumps(line("p1", [1]).model_dump(mode="json")) + "\n"
    p.write_text(one + one)
    with pytest.raises(IngestError, match=r"x.jsonl:2: expected each prompt once"):
        read_answers(p)
