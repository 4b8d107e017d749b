"""Request traces in the layout of the public Azure LLM inference traces: read and write.

The layout (Azure/AzurePublicDataset, ``AzureLLMInferenceTrace_{code,conv}.csv``, 2023 and 2024):
a header ``TIMESTAMP,ContextTokens,GeneratedTokens``, then one request per line, e.g.
``2023-11-16 18:15:46.6805900,4808,10`` (local time without zone, up to 7 fractional digits).
Columns may come in any order; extra columns are ignored; blank lines are skipped (their line
numbers in ``df.attrs["blank_lines"]``).

Decision: a trace is a workload *input* (a workload file names it; ``load.workload`` replays
it), not a run output, so its format lives here, in the formats layer that both sides of the
hourglass may import (docs/architecture.md): the write side replays a trace, the read side
(``ingest.trace``) reads one under the ingest contract. A bad trace is a :class:`TraceFormatError`,
a :class:`~inferlab.specs.SpecError` because the workload that names it is a spec.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from ..specs import SpecError

COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


class TraceFormatError(SpecError):
    """A trace is not in the Azure layout. Names the file, the line (1-based; None: the whole
    file) and what was expected there, like :class:`inferlab.ingest.IngestError`."""

    def __init__(self, path: str | Path, line: int | None, expected: str, got: str = "") -> None:
        self.path, self.line, self.expected, self.got = str(path), line, expected, got
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: expected {expected}" + (f"; got {got[:120]!r}" if got else ""))


def read_trace(path: str | Path) -> pd.DataFrame:
    """One row per request, sorted by time: ``line`` (1-based, in the file), ``ts`` (UTC, the
    trace's clock), ``offset_s`` (seconds since the first request), ``context_tokens``,
    ``generated_tokens``. A bad header, timestamp or token count raises
    :class:`TraceFormatError` naming the line and field."""
    path = Path(path)
    blank: list[int] = []
    rows = [(n, *(f[c] for c in COLUMNS)) for n, f in csv_records(path, COLUMNS, "Azure LLM trace CSV", blank)]
    df = pd.DataFrame(rows, columns=["line", *COLUMNS])
    ts = pd.to_datetime(df["TIMESTAMP"], format="ISO8601", errors="coerce", utc=True)
    _first_bad(path, df, ts.isna(), "TIMESTAMP", "a timestamp like 2023-11-16 18:15:46.6805900")
    out = pd.DataFrame({"line": df["line"], "ts": ts})
    for col, name in (("ContextTokens", "context_tokens"), ("GeneratedTokens", "generated_tokens")):
        n = pd.to_numeric(df[col], errors="coerce")
        _first_bad(path, df, n.isna() | (n < 0) | (n != n.round()), col, f"{col}: a non-negative integer")
        out[name] = n.astype("int64")
    out = out.sort_values(["ts", "line"], kind="stable").reset_index(drop=True)
    out.insert(2, "offset_s", (out["ts"] - out["ts"].min()).dt.total_seconds() if len(out) else pd.Series(dtype=float))
    out.attrs["blank_lines"] = blank
    return out


def csv_records(path: Path, columns: tuple[str, ...], what: str, blank: list[int]) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line, {column: stripped value})`` for each request line of a trace CSV whose header names
    ``columns`` (in any order, others allowed); blank lines' numbers go into ``blank``. A missing
    file or header, a short line or bad UTF-8 raises :class:`TraceFormatError` naming the line.
    The one CSV prologue of the trace formats (Azure, BurstGPT)."""
    try:
        fh = open(path, newline="", encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise TraceFormatError(path, None, f"a readable {what}", str(exc)) from None
    with fh:
        reader = csv.reader(fh)
        try:
            header = next(reader, None)
            if header is None:
                raise TraceFormatError(path, None, f"a header {','.join(columns)}", "an empty file")
            names = [h.strip() for h in header]
            missing = [c for c in columns if c not in names]
            if missing:
                raise TraceFormatError(path, 1, f"a header with columns {', '.join(columns)} "
                                       f"(missing {', '.join(missing)})", ",".join(header))
            idx = {c: names.index(c) for c in columns}
            for fields in reader:
                n = reader.line_num
                if not fields or all(not f.strip() for f in fields):
                    blank.append(n)
                    continue
                if len(fields) < len(header):
                    raise TraceFormatError(path, n, f"{len(header)} fields ({','.join(header)})", ",".join(fields))
                yield n, {c: fields[idx[c]].strip() for c in columns}
        except UnicodeDecodeError as exc:
            raise TraceFormatError(path, None, "UTF-8 text", str(exc)) from None


def _first_bad(path: Path, df: pd.DataFrame, bad: pd.Series, field: str, expected: str) -> None:
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise TraceFormatError(path, int(df["line"].iloc[i]), f"field {field}: {expected}", str(df[field].iloc[i]))


def write_trace(path: str | Path, trace: pd.DataFrame) -> None:
    """Write ``ts``, ``context_tokens``, ``generated_tokens`` in the Azure layout (7 fractional digits)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(COLUMNS)
        for ts, ctx, gen in trace[["ts", "context_tokens", "generated_tokens"]].itertuples(index=False):
            t = pd.Timestamp(ts).tz_convert(None) if pd.Timestamp(ts).tzinfo else pd.Timestamp(ts)
            w.writerow([t.strftime("%Y-%m-%d %H:%M:%S.") + f"{t.microsecond:06d}{t.nanosecond // 100}",
                        int(ctx), int(gen)])
