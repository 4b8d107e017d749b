"""``nvidia-smi --query-gpu=... --format=csv[,nounits] -l N | -lms N`` -> two tidy tables.

* ``gpu`` (what :func:`read_nvidia_smi` returns, the tidy ``gpu`` contract): numeric samples in
  long form, ts (UTC), gpu_index, metric (e.g. ``utilization_gpu_pct``), value, unit.
* ``gpus`` (:func:`read_nvidia_smi_gpus`): one row per GPU with its text fields as attributes
  (name, uuid, pci_bus_id, driver_version, pstate, compute_mode, persistence_mode, ...).

Any subset and order of fields, with or without ``nounits``, one GPU or several. Which table a
field goes to: a unit in the header (``power.draw [W]``) or a known numeric field
(``temperature.gpu``, ``pcie.link.gen.current``, ...) makes a numeric metric, and a value there
that is not a number or a bracketed non-value is an IngestError naming file, line and field. The
clock-event bitmasks (``clocks_event_reasons.active``, formerly ``clocks_throttle_reasons.active``,
``0x0000000000000004``) become integer-valued metrics with unit ``bitmask``: they change with load
and belong on the time axis. Known text fields (name, uuid, pci.*, versions, modes, pstate, the
per-reason ``Active``/``Not Active`` flags) are attributes; a field this module does not know is
numeric when every value is a decimal number, else an attribute, so no query is rejected for
its text. Bracketed values (``[N/A]``, ``[Not Supported]``, ``[Unknown Error]``, ...) are
missing: NaN rows kept in ``gpu``, NaN in ``gpus``.

Timestamps: nvidia-smi stamps rows in the host's local time without an offset, so the caller
passes the host's UTC offset (the run manifest records it). ``-l`` and ``-lms`` write the same
``2026/11/27 06:47:30.381`` form. GPU identity: the ``index`` column when queried; else the
first of uuid / pci.bus_id / serial, numbered in order of first appearance (nvidia-smi lists GPUs
by index, so this is the index when every GPU is logged); else inferred from the stamps. Older
drivers gave all GPUs of a sample one stamp; driver 580 stamps each GPU row on its own a few ms
apart: rows closer together than the sampling gap form a sample, and a GPU is its position in
its sample, trusted only when every sample has the same size (else position within identical
stamps, the old rule, with a note).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

from .errors import IngestError, LineStats, attach
from .lines import read_lines

# nvidia-smi field (as queried or as the header prints it) -> tidy metric stem; the unit suffix
# is appended from the header. Both names of a renamed field map to one stem.
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
    "clocks.current.sm": "clocks_sm",
    "clocks.mem": "clocks_mem",
    "clocks.current.memory": "clocks_mem",
    "clocks.gr": "clocks_graphics",
    "clocks.current.graphics": "clocks_graphics",
    "fan.speed": "fan_speed",
    "clocks_event_reasons.active": "clocks_event_reasons_active",
    "clocks_throttle_reasons.active": "clocks_event_reasons_active",
    "clocks_event_reasons.supported": "clocks_event_reasons_supported",
    "clocks_throttle_reasons.supported": "clocks_event_reasons_supported",
    # text fields: attribute column names
    "gpu_name": "name",
    "gpu_uuid": "uuid",
    "gpu_serial": "serial",
    "gpu_bus_id": "pci_bus_id",
    "pci.bus_id": "pci_bus_id",
}
UNIT_SUFFIX = {"%": "pct", "MiB": "mib", "W": "w", "MHz": "mhz", "C": "c", "": "", "bitmask": ""}
DEFAULT_UNITS = {"temperature_gpu": "C", "temperature_memory": "C"}
# numeric without a unit in the header
NUMERIC_FIELDS = {
    "temperature.gpu", "temperature.memory", "count", "pcie.link.gen.current", "pcie.link.gen.max",
    "pcie.link.gen.gpucurrent", "pcie.link.gen.gpumax", "pcie.link.gen.hostmax",
    "pcie.link.width.current", "pcie.link.width.max", "encoder.stats.sessionCount",
    "encoder.stats.averageFps", "encoder.stats.averageLatency", "temperature.gpu.tlimit",
}
NUMERIC_PREFIXES = ("ecc.errors.", "retired_pages.", "remapped_rows.")
BITMASK_FIELDS = {"clocks_event_reasons.active", "clocks_throttle_reasons.active",
                  "clocks_event_reasons.supported", "clocks_throttle_reasons.supported"}
TEXT_FIELDS = {
    "name", "gpu_name", "uuid", "gpu_uuid", "serial", "gpu_serial", "pci.bus_id", "gpu_bus_id",
    "driver_version", "vbios_version", "pstate", "compute_mode", "persistence_mode", "display_mode",
    "display_active", "display_attached", "accounting.mode", "compute_cap", "addressing_mode",
    "power.management", "platform.chassis_serial_number", "protected_memory",
}
TEXT_PREFIXES = ("pci.", "inforom.", "mig.mode.", "ecc.mode.", "gom.", "driver_model.",
                 "clocks_event_reasons.", "clocks_throttle_reasons.", "vgpu_", "fabric.", "platform.")
IDENTITY_FIELDS = ("uuid", "gpu_uuid", "pci.bus_id", "gpu_bus_id", "serial", "gpu_serial")
HEADER_RE = re.compile(r"^\s*([\w.]+)(?:\s*\[([^\]]*)\])?\s*$")
TS_FORMAT = "%Y/%m/%d %H:%M:%S%.f"  # %.f: the milliseconds nvidia-smi writes, or none
NUMBER_RE = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
SAMPLE_GAP_RATIO = 3.0  # between-sample gaps at least this many times the within-sample gaps


@dataclass
class NvidiaSmiLog:
    """Both tables of one nvidia-smi log; each carries the same ``attrs["ingest"]``."""

    gpu: pd.DataFrame  # ts, gpu_index, metric, value, unit (numeric samples, long)
    gpus: pd.DataFrame  # gpu_index, samples, first_ts, last_ts, then one column per text field


def _stem(field: str) -> str:
    return FIELD_NAMES.get(field, field.replace(".", "_"))


def _metric_name(field: str, unit: str) -> tuple[str, str]:
    stem = _stem(field)
    unit = unit or DEFAULT_UNITS.get(stem, "")
    suffix = UNIT_SUFFIX.get(unit, unit.lower())
    return (f"{stem}_{suffix}" if suffix else stem), unit


def _kind(field: str, unit: str, values: pl.Series, missing: pl.Series) -> str:
    """'bitmask', 'number' or 'text' (see the module docstring for the rule)."""
    if field in BITMASK_FIELDS:
        return "bitmask"
    if field in TEXT_FIELDS or (field.startswith(TEXT_PREFIXES) and not unit):
        return "text"
    if unit or field in NUMERIC_FIELDS or field in FIELD_NAMES or field.startswith(NUMERIC_PREFIXES):
        return "number"
    return "number" if values.filter(~missing).str.contains(f"^{NUMBER_RE}(?: \\S+)?$").all() else "text"


def read_nvidia_smi_log(path: str | Path, utc_offset_minutes: int = 0) -> NvidiaSmiLog:
    """Parse once, return both tables (``gpu`` numeric samples, ``gpus`` per-GPU attributes).

    Decision: the column work is polars string expressions (a day at ``-lms 100`` on 8 GPUs is
    ~7M rows); Python only splits the lines, and the csv module only when a line has quotes."""
    stats = LineStats(str(path))
    lines = read_lines(path, stats)
    if not lines or "timestamp" not in lines[0]:
        expected = "an nvidia-smi --format=csv header starting with 'timestamp'"
        raise IngestError(path, 1, expected, lines[0] if lines else "")
    fields = []
    for col in next(csv.reader([lines[0]], skipinitialspace=True)):
        m = HEADER_RE.match(col)
        if not m:
            raise IngestError(path, 1, "header fields like 'power.draw [W]'", col)
        fields.append((m.group(1), m.group(2) or ""))
    names = [f for f, _ in fields]
    if len(set(names)) != len(names):
        raise IngestError(path, 1, "each field once in the header", lines[0])

    raw = _split_rows(lines, names, stats)
    local = raw["timestamp"].str.to_datetime(TS_FORMAT, time_unit="us", strict=False)
    _first_bad(raw, local.is_null(), "timestamp", "a timestamp like 2026/11/26 20:50:48.769", stats)
    gpu_index = _gpu_index(raw, local, stats)
    ts = (local.to_pandas() - pd.Timedelta(minutes=utc_offset_minutes)).dt.tz_localize("UTC")

    metric_cols, text_cols = [], []
    for field, unit in fields:
        if field in ("timestamp", "index"):
            continue
        values = raw[field]
        bracketed = values.str.starts_with("[") & values.str.ends_with("]")  # [N/A], [Not Supported], ...
        missing = (values.is_in(["", "N/A"]) | bracketed).fill_null(True)
        kind = _kind(field, unit, values, missing)
        if kind == "text":
            text_cols.append((_stem(field), pl.select(pl.when(~missing).then(values)).to_series()))
            continue
        metric, unit = _metric_name(field, "bitmask" if kind == "bitmask" else unit)
        num, inline_unit = _numbers(raw, field, missing, kind, stats)
        metric_cols.append((metric, num, unit, inline_unit))

    gpu = _long_table(ts, gpu_index, metric_cols)
    gpus = _gpus_table(ts, gpu_index, text_cols)
    return NvidiaSmiLog(attach(gpu, stats), attach(gpus, stats))


def read_nvidia_smi(path: str | Path, utc_offset_minutes: int = 0) -> pd.DataFrame:
    """Long table of numeric samples: ts (UTC), gpu_index, metric (e.g. utilization_gpu_pct),
    value, unit. Text fields are not in it: see :func:`read_nvidia_smi_gpus`."""
    return read_nvidia_smi_log(path, utc_offset_minutes).gpu


def read_nvidia_smi_gpus(path: str | Path, utc_offset_minutes: int = 0) -> pd.DataFrame:
    """One row per GPU: gpu_index, samples, first_ts, last_ts, then one column per text field
    (name, uuid, pci_bus_id, driver_version, pstate, ...). A field that kept one value holds it;
    one that changed over the log holds its distinct values in order of appearance joined by
    ``|`` (e.g. ``P8|P0``); one that was never given (``[N/A]``) is missing (NaN)."""
    return read_nvidia_smi_log(path, utc_offset_minutes).gpus


def _split_rows(lines: list[str], names: list[str], stats: LineStats) -> pl.DataFrame:
    """Data rows as string columns (stripped) plus ``_ln`` (1-based line number). Blank lines
    are skipped with a note; a row with another field count is an IngestError (a cut last line
    is gone already: :func:`inferlab.ingest.lines.read_lines`)."""
    path, n = stats.path, len(names)
    body = pl.DataFrame({"_raw": lines[1:]}, schema={"_raw": pl.String}).with_row_index("_ln", offset=2)
    stats.lines_read -= 1  # the header is not a data line
    blank = body["_raw"].str.strip_chars() == ""
    for ln in body.filter(blank)["_ln"].to_list():
        stats.lines_skipped += 1
        stats.notes.append(f"{path}:{ln}: blank line skipped")
    body = body.filter(~blank)
    if body["_raw"].str.contains('"', literal=True).any():  # quoted fields: the csv module splits
        rows = [next(csv.reader([r], skipinitialspace=True)) for r in body["_raw"]]
        split = pl.Series(rows, dtype=pl.List(pl.String))
    else:
        split = body["_raw"].str.split(",")
    body = body.with_columns(_f=split, _ragged=split.list.len() != n)
    if body["_ragged"].any():
        row = body.filter("_ragged").row(0, named=True)
        raise IngestError(path, row["_ln"], f"{n} comma-separated fields as in the header", row["_raw"])
    stats.lines_used = len(body)
    cols = [pl.col("_f").list.get(i).str.strip_chars().alias(name) for i, name in enumerate(names)]
    return body.select("_ln", "_raw", *cols)


def _first_bad(raw: pl.DataFrame, bad: pl.Series, field: str, expected: str, stats: LineStats) -> None:
    if bad.any():
        row = raw.filter(bad).row(0, named=True)
        raise IngestError(stats.path, row["_ln"], expected, str(row[field]))


def _numbers(raw: pl.DataFrame, field: str, missing: pl.Series, kind: str, stats: LineStats):
    """Float values (NaN where missing) and the unit written after each value (``71.74 W``)."""
    parts = raw[field].str.splitn(" ", 2).struct.unnest()
    number, inline_unit = parts["field_0"], parts["field_1"].fill_null("")
    if kind == "bitmask":
        hexed = number.str.starts_with("0x") | number.str.starts_with("0X")
        as_int = number.str.slice(2).str.to_integer(base=16, dtype=pl.UInt64, strict=False)
        num = pl.select(pl.when(hexed).then(as_int)).to_series().cast(pl.Float64)
        expected = f"a hex bitmask like 0x0000000000000004 or [N/A] for {field}"
    else:
        num = number.cast(pl.Float64, strict=False)
        expected = f"a number or [N/A] for {field}"
    _first_bad(raw, num.is_null() & ~missing, field, expected, stats)
    num = pl.select(pl.when(~missing).then(num)).to_series()
    inline_unit = pl.select(pl.when(~missing).then(inline_unit).otherwise(pl.lit(""))).to_series()
    return num.to_numpy().astype(float), inline_unit


def _gpu_index(raw: pl.DataFrame, local: pl.Series, stats: LineStats) -> np.ndarray:
    if "index" in raw.columns:
        idx = raw["index"].cast(pl.Int64, strict=False)
        _first_bad(raw, idx.is_null() | (idx < 0), "index", "a GPU index (0, 1, ...) for index", stats)
        return idx.to_numpy()
    for field in IDENTITY_FIELDS:
        if field in raw.columns and not raw[field].is_in(["", "[N/A]"]).any():
            return pd.factorize(raw[field].to_numpy())[0].astype(np.int64)
    return _positions_from_stamps(local.dt.epoch("us").to_numpy().astype(np.int64) * 1000, stats)


def _positions_from_stamps(t: np.ndarray, stats: LineStats) -> np.ndarray:
    """GPU = position of the row within its sample, a sample being a run of rows closer together
    than the sampling gap (each GPU row has its own stamp on recent drivers, a shared one on
    older drivers). Trusted only when it splits the log into at least three samples of one size
    (the last may be cut short); otherwise rows with identical stamps are positions 0, 1, ..."""
    n = len(t)
    same_stamp = np.zeros(n, dtype=np.int64)
    if n < 2:
        return same_stamp
    starts = np.r_[0, np.flatnonzero(np.diff(t) != 0) + 1]
    same_stamp = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    gaps = np.diff(t).astype(float)
    if n < 3 or (gaps < 0).any():
        return same_stamp
    g = np.sort(np.maximum(gaps, 1e6))  # below 1 ms counts as 1 ms: a shared stamp is a small gap
    ratios = g[1:] / g[:-1]
    k = int(np.argmax(ratios))
    if ratios[k] < SAMPLE_GAP_RATIO:
        return same_stamp  # one kind of gap: one GPU, or one stamp per sample
    threshold = np.sqrt(g[k] * g[k + 1])
    starts = np.r_[0, np.flatnonzero(gaps > threshold) + 1]
    sizes = np.diff(np.r_[starts, n])
    size = int(sizes[0])
    if len(sizes) >= 3 and (sizes[:-1] == size).all() and sizes[-1] <= size:
        if size > 1 and same_stamp.max() == 0:  # per-row stamps: say that it was inferred
            stats.notes.append(f"{stats.path}: no index/uuid/pci.bus_id queried; {size} GPUs per sample "
                               "inferred from the timestamps (query index to make it explicit)")
        return np.arange(n) - np.repeat(starts, sizes)
    if same_stamp.max() == 0:
        stats.notes.append(f"{stats.path}: no index/uuid/pci.bus_id queried and the timestamps do not "
                           "group into samples of one size: every row taken as GPU 0")
    return same_stamp


def _long_table(ts: pd.Series, gpu_index: np.ndarray, metric_cols: list) -> pd.DataFrame:
    """Row-major long form: each sample row's metrics in header order."""
    n, m = len(ts), len(metric_cols)
    ts = ts.reset_index(drop=True)
    if m == 0 or n == 0:
        return pd.DataFrame({"ts": ts.iloc[:0], "gpu_index": pd.Series([], dtype=np.int64),
                             "metric": pd.Series([], dtype="str"), "value": pd.Series([], dtype=float),
                             "unit": pd.Series([], dtype="str")})
    units = np.empty((n, m), dtype=object)
    for j, (_, _, unit, inline) in enumerate(metric_cols):
        units[:, j] = unit if unit else inline.to_numpy().astype(object)
    return pd.DataFrame({
        "ts": ts.repeat(m).reset_index(drop=True),
        "gpu_index": np.repeat(gpu_index, m),
        "metric": np.tile(np.array([c[0] for c in metric_cols], dtype=object), n),
        "value": np.column_stack([c[1] for c in metric_cols]).ravel(),
        "unit": units.ravel(),
    })


def _gpus_table(ts: pd.Series, gpu_index: np.ndarray, text_cols: list) -> pd.DataFrame:
    frame = pl.DataFrame([pl.Series("gpu_index", gpu_index, dtype=pl.Int64), *(v.alias(stem) for stem, v in text_cols)])
    # one value, or the distinct values in order of appearance joined by "|"; None if none
    attrs = frame.group_by("gpu_index", maintain_order=True).agg(
        *(pl.col(stem).drop_nulls().unique(maintain_order=True).str.join("|") for stem, _ in text_cols)
    ).with_columns(pl.col(stem).replace("", None) for stem, _ in text_cols)
    times = pd.DataFrame({"gpu_index": gpu_index, "ts": ts.reset_index(drop=True)}).groupby("gpu_index")["ts"]
    out = pd.DataFrame({"samples": times.size(), "first_ts": times.min(), "last_ts": times.max()}).reset_index()
    if text_cols:
        out = out.merge(attrs.to_pandas().astype({stem: "str" for stem, _ in text_cols}), on="gpu_index", how="left")
    return out
