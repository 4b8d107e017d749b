"""The per-cell summary (``cell_summary``, ~24 columns) split into tables that fit a page.

``main`` (the body's "Results per cell") holds the columns a reader compares across cells:
concurrency, requests and errors, throughput, latency percentiles, tokens/s and whether the
cell's measurement is VALID (analysis/validity.py). ``details`` (how each cell ran and was
measured, the probe's TTFT/TPOT), ``validity`` (the Little's-law ratio and, for an INVALID cell,
the failed checks; shown under ``details``) and ``utilization`` (CPU or GPU while it ran) go to
the report's appendix. Each table starts with ``cell_id``, so a row of one finds its row
in another; together they show every column of the summary (the run id is in the title).
"""

from __future__ import annotations

import pandas as pd
from IPython.display import HTML

from .sections import cell_table

KEY = "cell_id"
MAIN = ("vus", "requests", "errors", "rps", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "tokens_per_s",
        "validity")  # validity: VALID | INVALID (analysis/validity.py); its reasons in the validity table
VALIDITY = ("little_ratio", "validity_reasons")  # the appendix's validity table (under details)
UTILIZATION_PREFIXES = ("gpu_", "cpu_")  # summary._utilization's columns
HIDDEN = ("run_id",)


def groups(cells: pd.DataFrame) -> dict[str, list[str]]:
    """The columns of each table, in the summary's order; every column but the key (and the
    run id) is in exactly one."""
    rest = [c for c in cells.columns if c != KEY and c not in HIDDEN]
    util = [c for c in rest if c.startswith(UTILIZATION_PREFIXES)]
    main = [c for c in rest if c in MAIN]
    valid = [c for c in rest if c in VALIDITY]
    return {"main": [KEY, *main], "details": [KEY, *(c for c in rest if c not in main and c not in util
                                                     and c not in valid)],
            "validity": [KEY, *valid], "utilization": [KEY, *util]}


def _table(cells: pd.DataFrame, group: str):
    columns = groups(cells)[group]
    if not cells.empty and columns == [KEY]:
        return f"no {group} columns in this run"  # e.g. no CPU or GPU telemetry recorded
    return cell_table(cells[columns] if not cells.empty else cells)


def main(cells: pd.DataFrame):
    """Results per cell: the columns a reader compares."""
    return _table(cells, "main")


def details(cells: pd.DataFrame):
    """Appendix: payload, executor, status, error rate, span and steady-state window, probe
    TTFT/TPOT; under it the validity table (:func:`validity`), two tables of <= 10 columns."""
    a, b = _table(cells, "details"), validity(cells)
    if isinstance(a, str) or isinstance(b, str):
        return a if isinstance(b, str) else b
    return HTML(a.to_html() + "<p>Validity of each cell's measurement (INVALID: the checks that failed):</p>"
                + b.to_html())


def validity(cells: pd.DataFrame):
    """Appendix: the Little's-law ratio of the window and, per INVALID cell, the failed checks."""
    return _table(cells, "validity")


def utilization(cells: pd.DataFrame):
    """Appendix: CPU (engine, k6, system) or GPU utilization, memory and power, mean and max."""
    return _table(cells, "utilization")
