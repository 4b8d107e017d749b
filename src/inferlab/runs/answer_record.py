"""The answer check's part of a comparison record (``comparison.json``'s ``answers``).

Its raw files, ``answers/<side>-p<pair>[-<n>].jsonl`` (:mod:`inferlab.formats.answers`), are
written once into the comparison's folder, read-only, each listed here with its sha256 and size
as a run's files are in ``run.json``; the results (``ab``, ``control``) are computed from those
files once every pass they need is there, and a reader can recompute them
(:func:`inferlab.analysis.answers.recheck`).

The criterion is fixed before the first pass and recorded with the check: same answers =
identical tokens (token ids where the server gives them) on every prompt; log-probabilities of
the identical tokens are compared against a stated tolerance and reported, but do not decide
"same answers". The control (A against A, same configuration, same concurrency) is held to the
same criterion; when it fails, the A/B's difference is not attributable to the change.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from ..specs import StrictModel
from .manifest import FileEntry

LOGPROB_ABS_TOL = 0.05  # nats; bf16 rounds a logit to ~3 significant digits, so A/A drift below this is expected
SHOWN_DIFFS = 5  # prompts whose texts the record keeps (the first ones in the set's order)


class Criterion(StrictModel):
    """What "same answers" means, fixed before the run."""

    same_answers: str = ("identical tokens on every prompt (token ids where the server returns them, else the "
                         "tokens' strings, else the text); a prompt without an answer on either side counts as "
                         "differing")
    logprob_abs_tol: float = Field(LOGPROB_ABS_TOL, description="largest |logprob difference| of an identical token "
                                   "that still counts as the same number (reported, not part of 'same answers')")
    control: str = ("the baseline against itself (a fresh engine of the same configuration where the comparison has "
                    "a later baseline repeat, else a second pass on the same engine), at the same concurrency, must "
                    "give the same answers; otherwise the A/B's difference is not attributable to the change")


class AnswerPass(StrictModel):
    role: Literal["baseline", "tuned", "control"]
    side: Literal["baseline", "tuned"]
    pair: int
    engine: Literal["fresh", "same"] = Field("fresh", description="same: a second pass on the engine of the "
                                             "baseline pass (the comparison had no later baseline repeat)")
    file: FileEntry | None = None
    answered: int = 0
    started_at: datetime | None = None
    ended_at: datetime | None = None
    reason: str = Field("", description="why this pass has no usable file ('' when it has)")


class PromptDiff(StrictModel):
    prompt_id: str
    position: int | None = Field(description="first divergent token (0-based); None: a side has no answer")
    baseline_token: str = ""
    tuned_token: str = ""
    baseline_text: str = ""
    tuned_text: str = ""
    note: str = ""


class DiffResult(StrictModel):
    """One side's answers against another's, prompt by prompt."""

    n_prompts: int
    n_differ: int = Field(description="prompts whose answers differ (missing answers included)")
    n_missing: int = Field(0, description="prompts without an answer on one side or both")
    unit: str = Field(description="what was compared: token ids, tokens or text characters")
    identical: bool
    differing: list[str] = Field(default_factory=list, description="ids of the differing prompts")
    first: list[PromptDiff] = Field(default_factory=list, description="the first differing prompts, both texts")
    max_logprob_diff: float | None = Field(None, description="largest |logprob difference| over identical tokens")
    n_logprob_beyond_tol: int = Field(0, description="prompts with identical tokens but a logprob difference over tol")
    summary: str


class AnswerCheck(StrictModel):
    prompt_set: str
    prompt_set_sha256: str
    n_prompts: int
    temperature: float = 0.0
    max_tokens: int
    concurrency: int
    criterion: Criterion = Field(default_factory=Criterion)
    status: Literal["running", "complete", "incomplete"] = "running"
    reason: str = ""
    passes: list[AnswerPass] = Field(default_factory=list)
    ab: DiffResult | None = None
    control: DiffResult | None = None
    label: str = Field("", description="the verdict's answer phrase: 'answers differ on 7 of 32 prompts'")

    def passed(self, role: str) -> AnswerPass | None:
        """The pass of ``role`` with a usable file (some prompt answered), if any."""
        return next((p for p in self.passes if p.role == role and p.file is not None and not p.reason), None)
