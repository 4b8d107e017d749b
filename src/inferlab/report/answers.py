"""The compare report's answer check (report section contract: report/sections.py).

``section(comparison_id, res)`` shows: one sentence with the A/B's result and the control's
beside it, the criterion as it was fixed before the run, the primary verdicts labelled with the
answers ("better, answers differ on 7 of 32 prompts"), and the first differing prompts with
their first divergent token and both texts. ``answer_lines`` is the same in plain text for
``inferlab compare``."""

from __future__ import annotations

import pandas as pd
from IPython.display import Markdown

from ..analysis.answers import label, recheck, verdict_label
from ..runs.answer_record import AnswerCheck, DiffResult
from ..runs.comparison import find_comparison, load_comparison
from ..specs.answer_prompts import SHA256, load_prompt_set
from .sections import Section

COLUMNS = ["prompt", "first divergent token", "baseline token", "tuned token", "baseline answer", "tuned answer"]


def _how(chk: AnswerCheck) -> str:
    control = chk.passed("control")
    where = ("a fresh engine of the baseline's configuration" if control is None or control.engine == "fresh"
             else "a second pass on the baseline's engine")
    size = len(load_prompt_set()) if chk.prompt_set_sha256 == SHA256 else None  # the shipped set's; else unknown here
    asked = f"the first {chk.n_prompts} of its {size} prompts" if size and chk.n_prompts < size else \
        f"{chk.n_prompts} prompts"
    return (f"prompt set `{chk.prompt_set}` ({asked}, sha256 {chk.prompt_set_sha256[:12]}), greedy "
            f"(temperature {chk.temperature:g}), up to {chk.max_tokens} tokens, {chk.concurrency} in flight, on each "
            f"side's engine after its measured cells; control: the baseline against {where}, same concurrency")


def _lp(d: DiffResult | None, tol: float) -> str:
    if d is None or d.max_logprob_diff is None:
        return "no log-probabilities returned"
    return (f"largest |logprob difference| over identical tokens {d.max_logprob_diff:.3g} "
            f"({d.n_logprob_beyond_tol} identical answers beyond ±{tol:g})")


def integrity(comparison_id: str, chk: AnswerCheck) -> str:
    """'' when the recorded results are what the check's files give; else what differs."""
    try:
        problems = recheck(find_comparison(comparison_id).parent, chk)
    except (OSError, ValueError) as exc:
        return f"answer files do not check out: {exc}"
    return "; ".join(problems) and f"recorded results differ from the files: {'; '.join(problems)}"


def answer_lines(comparison_id: str) -> list[str]:
    """The check in plain text: result, control, criterion (for the CLI)."""
    chk = load_comparison(comparison_id).answers
    if chk is None:
        return ["Answer check: not run for this comparison."]
    tol = chk.criterion.logprob_abs_tol
    lines = [f"Answer check: A/B {chk.ab.summary if chk.ab else '(not compared)'}; control (A against A) "
             f"{chk.control.summary if chk.control else '(not compared)'}" + (f" [{chk.reason}]" if chk.reason else ""),
             f"  {_how(chk)}",
             f"  criterion (fixed before the run): {chk.criterion.same_answers}; logprobs: {_lp(chk.ab, tol)}"]
    if bad := integrity(comparison_id, chk):
        lines.append(f"  WARNING: {bad}")
    for name, d in (("A/B", chk.ab), ("control", chk.control)):
        for p in (d.first if d else [])[:3]:
            where = (f"token {p.position} ({p.baseline_token!r} vs {p.tuned_token!r})" if p.position is not None
                     else p.note)
            lines.append(f"  {name} {p.prompt_id}: first divergence at {where}\n"
                         f"    baseline: {p.baseline_text[:160]!r}\n    other:    {p.tuned_text[:160]!r}")
    return lines


def diff_table(d: DiffResult | None) -> pd.DataFrame:
    """The first differing prompts: where they diverge and both answers."""
    rows = [{"prompt": p.prompt_id, "first divergent token": "" if p.position is None else p.position,
             "baseline token": p.baseline_token, "tuned token": p.tuned_token or p.note,
             "baseline answer": p.baseline_text, "tuned answer": p.tuned_text} for p in (d.first if d else [])]
    return pd.DataFrame(rows, columns=COLUMNS)


def verdict_labels(res: pd.DataFrame, chk: AnswerCheck | None) -> pd.DataFrame:
    """The primary metric's verdict per cell with the answers' phrase beside it."""
    prim = res[res["role"] == "primary"] if not res.empty else res
    return pd.DataFrame({"cell": list(prim["cell"]) if len(prim) else [],
                         "verdict": [verdict_label(v, chk) for v in prim["verdict"]] if len(prim) else []})


def section(comparison_id: str, res: pd.DataFrame | None = None) -> Section:
    """The answer check of a comparison record (``res``: compare_with_aa's table, for the labels)."""
    if not comparison_id:  # two runs named directly, not a comparison record: nothing was checked
        return Section(Markdown("**Same answers:** two runs, not a comparison record: no answer check."))
    chk = load_comparison(comparison_id).answers
    if chk is None:
        return Section(Markdown("**Same answers:** not checked (the comparison ran without the answer check)."))
    tol = chk.criterion.logprob_abs_tol
    control = chk.control.summary if chk.control else "not compared"
    head = (f"**Same answers:** {label(chk)}. Control (A against A, same configuration and concurrency): "
            f"{control}." + (f" ({chk.reason})" if chk.reason else "") +
            f"\n\n{_how(chk)}. Criterion, fixed before the run: {chk.criterion.same_answers}. "
            f"Log-probabilities: {_lp(chk.ab, tol)}; tolerance ±{tol:g} nats (reported, not part of 'same').")
    if bad := integrity(comparison_id, chk):
        head += f"\n\n**Warning:** {bad}."
    out = Section(Markdown(head))
    if res is not None and not res.empty:
        out.add(verdict_labels(res, chk))
    if chk.ab is not None and not chk.ab.identical:
        out.add(Markdown(f"A/B: the first {len(chk.ab.first)} of {chk.ab.n_differ} differing prompts "
                         f"(compared by {chk.ab.unit})"), diff_table(chk.ab))
    if chk.control is not None and not chk.control.identical:
        out.add(Markdown(f"Control: the first {len(chk.control.first)} of {chk.control.n_differ} differing prompts "
                         "(the 'tuned' columns are the control pass)"), diff_table(chk.control))
    return out
