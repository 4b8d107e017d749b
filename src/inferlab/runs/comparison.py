"""Comparison records: ``data/comparisons/<comparison_id>/comparison.json`` (shipped ones under
``data/sample/comparisons/``). A comparison lists its repeats (each a complete run of its own)
in the order they ran, with the server each ran against, so a reader can check that the sides
alternated and the engine restarted between them. The file is replaced atomically as repeats
finish; the runs it names are write-once as always.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from .. import paths
from ..specs import StrictModel

COMPARISON = "comparison.json"


class Repeat(StrictModel):
    side: Literal["baseline", "tuned"]
    pair: int
    run_id: str
    status: str = "running"
    engine: dict[str, Any] = Field(default_factory=dict, description="configuration, process and lifetime of its server")


class Comparison(StrictModel):
    schema_version: int = 1
    comparison_id: str
    created_at: datetime
    ended_at: datetime | None = None
    status: Literal["running", "complete", "partial", "failed"] = "running"
    reason: str = ""
    target: str
    order: Literal["alternate", "random"]
    seed: int
    baseline: dict[str, Any] = Field(description="the resolved baseline spec")
    tuned: dict[str, Any] = Field(description="the resolved tuned spec")
    primary: str = "throughput"
    until_width: float | None = None
    repeats: list[Repeat] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    def run_ids(self, side: str) -> list[str]:
        """A side's repeats that ran (failed and partial ones too: their failures count)."""
        return [r.run_id for r in self.repeats if r.side == side and r.status in ("complete", "partial", "failed")]


def comparisons_dir() -> Path:
    return paths.workspace_root() / "data" / "comparisons"


def find_comparison(comparison_id: str) -> Path:
    for base in (comparisons_dir(), paths.sample_dir() / "comparisons"):
        p = base / comparison_id / COMPARISON
        if p.is_file():
            return p
    raise FileNotFoundError(f"no comparison {comparison_id!r} in {comparisons_dir()} or {paths.sample_dir() / 'comparisons'}")


def load_comparison(comparison_id: str | Path) -> Comparison:
    p = Path(comparison_id)
    p = p / COMPARISON if p.is_dir() else (p if p.is_file() else find_comparison(str(comparison_id)))
    return Comparison.model_validate_json(p.read_text())


def sample_comparisons() -> list[str]:
    """Ids of the comparison records shipped in data/sample/comparisons/, oldest first."""
    d = paths.sample_dir() / "comparisons"
    return sorted(p.parent.name for p in d.glob(f"*/{COMPARISON}")) if d.is_dir() else []


def comparison_runs(comparison_ids: list[str]) -> set[str]:
    """Every run id the given comparisons name (their repeats get no report of their own)."""
    return {r.run_id for cid in comparison_ids for r in load_comparison(cid).repeats}


def is_comparison(name: str) -> bool:
    try:
        find_comparison(name)
        return True
    except FileNotFoundError:
        return False


def save_comparison(c: Comparison, d: Path) -> None:
    tmp = d / f".{COMPARISON}.tmp"
    tmp.write_text(c.model_dump_json(indent=1))
    os.replace(tmp, d / COMPARISON)  # the only file ever replaced, atomically (like run.json)
