"""``nvidia-smi --query-gpu=... --format=csv[,nounits]`` -> long rows (ts, gpu_index, metric, value, unit).

Any subset and order of fields; ``[N/A]`` / ``[Not Supported]`` become NaN with the row kept.
nvidia-smi stamps rows in the host's local time without an offset, so the caller passes the
host's UTC offset (the run manifest records it). Several GPUs appear as consecutive rows with
the same timestamp; ``index`` is used when queried, else the row's position within its stamp.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from pathlib import Path

import pandas as pd

from .errors import IngestError, LineStats, attach
from .lines import open_maybe_gzip

# nvidia-smi field -> tidy metric stem; the unit suffix is appended from the header.
FIELD_NAMES = {
    "utilization.gpu": "utilization_gpu",
    "utilization.memory": "utilization_memory",
    "memory.used": "memory_used",
    "memory.total": "memory_total",
    "memory.free": "memory_free",
    "temperature.gpu": "temperature_gpu",
    "temperature.memory": "temperature_memory",
    "power.draw": "power_draw",
    "power.limit": "power_limit",
    "clocks.sm": "clocks_sm",
    "clocks.mem": "clocks_mem",
    "fan.speed": "fan_speed",
}
UNIT_SUFFIX = {"%": "pct", "MiB": "mib", "W": "w", "MHz": "mhz", "C": "c", "": ""}
DEFAULT_UNITS = {"temperature_gpu": "C", "temperature_memory": "C"}
MISSING = {"[N/A]", "[Not Supported]", "N/A", "[Unknown Error]", ""}
HEADER_RE = re.compile(r"^\s*([\w.]+)(?:\s*\[([^\]]*)\])?\s*$")
TS_FORMAT = "%Y/%m/%d %H:%M:%S.%f"


def _metric_name(field: str, unit: str) -> tuple[str, str]:
    stem = FIELD_NAMES.get(field, field.replace(".", "_"))
    unit = unit or DEFAULT_UNITS.get(stem, "")
    suffix = UNIT_SUFFIX.get(unit, unit.lower())
    return (f"{stem}_{suffix}" if suffix else stem), unit


def read_nvidia_smi(path: str | Path, utc_offset_minutes: int = 0) -> pd.DataFrame:
    """Long table: ts (UTC), gpu_index, metric (e.g. utilization_gpu_pct), value, unit."""
    stats = LineStats(str(path))
    with open_maybe_gzip(path) as fh:
        text = fh.read().decode("utf-8", errors="replace")
    lines = text.splitlines()
    if not lines or "timestamp" not in lines[0]:
        raise IngestError(path, 1, "an nvidia-smi --format=csv header starting with 'timestamp'", lines[0] if lines else "")
    fields = []
    for col in next(csv.reader([lines[0]], skipinitialspace=True)):
        m = HEADER_RE.match(col)
        if not m:
            raise IngestError(path, 1, "header fields like 'power.draw [W]'", col)
        fields.append((m.group(1), m.group(2) or ""))
    names = [f for f, _ in fields]
    ts_col = names.index("timestamp")
    idx_col = names.index("index") if "index" in names else None
    rows = []
    last_ts, pos = None, 0
    truncated_tail = not text.endswith("\n")
    for line_no, rec in enumerate(csv.reader(io.StringIO("\n".join(lines[1:])), skipinitialspace=True), start=2):
        stats.lines_read += 1
        if not rec:
            stats.lines_skipped += 1
            continue
        if len(rec) != len(fields):
            if truncated_tail and line_no == len(lines):
                stats.skip_truncated_tail(line_no)
                continue
            raise IngestError(path, line_no, f"{len(fields)} comma-separated fields as in the header", ",".join(rec))
        raw_ts = rec[ts_col].strip()
        pos = pos + 1 if raw_ts == last_ts else 0
        last_ts = raw_ts
        gpu = int(rec[idx_col]) if idx_col is not None else pos
        for (field, unit), raw in zip(fields, rec):
            if field in ("timestamp", "index"):
                continue
            metric, unit = _metric_name(field, unit)
            value, _, inline_unit = raw.strip().partition(" ")
            missing = raw.strip() in MISSING
            rows.append((raw_ts, gpu, metric, None if missing else value, unit or inline_unit, line_no, missing))
        stats.lines_used += 1
    df = pd.DataFrame(rows, columns=["ts", "gpu_index", "metric", "value", "unit", "line", "missing"])
    ts = pd.to_datetime(df["ts"], format=TS_FORMAT, errors="coerce")
    if ts.isna().any():
        bad = df[ts.isna()].iloc[0]
        raise IngestError(path, int(bad["line"]), "a timestamp like 2026/11/26 20:50:48.769", bad["ts"])
    df["ts"] = (ts - timedelta(minutes=utc_offset_minutes)).dt.tz_localize("UTC")
    value = pd.to_numeric(df["value"], errors="coerce")
    bad = value.isna() & ~df["missing"]
    if bad.any():
        row = df[bad].iloc[0]
        raise IngestError(path, int(row["line"]), f"a number or [N/A] for {row['metric']}", str(row["value"]))
    df["value"] = value
    return attach(df.drop(columns=["line", "missing"]), stats)
