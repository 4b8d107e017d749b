"""Request traces in the BurstGPT layout (HPMLL/BurstGPT, ``BurstGPT_1.csv`` and kin): read and write.

The layout: a CSV header ``Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type``,
then one request per line, e.g. ``5,ChatGPT,472,18,490,Conversation log``. ``Timestamp`` is the
send time in **seconds** since the trace started (a number); ``Response tokens`` is 0 for a
failed request (the ``_without_fails`` files drop those); ``Total tokens`` is request +
response; ``Log Type`` is ``Conversation log`` or ``API log``. Columns may come in any order;
extra columns are ignored; blank lines are skipped (``df.attrs["blank_lines"]``).

Decision: strict, like the Azure reader: every row's ``Total tokens`` must equal request +
response (a file whose columns were mislabelled fails here, not as odd lengths at replay), and
``Log Type`` must be one of the two published values. Errors are
:class:`~inferlab.formats.azure_trace.TraceFormatError` naming file, line and field.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pandas as pd

from .azure_trace import TraceFormatError, csv_records

COLUMNS = ("Timestamp", "Model", "Request tokens", "Response tokens", "Total tokens", "Log Type")
LOG_TYPES = ("Conversation log", "API log")


def _number(path: Path, line: int, field: str, raw: str, integer: bool) -> float:
    try:
        v = float(raw)
    except ValueError:
        v = math.nan
    if not math.isfinite(v) or v < 0 or (integer and v != round(v)):
        what = "a non-negative integer" if integer else "a non-negative number of seconds"
        raise TraceFormatError(path, line, f"field {field}: {what}", raw)
    return v


def read_trace(path: str | Path) -> pd.DataFrame:
    """One row per request, sorted by time: ``line`` (1-based), ``offset_s`` (``Timestamp``
    seconds minus the first), ``model``, ``log_type``, ``context_tokens`` (Request tokens),
    ``generated_tokens`` (Response tokens). A bad header, number, total or log type raises
    :class:`TraceFormatError` naming line and field."""
    path = Path(path)
    rows, blank = [], []
    for n, f in csv_records(path, COLUMNS, "BurstGPT trace CSV", blank):
        ts = _number(path, n, "Timestamp", f["Timestamp"], integer=False)
        req, resp, tot = (int(_number(path, n, c, f[c], integer=True)) for c in COLUMNS[2:5])
        if tot != req + resp:
            raise TraceFormatError(path, n, "field Total tokens: Request tokens + Response tokens "
                                   f"({req + resp})", f["Total tokens"])
        if f["Log Type"] not in LOG_TYPES:
            raise TraceFormatError(path, n, f"field Log Type: one of {', '.join(LOG_TYPES)}", f["Log Type"])
        if not f["Model"]:
            raise TraceFormatError(path, n, "field Model: a model name", "")
        rows.append((n, ts, f["Model"], f["Log Type"], req, resp))
    if not rows:
        raise TraceFormatError(path, None, "at least one request line after the header", "none")
    df = pd.DataFrame(rows, columns=["line", "ts_s", "model", "log_type", "context_tokens", "generated_tokens"])
    df = df.sort_values(["ts_s", "line"], kind="stable").reset_index(drop=True)
    ts = df.pop("ts_s")
    df.insert(1, "offset_s", ts - ts.min())
    df = df.astype({"context_tokens": "int64", "generated_tokens": "int64"})
    df.attrs["blank_lines"] = blank
    return df


def write_trace(path: str | Path, trace: pd.DataFrame) -> None:
    """Write ``timestamp_s``, ``model``, ``log_type``, ``context_tokens``, ``generated_tokens`` in
    the BurstGPT layout (timestamps with up to 3 decimals, Total tokens computed)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(COLUMNS)
        for ts, model, log, req, resp in trace[["timestamp_s", "model", "log_type", "context_tokens",
                                                "generated_tokens"]].itertuples(index=False):
            stamp = f"{float(ts):.3f}".rstrip("0").rstrip(".")
            w.writerow([stamp, model, int(req), int(resp), int(req) + int(resp), log])
