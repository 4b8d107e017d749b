"""One record store for runs, comparisons, tunes and bisects: where each kind lives, one id rule, one save.

A record is a folder named by its id holding one JSON file: ``run.json`` (runs, in data/runs
then data/sample), ``comparison.json`` (data/comparisons then data/sample/comparisons),
``tune.json`` (data/tunes), ``bisect.json`` (data/bisects). :meth:`RecordStore.find` resolves what a user typed the same way
for all four:

1. a path to the record's folder (or to its JSON file);
2. else an exact id, the first folder searched winning;
3. else a unique prefix of an id (``20261127T0747``);
4. else :class:`AmbiguousRecordError` listing the candidates, or :class:`RecordNotFoundError`
   naming where it looked and the ids it knows. Both are ``FileNotFoundError``, so a caller asking "is it one?"
   catches one type.

:meth:`RecordStore.save` is the one atomic write (temp file + rename): the record's file is
the only one of its folder ever replaced.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, Field

from .. import paths
from ..specs import StrictModel
from .layout import MANIFEST

M = TypeVar("M", bound=BaseModel)


class RecordNotFoundError(FileNotFoundError):
    """No record matches; the message names the folders searched."""


class AmbiguousRecordError(RecordNotFoundError):
    """A prefix matches several records; ``candidates`` are their ids."""

    def __init__(self, message: str, candidates: list[str]) -> None:
        super().__init__(message)
        self.candidates = candidates


@dataclass(frozen=True)
class RecordStore:
    """Where one kind of record lives and how its ids resolve (see the module docstring)."""

    kind: str  # "run", "comparison", "tune", "bisect": in messages
    filename: str  # the record's JSON file inside its folder
    locations: Callable[[], list[Path]]  # folders searched in order; new records go to the first

    @property
    def home(self) -> Path:
        """Where new records are written."""
        return self.locations()[0]

    def folders(self) -> list[Path]:
        """Every record's folder, in search order (by location, then by id)."""
        return [d for base in self.locations() if base.is_dir()
                for d in sorted(base.iterdir()) if (d / self.filename).is_file()]

    def find(self, ref: str | Path) -> Path:
        """The folder of the record ``ref`` names: a path, an exact id or a unique id prefix."""
        p = Path(ref)
        if p.name == self.filename and p.is_file():
            return p.parent.resolve()
        if (p / self.filename).is_file():
            return p.resolve()
        ref = str(ref)
        for base in self.locations():
            if (base / ref / self.filename).is_file():
                return base / ref
        hits: dict[str, Path] = {}
        for d in self.folders():
            if d.name.startswith(ref):
                hits.setdefault(d.name, d)  # the same id in two locations: the first one, as above
        if len(hits) == 1:
            return next(iter(hits.values()))
        if hits:
            raise AmbiguousRecordError(f"{self.kind} {ref!r} is ambiguous: it starts {len(hits)} {self.kind} ids "
                                       f"({', '.join(hits)})", list(hits))
        where = " or ".join(str(b) for b in self.locations())
        known = ", ".join(d.name for d in self.folders()) or "none"
        raise RecordNotFoundError(f"no {self.kind} {ref!r} (an id, a unique prefix of one, or a path) in {where} "
                                  f"(known: {known})")

    def exists(self, ref: str | Path) -> bool:
        """Whether ``ref`` names exactly one record."""
        try:
            self.find(ref)
            return True
        except RecordNotFoundError:
            return False

    def load(self, ref: str | Path, model: type[M]) -> M:
        return model.model_validate_json((self.find(ref) / self.filename).read_text())

    def save(self, record: BaseModel, folder: Path) -> None:
        """Replace ``folder``'s record file atomically with ``record``."""
        tmp = folder / f".{self.filename}.tmp"
        tmp.write_text(record.model_dump_json(indent=1))
        os.replace(tmp, folder / self.filename)


RUNS = RecordStore("run", MANIFEST, lambda: [paths.runs_dir(), paths.sample_dir()])
COMPARISONS = RecordStore("comparison", "comparison.json", lambda: [paths.workspace_root() / "data" / "comparisons",
                                                                    paths.sample_dir() / "comparisons"])
TUNES = RecordStore("tune", "tune.json", lambda: [paths.workspace_root() / "data" / "tunes"])
BISECTS = RecordStore("bisect", "bisect.json", lambda: [paths.workspace_root() / "data" / "bisects"])


class RecordHeader(StrictModel):
    """The fields comparison, tune and bisect records share: a study of several runs, replaced
    as its runs finish. (A run's own record is :class:`inferlab.runs.manifest.Manifest`.)"""

    schema_version: int = 1
    created_at: datetime
    ended_at: datetime | None = None
    status: Literal["running", "complete", "partial", "failed"] = "running"
    reason: str = ""
    target: str
    notes: list[str] = Field(default_factory=list)
