"""Request traces (Azure LLM inference, Mooncake, BurstGPT layouts) -> one row per request, under
the ingest contract (:class:`IngestError` on bad input, line accounting in ``df.attrs["ingest"]``).

The layouts themselves, and their writers, live in ``inferlab.formats`` (``azure_trace``,
``mooncake_trace``, ``burstgpt_trace``): a trace is a workload input that the write side replays
too, so its format sits below both sides of the hourglass.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from ..formats import burstgpt_trace, mooncake_trace
from ..formats.azure_trace import TraceFormatError, read_trace
from ..formats.azure_trace import write_trace as write_azure_trace
from .errors import IngestError, LineStats, attach

__all__ = ["read_azure_trace", "read_burstgpt_trace", "read_mooncake_trace", "write_azure_trace"]


def _ingest(reader: Callable[[str | Path], pd.DataFrame], path: str | Path, header_lines: int) -> pd.DataFrame:
    try:
        out = reader(path)
    except TraceFormatError as exc:
        raise IngestError(exc.path, exc.line, exc.expected, exc.got) from None
    blank = out.attrs.pop("blank_lines")
    stats = LineStats(str(path), lines_read=header_lines + len(out) + len(blank), lines_used=len(out),
                      lines_skipped=len(blank), notes=[f"{path}:{line}: blank line skipped" for line in blank])
    return attach(out, stats)


def read_azure_trace(path: str | Path) -> pd.DataFrame:
    """``line``, ``ts`` (UTC), ``offset_s``, ``context_tokens``, ``generated_tokens``, sorted by
    time (:func:`inferlab.formats.azure_trace.read_trace`); a bad header, timestamp or token count is an
    IngestError naming the line and field; blank lines are skipped and counted."""
    return _ingest(read_trace, path, 1)


def read_mooncake_trace(path: str | Path) -> pd.DataFrame:
    """``line``, ``offset_s`` (from ms), ``context_tokens``, ``generated_tokens``, ``hash_ids``
    (:func:`inferlab.formats.mooncake_trace.read_trace`); a bad line is an IngestError naming
    line and field; blank lines are skipped and counted."""
    return _ingest(mooncake_trace.read_trace, path, 0)


def read_burstgpt_trace(path: str | Path) -> pd.DataFrame:
    """``line``, ``offset_s`` (s), ``model``, ``log_type``, ``context_tokens``, ``generated_tokens``
    (:func:`inferlab.formats.burstgpt_trace.read_trace`); a bad line is an IngestError naming
    line and field; blank lines are skipped and counted."""
    return _ingest(burstgpt_trace.read_trace, path, 1)
