"""LLM request traces in the layout of the public Azure LLM inference traces -> one row per request.

The layout (Azure/AzurePublicDataset, ``AzureLLMInferenceTrace_{code,conv}.csv``, 2023 and 2024):
a header ``TIMESTAMP,ContextTokens,GeneratedTokens``, then one request per line, e.g.
``2023-11-16 18:15:46.6805900,4808,10`` (local time without zone, up to 7 fractional digits).
Columns may come in any order; extra columns are ignored. Output: ``line`` (1-based, in the
file), ``ts`` (UTC, the trace's clock), ``offset_s`` (seconds since the first request),
``context_tokens``, ``generated_tokens``, sorted by time.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from .errors import IngestError, LineStats, attach

COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


def read_azure_trace(path: str | Path) -> pd.DataFrame:
    """Read a trace; a bad header, timestamp or token count is an IngestError naming the line and field."""
    path = Path(path)
    stats = LineStats(str(path))
    rows = []
    try:
        fh = open(path, newline="", encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise IngestError(path, None, "a readable Azure LLM trace CSV", str(exc)) from None
    with fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise IngestError(path, None, f"a header {','.join(COLUMNS)}", "an empty file")
        missing = [c for c in COLUMNS if c not in [h.strip() for h in header]]
        if missing:
            raise IngestError(path, 1, f"a header with columns {', '.join(COLUMNS)} (missing {', '.join(missing)})",
                              ",".join(header))
        idx = {c: [h.strip() for h in header].index(c) for c in COLUMNS}
        stats.lines_read = 1
        for fields in reader:
            line = reader.line_num
            stats.lines_read += 1
            if not fields or all(not f.strip() for f in fields):
                stats.lines_skipped += 1
                stats.notes.append(f"{path}:{line}: blank line skipped")
                continue
            if len(fields) < len(header):
                raise IngestError(path, line, f"{len(header)} fields ({','.join(header)})", ",".join(fields))
            rows.append((line, *(fields[idx[c]].strip() for c in COLUMNS)))
    df = pd.DataFrame(rows, columns=["line", "TIMESTAMP", "ContextTokens", "GeneratedTokens"])
    ts = pd.to_datetime(df["TIMESTAMP"], format="ISO8601", errors="coerce", utc=True)
    _first_bad(path, df, ts.isna(), "TIMESTAMP", "a timestamp like 2023-11-16 18:15:46.6805900")
    out = pd.DataFrame({"line": df["line"], "ts": ts})
    for col, name in (("ContextTokens", "context_tokens"), ("GeneratedTokens", "generated_tokens")):
        n = pd.to_numeric(df[col], errors="coerce")
        _first_bad(path, df, n.isna() | (n < 0) | (n != n.round()), col, f"{col}: a non-negative integer")
        out[name] = n.astype("int64")
    out = out.sort_values(["ts", "line"], kind="stable").reset_index(drop=True)
    out.insert(2, "offset_s", (out["ts"] - out["ts"].min()).dt.total_seconds() if len(out) else pd.Series(dtype=float))
    stats.lines_used = len(out)
    return attach(out, stats)


def _first_bad(path: Path, df: pd.DataFrame, bad: pd.Series, field: str, expected: str) -> None:
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise IngestError(path, int(df["line"].iloc[i]), f"field {field}: {expected}", str(df[field].iloc[i]))


def write_azure_trace(path: str | Path, trace: pd.DataFrame) -> None:
    """Write ``ts``, ``context_tokens``, ``generated_tokens`` in the Azure layout (7 fractional digits)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(COLUMNS)
        for ts, ctx, gen in trace[["ts", "context_tokens", "generated_tokens"]].itertuples(index=False):
            t = pd.Timestamp(ts).tz_convert(None) if pd.Timestamp(ts).tzinfo else pd.Timestamp(ts)
            w.writerow([t.strftime("%Y-%m-%d %H:%M:%S.") + f"{t.microsecond:06d}{t.nanosecond // 100}",
                        int(ctx), int(gen)])
