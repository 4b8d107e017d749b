"""Errors and line accounting shared by every reader.

Contract: a reader either returns a DataFrame whose ``attrs["ingest"]`` says how many lines it
read, used and skipped (and why), or raises :class:`IngestError` naming file, line and what
it expected. The only tolerated defect is a truncated final line (a writer killed mid-line),
which is skipped with a warning and counted.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path


class IngestError(ValueError):
    """Input is not what it claims to be. Names the file, the line (1-based) and the expectation."""

    def __init__(self, path: str | Path, line: int | None, expected: str, got: str = "") -> None:
        self.path, self.line, self.expected = str(path), line, expected
        where = f"{path}:{line}" if line else str(path)
        snippet = f"; got {got[:120]!r}" if got else ""
        super().__init__(f"{where}: expected {expected}{snippet}")


class TruncatedLineWarning(UserWarning):
    """The last line of a file was cut off (the writer died mid-line); it was skipped."""


@dataclass
class LineStats:
    """How much of a file made it into a table. Stored in ``df.attrs["ingest"]``."""

    path: str
    lines_read: int = 0
    lines_used: int = 0
    lines_skipped: int = 0
    notes: list[str] = field(default_factory=list)

    def skip_truncated_tail(self, line_no: int) -> None:
        self.lines_skipped += 1
        msg = f"{self.path}:{line_no}: truncated final line skipped"
        self.notes.append(msg)
        warnings.warn(msg, TruncatedLineWarning, stacklevel=3)

    def as_dict(self) -> dict:
        return asdict(self)


def attach(df, stats: LineStats):
    """Attach line accounting to a frame and return it."""
    df.attrs["ingest"] = stats.as_dict()
    return df
