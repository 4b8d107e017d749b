"""Bisect records: ``data/bisects/<bisect_id>/bisect.json`` (this model), replaced atomically as
steps finish, as comparison.json and tune.json are; ids resolve as every record's do
(:mod:`inferlab.runs.records`: exact id, unique prefix or path).

Beside it, written once (read-only, each listed here with its sha256 and size as a run's files
are in ``run.json``):

- ``builds.yaml``: the builds as the bisect took them (the ``--builds`` file's parsed content,
  or the ``--build`` options written out as one), in order, the first the known-good reference;
- ``steps/<n>-gate.txt``: each step's gate report, the lines ``inferlab gate`` prints for that
  step's comparison.

Every step is a comparison record of its own (data/comparisons), whose repeats are runs; the
bisect names each step's comparison id, gate outcome and why, and the result.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ..specs import StrictModel
from ..specs.builds import Build
from .manifest import FileEntry, WriterInfo
from .records import BISECTS, RecordHeader

BISECT = BISECTS.filename
BUILDS_FILE = "builds.yaml"
OUTCOMES = ("non-inferior", "regression", "inconclusive")  # the gate's (analysis/gate.py EXIT)
Outcome = Literal["non-inferior", "regression", "inconclusive"]
Result = Literal["none regressed", "first bad build", "inconclusive"]


def gate_file(number: int) -> str:
    return f"steps/{number}-gate.txt"


class BisectBuild(Build):
    """A build as the bisect ran it: the builds file's fields plus what was found."""

    vllm: str | None = Field(None, description="the version its server reported (/version), from its first run")
    override: dict[str, Any] | None = Field(None, description="k8s: the kustomize images entry deployed for it")
    rendered_image: str | None = Field(None, description="k8s: the engine image the rendered overlay carries")


class GateRow(StrictModel):
    """One gated cell x metric of a step (analysis/gate.py GateLine, the numbers only)."""

    cell: str
    metric: str
    outcome: str
    ratio: float | None = Field(None, description="candidate / baseline (per-repeat geometric means)")
    ci_low: float | None = Field(None, description="the 1 - 2 alpha interval the gate reads")
    ci_high: float | None = None
    reason: str = ""


class BisectStep(StrictModel):
    number: int = Field(ge=1)
    baseline: str = Field(description="the last known-good build when the step ran")
    candidate: str = Field(description="the build under test")
    status: Literal["running", "complete", "failed"] = "running"
    comparison_id: str | None = None
    outcome: Outcome | None = Field(None, description="the gate's; None while running or when the step failed")
    why: str = Field("", description="the gate's summary line, or the error that stopped the step")
    rows: list[GateRow] = Field(default_factory=list)
    answers: str = Field("", description="the step's answer check label ('' when off or not decided)")
    gate: FileEntry | None = Field(None, description="the gate's report, written once (steps/<n>-gate.txt)")
    started_at: datetime | None = None
    ended_at: datetime | None = None


class BisectRecord(RecordHeader):
    bisect_id: str
    spec: dict[str, Any] = Field(description="the resolved load spec every step's A/B runs on both sides")
    margin: float = Field(description="the gate's margin (0.05 = ±5 %, symmetric on the log scale)")
    alpha: float
    primary: str
    token_slo: bool = Field(False, description="the token-level SLO percentiles gated too (else the primary only)")
    pairs: int
    order: str
    seed: int
    overlay: str | None = Field(None, description="k8s: the overlay each build's image is deployed with")
    search: str = Field(description="the search rule (analysis/bisect.py RULE)")
    builds: list[BisectBuild]
    builds_file: FileEntry | None = None
    steps: list[BisectStep] = Field(default_factory=list)
    result: Result | None = None
    first_bad: str | None = None
    last_good: str | None = None
    upper: str | None = Field(None, description="inconclusive: the last build the first bad one can be")
    summary: str = ""
    exit_code: int | None = Field(None, description="0 none regressed, 1 first bad build, 3 inconclusive, 2 failed")
    answer_check: bool = Field(True, description="each step's A/B checks its answers (a resume keeps the choice)")
    base_url: str | None = Field(None, description="the target's base URL where one was given (a resume keeps it)")
    engine_model: str | None = Field(None, description="local: the model every build served (INFERLAB_ENGINE_MODEL; "
                                                       "None: the bundled one); a resume serves the same")
    writer: WriterInfo | None = Field(None, description="the process writing the record (a resume refuses while it "
                                                        "runs)")


def bisects_dir() -> Path:
    """Where bisect records are written (data/bisects)."""
    return BISECTS.home


def load_bisect(bisect_id: str | Path) -> BisectRecord:
    return BISECTS.load(bisect_id, BisectRecord)


def save_bisect(record: BisectRecord, d: Path) -> None:
    BISECTS.save(record, d)
