"""The answer check's comparison: two passes' answers, prompt by prompt, token by token.

- :func:`first_divergence`: the first position where two token sequences differ (one a strict
  prefix of the other: the shorter one's length), None when identical.
- :func:`diff_answers`: every prompt of the set; a prompt differs when its tokens do or when a
  side has no answer (counted as missing too). Units: token ids when both passes carry them, else
  the tokens' strings, else the text's characters (a server without logprobs). Log-probabilities
  are compared over the identical tokens (before the first divergence) against the criterion's
  tolerance: reported, never part of "same answers".
- :func:`label`: the verdict's phrase ("answers identical on all 32 prompts", "answers differ on
  7 of 32 prompts", with the control's failure when it failed).
- :func:`recheck`: recompute a recorded check from its raw files (sha256 checked first).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from ..formats.answers import AnswerLine
from ..ingest.answers import read_answers
from ..runs.answer_record import SHOWN_DIFFS, AnswerCheck, DiffResult, PromptDiff
from ..runs.manifest import FileEntry


def first_divergence(a: Sequence, b: Sequence) -> int | None:
    """Index of the first differing element; ``min(len)`` when one is a strict prefix; None if equal."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def _unit(a: list[AnswerLine], b: list[AnswerLine]) -> str:
    ok = [x for x in (*a, *b) if x.ok]
    if ok and all(x.token_ids is not None for x in ok):
        return "token ids"
    if ok and all(x.tokens for x in ok):
        return "tokens"
    return "text characters"


def _units(x: AnswerLine, unit: str) -> list:
    return list(x.token_ids or []) if unit == "token ids" else list(x.tokens) if unit == "tokens" else list(x.text)


def _token_text(x: AnswerLine, unit: str, i: int) -> str:
    u = _units(x, unit)
    if i >= len(u):
        return "(end of answer)"
    return str(x.tokens[i]) if unit != "text characters" and i < len(x.tokens) else str(u[i])


def diff_answers(baseline: list[AnswerLine], tuned: list[AnswerLine], tol: float, shown: int = SHOWN_DIFFS,
                 order: Sequence[str] | None = None) -> DiffResult:
    """Compare two passes over the same prompt set (``order``: the set's ids; default the
    baseline's). A prompt one pass lacks counts as differing and missing."""
    ids = list(order) if order is not None else [x.prompt_id for x in baseline]
    ia, ib = {x.prompt_id: x for x in baseline}, {x.prompt_id: x for x in tuned}
    unit = _unit([ia[i] for i in ids if i in ia], [ib[i] for i in ids if i in ib])
    differing, first, missing, beyond, max_lp = [], [], 0, 0, None
    for pid in ids:
        a, b = ia.get(pid), ib.get(pid)
        if a is None or b is None or not a.ok or not b.ok:
            missing += 1
            differing.append(pid)
            if len(first) < shown:
                why = "; ".join(f"{side}: {'not in the file' if x is None else x.error or f'HTTP {x.status}'}"
                                for side, x in (("baseline", a), ("tuned", b)) if x is None or not x.ok)
                first.append(PromptDiff(prompt_id=pid, position=None, baseline_text=a.text if a else "",
                                        tuned_text=b.text if b else "", note=f"no answer ({why})"))
            continue
        ua, ub = _units(a, unit), _units(b, unit)
        pos = first_divergence(ua, ub)
        same_len = len(ua) if pos is None else pos
        if a.logprobs is not None and b.logprobs is not None and unit != "text characters":
            d = [abs(x - y) for x, y in zip(a.logprobs[:same_len], b.logprobs[:same_len])]
            if d:
                max_lp = max(max_lp or 0.0, max(d))
                beyond += pos is None and max(d) > tol
        if pos is None:
            continue
        differing.append(pid)
        if len(first) < shown:
            first.append(PromptDiff(prompt_id=pid, position=pos, baseline_token=_token_text(a, unit, pos),
                                    tuned_token=_token_text(b, unit, pos), baseline_text=a.text, tuned_text=b.text))
    n, k = len(ids), len(differing)
    summary = (f"identical on all {n} prompts" if k == 0 else f"differ on {k} of {n} prompts"
               + (f" ({missing} without an answer)" if missing else ""))
    return DiffResult(n_prompts=n, n_differ=k, n_missing=missing, unit=unit, identical=k == 0, differing=differing,
                      first=first, max_logprob_diff=max_lp, n_logprob_beyond_tol=beyond, summary=summary)


def label(check: AnswerCheck | None) -> str:
    """The verdict's answer phrase, the control's failure named beside it."""
    if check is None:
        return "answers not checked"
    if check.ab is None:
        return f"answers not checked ({check.reason or check.status})"
    text = f"answers {check.ab.summary}"
    if check.control is None:
        text += " (no control)"
    elif not check.control.identical:
        text += f"; the control (A against A): answers {check.control.summary} too, so not attributable to the change"
    return text


def verdict_label(verdict: str, check: AnswerCheck | None) -> str:
    """``"better, answers differ on 7 of 32 prompts"``: a cell's verdict with the answer phrase."""
    return f"{verdict}, {label(check)}"


def differs(check: AnswerCheck | None) -> bool | None:
    """Whether the A/B's answers differ (True), are identical (False), or were not compared (None)."""
    return None if check is None or check.ab is None else not check.ab.identical


def verify_file(folder: Path, entry: FileEntry) -> Path:
    """The file a check lists, refused when its bytes are not the recorded ones."""
    p = folder / entry.path
    data = p.read_bytes()
    got = hashlib.sha256(data).hexdigest()
    if got != entry.sha256 or len(data) != entry.bytes:
        raise ValueError(f"{p}: sha256 {got[:12]}... ({len(data)} bytes) is not the recorded "
                         f"{entry.sha256[:12]}... ({entry.bytes} bytes): the answer file changed after it was written")
    return p


def results(folder: Path, check: AnswerCheck, order: Sequence[str] | None = None) -> tuple[DiffResult | None,
                                                                                            DiffResult | None]:
    """(A/B, control) from the check's files, each None while a pass it needs is missing."""
    def lines(role: str) -> list[AnswerLine] | None:
        p = check.passed(role)
        return None if p is None or p.file is None else read_answers(verify_file(folder, p.file))

    tol = check.criterion.logprob_abs_tol
    a, b, c = lines("baseline"), lines("tuned"), lines("control")
    ab = diff_answers(a, b, tol, order=order) if a is not None and b is not None else None
    control = diff_answers(a, c, tol, order=order) if a is not None and c is not None else None
    return ab, control


def recheck(folder: Path, check: AnswerCheck) -> list[str]:
    """What differs between the recorded results and the ones its files give now ([] = none)."""
    ab, control = results(folder, check)
    out = []
    for name, got, rec in (("ab", ab, check.ab), ("control", control, check.control)):
        if (got.model_dump() if got else None) != (rec.model_dump() if rec else None):
            was, now = rec.summary if rec else None, got.summary if got else None
            out.append(f"{name}: recorded {was!r}, the files give {now!r}")
    return out
