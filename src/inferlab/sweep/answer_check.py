"""The answer check of an A/B: the shipped prompt set, greedy, on each side's engine while it is
up, outside the measured window; then the answers compared token by token (analysis/answers.py).

When: a pass runs inside a repeat's run after its cells and their telemetry are done and before
the engine stops (``runner.run(..., while_up=...)``), so no measured request overlaps it and no
extra engine start is needed. Which repeats: the first baseline and the first tuned repeat whose
pass got any answer; the control (A against A) on the next baseline repeat (a fresh engine of the
same configuration), or, where the comparison plans no later baseline repeat, as a second pass on
the same baseline engine (recorded as ``engine: same``). All passes run at the same concurrency.

What is written: each pass's answer file, once (``answers/<side>-p<pair>[-2].jsonl``, read-only,
sha256 and size in the record); the A/B and control results once, as soon as their passes exist
(runs/answer_record.py). A pass that fails is recorded with its reason and the next repeat of
that side tries again; the check never fails the comparison.

Tune: :func:`component_gate` says whether a confirmed winner may be written as the tuned
component (not when its answers differ, unless the user accepts the change).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from ..analysis.answers import differs, label, results
from ..formats.answers import pass_file
from ..ingest.answers import read_answers
from ..probe.answers import collect
from ..runs.answer_record import AnswerCheck, AnswerPass
from ..runs.comparison import Comparison, load_comparison
from ..runs.manifest import FileEntry
from ..runs.store import record_file
from ..specs import LoadSpec
from ..specs.answer_prompts import NAME, SHA256, load_prompt_set
from ..targets.session import TargetSession
from .cell import served_model

console = Console(stderr=True)
MAX_TOKENS = 32  # the 2-core CPU engine answers 32 prompts x 32 tokens at 8 in flight in ~20-40 s
CONCURRENCY = 8  # requests in flight during a pass: batched as under load; the control uses the same


class AnswerChecker:
    """Runs the passes of one comparison's check and keeps ``comparison.answers`` current."""

    def __init__(self, c: Comparison, folder: Path, pairs: int, max_tokens: int = MAX_TOKENS,
                 concurrency: int = CONCURRENCY, n_prompts: int | None = None) -> None:
        """A new check (``c.answers`` None) asks each pass for the first ``n_prompts`` prompts of
        the set in its order (a seeded shuffle, so any first few mix short, medium, long and
        shared-prefix prompts; None: all of them), at most ``max_tokens`` tokens each, and records
        all three; ValueError for a count outside 1 to the set's size, before anything is
        recorded. A recorded check (a resume) goes on with what it recorded: the three arguments
        are then not used."""
        self.c, self.folder, self.pairs = c, folder, pairs
        every = load_prompt_set()
        if c.answers is None:
            n = len(every) if n_prompts is None else n_prompts
            if not 1 <= n <= len(every):
                raise ValueError(f"the answer check asks 1 to {len(every)} prompts of {NAME}, not {n}")
            c.answers = AnswerCheck(prompt_set=NAME, prompt_set_sha256=SHA256, n_prompts=n,
                                    max_tokens=max_tokens, concurrency=concurrency)
        else:
            self._reopen()
        self.prompts = every[:self.check.n_prompts]

    def _reopen(self) -> None:
        """The check of a resumed comparison (sweep/ab.py ``resume_comparison``) goes on as
        recorded: its passes and results kept; a pass the cut left without a file or a reason is
        marked interrupted; a check not complete is running again, so that the repeats still to
        run take the passes it lacks (:meth:`roles`). Refused where the prompt set changed since
        (the passes to come would not be comparable with the recorded ones)."""
        chk = self.check
        if chk.prompt_set_sha256 != SHA256:
            raise RuntimeError(f"comparison {self.c.comparison_id}: its answer check used prompt set "
                               f"{chk.prompt_set} sha256 {chk.prompt_set_sha256[:12]}, the shipped one is "
                               f"{SHA256[:12]}")
        for p in chk.passes:
            if p.file is None and not p.reason:
                p.reason, p.ended_at = "interrupted before it finished", p.ended_at or datetime.now(UTC)
        if chk.status != "complete":
            chk.status, chk.reason = "running", ""

    @property
    def check(self) -> AnswerCheck:
        assert self.c.answers is not None
        return self.c.answers

    def roles(self, side: str, pair: int) -> list[str]:
        """The passes this repeat's engine should run (module docstring: which repeats)."""
        chk = self.check
        if side == "tuned":
            return [] if chk.passed("tuned") else ["tuned"]
        if chk.passed("baseline") is None:
            # no later baseline repeat is planned: the control runs on this same engine
            return ["baseline", "control"] if pair >= self.pairs else ["baseline"]
        return [] if chk.passed("control") else ["control"]

    def hook(self, side: str, pair: int, spec: LoadSpec) -> Callable[[TargetSession], None] | None:
        """The ``while_up`` callback of this repeat's run, or None when it needs no pass."""
        roles = self.roles(side, pair)
        if not roles:
            return None

        def while_up(session: TargetSession) -> None:
            try:
                for n, role in enumerate(roles, start=1):
                    self.run_pass(role, side, pair, session, served_model(spec, session.kind), n)
                self.settle()
            except Exception as exc:  # noqa: BLE001 - the check never fails the repeat's run; finish() reports it
                self.check.reason = f"{side} pair {pair}: {type(exc).__name__}: {exc}"[:500]

        return while_up

    def run_pass(self, role: str, side: str, pair: int, session: TargetSession, model: str, n: int = 1) -> AnswerPass:
        chk = self.check
        p = AnswerPass(role=role, side=side, pair=pair, engine="same" if n > 1 else "fresh",  # type: ignore[arg-type]
                       started_at=datetime.now(UTC))
        chk.passes.append(p)
        try:
            data = collect(session.base_url, session.api_key, model, self.prompts, chk.max_tokens, chk.concurrency,
                           tag=f"{role}-p{pair}", verify=session.verify_tls)
        except Exception as exc:  # noqa: BLE001 - recorded on the pass; the next repeat of this side tries again
            p.reason, p.ended_at = f"{type(exc).__name__}: {exc}"[:500], datetime.now(UTC)
            return p
        p.ended_at = datetime.now(UTC)
        p.file = self._write_once(pass_file(side, pair, n), data)
        lines = read_answers(self.folder / p.file.path)
        p.answered = sum(x.ok for x in lines)
        if not p.answered:
            p.reason = "no prompt answered: " + (lines[0].error if lines else "empty file")[:300]
        console.print(f"  answers ({role}, {side} pair {pair}{', same engine' if n > 1 else ''}): "
                      f"{p.answered} of {len(lines)} prompts answered")
        return p

    def _write_once(self, rel: str, data: bytes) -> FileEntry:
        return record_file(self.folder, rel, data)  # never overwrites

    def settle(self) -> None:
        """Compute each result once, as soon as its passes exist (analysis.answers.results, which
        also refuses a file whose bytes are not the recorded ones)."""
        chk = self.check
        if chk.ab is None or chk.control is None:
            ab, control = results(self.folder, chk, order=[p.id for p in self.prompts])
            if chk.ab is None:
                chk.ab = ab
            if chk.control is None:
                chk.control = control
        if chk.ab is not None and chk.control is not None:
            chk.status = "complete"
        chk.label = label(chk) if chk.ab is not None else ""
        if chk.ab is not None or chk.control is not None:
            console.print(f"  answer check: A/B {chk.ab.summary if chk.ab else '(pending)'}; control (A/A) "
                          f"{chk.control.summary if chk.control else '(pending)'}")

    def finish(self) -> None:
        """At the comparison's end: a check without both results says which passes are missing."""
        chk = self.check
        if chk.status == "complete":
            return
        chk.status = "incomplete"
        missing = [r for r in ("baseline", "tuned", "control") if chk.passed(r) is None]
        why = [f"{p.role} pair {p.pair}: {p.reason}" for p in chk.passes if p.reason]
        chk.reason = (f"no usable pass for {', '.join(missing)}" if missing else "results pending") + \
            (f" ({'; '.join(why)})" if why else "")
        chk.label = label(chk)


def component_gate(comparison_id: str | None, accept_output_change: bool) -> tuple[bool, str]:
    """(may the confirmed winner be written as the tuned component, why). Not when its answers
    differ from the baseline's or were not compared, unless ``accept_output_change``."""
    if not comparison_id:
        return False, "no confirming comparison"
    chk = load_comparison(comparison_id).answers
    d = differs(chk)
    if d is False:
        return True, f"the winner's {label(chk)}"
    if accept_output_change:
        return True, f"--accept-output-change: written although its {label(chk)}"
    what = label(chk) if d else f"answers were not compared ({chk.reason if chk else 'no answer check'})"
    return False, (f"component not written: the winner's {what}; rerun with --accept-output-change to write it "
                   "anyway")
