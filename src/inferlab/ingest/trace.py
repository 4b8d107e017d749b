"""Request traces in the Azure LLM inference trace layout -> one row per request, under the
ingest contract (:class:`IngestError` on bad input, line accounting in ``df.attrs["ingest"]``).

The layout itself, and its writer, live in :mod:`inferlab.formats.azure_trace`: a trace is a workload
input that the write side replays too, so its format sits below both sides of the hourglass.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..formats.azure_trace import TraceFormatError, read_trace
from ..formats.azure_trace import write_trace as write_azure_trace
from .errors import IngestError, LineStats, attach

__all__ = ["read_azure_trace", "write_azure_trace"]


def read_azure_trace(path: str | Path) -> pd.DataFrame:
    """``line``, ``ts`` (UTC), ``offset_s``, ``context_tokens``, ``generated_tokens``, sorted by
    time (:func:`inferlab.formats.azure_trace.read_trace`); a bad header, timestamp or token count is an
    IngestError naming the line and field; blank lines are skipped and counted."""
    try:
        out = read_trace(path)
    except TraceFormatError as exc:
        raise IngestError(exc.path, exc.line, exc.expected, exc.got) from None
    blank = out.attrs.pop("blank_lines")
    stats = LineStats(str(path), lines_read=1 + len(out) + len(blank), lines_used=len(out), lines_skipped=len(blank),
                      notes=[f"{path}:{line}: blank line skipped" for line in blank])
    return attach(out, stats)
