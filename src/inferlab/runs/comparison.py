"""Comparison records: ``data/comparisons/<comparison_id>/comparison.json`` (shipped ones under
``data/sample/comparisons/``). A comparison lists its repeats (each a complete run of its own)
in the order they ran, with the server each ran against, so a reader can check that the sides
alternated and the engine restarted between them. The file is replaced atomically as repeats
finish; the runs it names are write-once as always. Ids resolve as every record's do
(:mod:`inferlab.runs.records`: exact id or unique prefix).

A comparison cut by Ctrl-C or a time limit's SIGTERM is ``partial``; ``inferlab ab --resume``
(sweep/ab.py ``resume_comparison``) continues it in the same record from what the record holds:
the specs, ``order`` and ``seed`` (which give the planned order of every repeat), ``pairs`` and
the stopping rule, ``base_url``, ``overlays`` and ``engine`` (the local engine choice), and
``writer`` (the process writing it, judged by the run store's test of a dead writer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ..specs import StrictModel
from .answer_record import AnswerCheck
from .manifest import WriterInfo
from .records import COMPARISONS, RecordHeader

COMPARISON = COMPARISONS.filename


class Repeat(StrictModel):
    side: Literal["baseline", "tuned"]
    pair: int
    run_id: str
    status: str = "running"
    engine: dict[str, Any] = Field(default_factory=dict, description="configuration, process and lifetime of its server")


class Comparison(RecordHeader):
    comparison_id: str
    order: Literal["abba", "alternate", "random"] = Field(
        description="abba: pair k runs A B when k is odd, B A when even (sweep/ab.py); alternate: A B every pair; "
                    "random: a seeded random order within each pair")
    seed: int
    baseline: dict[str, Any] = Field(description="the resolved baseline spec")
    tuned: dict[str, Any] = Field(description="the resolved tuned spec")
    primary: str = "throughput"
    until_width: float | None = None
    pairs: int | None = Field(default=None, description="pairs asked for (the first look of --until-width)")
    max_pairs: int | None = Field(default=None, description="--until-width's budget: its last look")
    base_url: str | None = Field(None, description="the server URL the comparison was given (target url); resume "
                                 "reuses it")
    overlays: list[str] | None = Field(None, description="target k8s: the (baseline, tuned) overlays deployed before "
                                       "each repeat; resume reuses them")
    engine: dict[str, str | None] | None = Field(None, description="target local: the engine choice (python, model, "
                                                 "device: targets/engine.engine_choice); resume reuses it")
    writer: WriterInfo | None = Field(None, description="the process writing the record (a resume refuses while it "
                                      "runs)")
    repeats: list[Repeat] = Field(default_factory=list)
    answers: AnswerCheck | None = Field(None, description="the answer check (runs/answer_record.py); None: not run")
    builds: dict[str, dict[str, Any]] = Field(default_factory=dict, description="a bisect step: the engine build "
                                              "each side ran (baseline, tuned -> name, python or image)")

    @property
    def name(self) -> str:
        """The label of its runs (``<name>-a|b``): the id's part after ``-ab-`` (sweep/ab.py)."""
        return self.comparison_id.split("-ab-", 1)[1]

    def run_ids(self, side: str) -> list[str]:
        """A side's repeats that ran (failed and partial ones too: their failures count)."""
        return [r.run_id for r in self.repeats if r.side == side and r.status in ("complete", "partial", "failed")]


def comparisons_dir() -> Path:
    """Where new comparison records are written (data/comparisons)."""
    return COMPARISONS.home


def find_comparison(comparison_id: str | Path) -> Path:
    """The comparison.json of a comparison (an id, unique prefix allowed, or a path)."""
    return COMPARISONS.find(comparison_id) / COMPARISON


def load_comparison(comparison_id: str | Path) -> Comparison:
    return COMPARISONS.load(comparison_id, Comparison)


def sample_comparisons() -> list[str]:
    """Ids of the comparison records shipped in data/sample/comparisons/, oldest first."""
    shipped = COMPARISONS.locations()[-1]
    return [d.name for d in COMPARISONS.folders() if d.parent == shipped]


def comparison_runs(comparison_ids: list[str]) -> set[str]:
    """Every run id the given comparisons name (their repeats get no report of their own)."""
    return {r.run_id for cid in comparison_ids for r in load_comparison(cid).repeats}


def is_comparison(name: str) -> bool:
    return COMPARISONS.exists(name)


def save_comparison(c: Comparison, d: Path) -> None:
    COMPARISONS.save(c, d)
