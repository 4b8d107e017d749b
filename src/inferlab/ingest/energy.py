"""GPU energy samples -> one tidy table, from either witness:

- :func:`read_energy`: a cell's ``energy.csv`` (telemetry/energy.py: NVML's counter in mJ and
  power in mW per GPU);
- :func:`dcgm_energy_samples`: a cluster Prometheus' DCGM series as ``ingest.series.read_samples``
  reads them (``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION``, a counter in mJ, and
  ``DCGM_FI_DEV_POWER_USAGE``, a gauge in W: dcgm-exporter's documented field names and units;
  ``platform/schemas/dcgm-exporter-fields.txt``).

Both give the same columns: ``ts`` (UTC), ``gpu`` (a string: NVML's index, or DCGM's ``gpu``
label prefixed by its ``Hostname`` where there is one, so two nodes' GPU 0 stay apart),
``energy_j`` (the counter in joules; NaN where the GPU has none), ``power_w`` (NaN where not
read) and ``source`` (``nvml`` | ``dcgm``). Counters are kept as read; differencing over a
window is analysis/energy.py's job.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..formats.energy import HEADER
from .errors import IngestError, LineStats, attach
from .lines import read_lines

COLUMNS = ["ts", "gpu", "energy_j", "power_w", "source"]
DCGM_ENERGY, DCGM_POWER = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "DCGM_FI_DEV_POWER_USAGE"


def _number(text: str, path: Path, line_no: int, field: str) -> float:
    if text == "":
        return np.nan
    try:
        value = float(text)
    except ValueError:
        raise IngestError(path, line_no, f"{field} a number (or empty where NVML has none)", text) from None
    if value < 0 or not np.isfinite(value):
        raise IngestError(path, line_no, f"{field} a finite number >= 0", text)
    return value


def read_energy(path: str | Path) -> pd.DataFrame:
    """One row per GPU reading of an ``energy.csv``; IngestError names the line and field of a
    bad row (a truncated last line is skipped and counted, as every reader does)."""
    path = Path(path)
    stats = LineStats(str(path))
    lines = read_lines(path, stats)
    if not lines:
        raise IngestError(path, 1, f"a header {','.join(HEADER)}")
    if next(csv.reader([lines[0]])) != HEADER:
        raise IngestError(path, 1, f"the header {','.join(HEADER)}", lines[0])
    rows, stats.lines_used = [], 1  # the header
    for line_no, row in enumerate(csv.reader(io.StringIO("\n".join(lines[1:]))), start=2):
        if len(row) != len(HEADER):
            raise IngestError(path, line_no, f"{len(HEADER)} fields ({','.join(HEADER)})", ",".join(row))
        ts = pd.to_datetime(row[0], utc=True, errors="coerce", format="ISO8601")
        if pd.isna(ts):
            raise IngestError(path, line_no, "ts an ISO 8601 time", row[0])
        if not row[1].isdigit():
            raise IngestError(path, line_no, "gpu_index a GPU index (0, 1, ...)", row[1])
        mj = _number(row[3], path, line_no, "energy_mj")
        mw = _number(row[4], path, line_no, "power_mw")
        rows.append((ts, row[1], mj / 1000.0, mw / 1000.0, "nvml"))
        stats.lines_used += 1
    df = pd.DataFrame(rows, columns=COLUMNS)
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    return attach(df, stats)


def dcgm_energy_samples(raw: pd.DataFrame) -> pd.DataFrame:
    """The DCGM energy and power samples of a raw series table (``ingest.series.read_samples``
    columns: ts, name, labels (JSON), value, ...), in this module's columns: one row per GPU and
    timestamp, mJ -> J. Empty (with the columns) where the window has neither field."""
    if raw.empty or "name" not in raw.columns:
        return pd.DataFrame(columns=COLUMNS)
    sel = raw[raw["name"].isin([DCGM_ENERGY, DCGM_POWER])]
    if sel.empty:
        return pd.DataFrame(columns=COLUMNS)

    def gpu_of(labels: str) -> str:
        lab = json.loads(labels) if labels else {}
        gpu = lab.get("gpu", lab.get("UUID", "?"))
        return f"{lab['Hostname']}/{gpu}" if lab.get("Hostname") else str(gpu)

    df = sel.assign(gpu=sel["labels"].map(gpu_of), ts=pd.to_datetime(sel["ts"], utc=True))
    wide = df.pivot_table(index=["ts", "gpu"], columns="name", values="value", aggfunc="last").reset_index()
    out = pd.DataFrame({"ts": wide["ts"], "gpu": wide["gpu"],
                        "energy_j": wide[DCGM_ENERGY] / 1000.0 if DCGM_ENERGY in wide else np.nan,
                        "power_w": wide[DCGM_POWER] if DCGM_POWER in wide else np.nan, "source": "dcgm"})
    return out.sort_values(["gpu", "ts"], ignore_index=True)[COLUMNS]
