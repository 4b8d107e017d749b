"""The per-cell summary (``cell_summary``, ~24 columns) split into tables that fit a page.

``main`` (the body's "Results per cell") holds the columns a reader compares across cells:
concurrency, errors, throughput, latency percentiles, tokens/s, the token-level SLO goodput
(requests/s within every bound at once) and whether the cell's measurement is VALID
(analysis/validity.py). ``details`` (how each cell ran and was measured, the request count),
``validity`` (the Little's-law ratio and, for an INVALID cell, the failed checks; shown under
``details``), ``slo`` (the token-level goodput behind ``slo_goodput``: its share, unmeasured
bounds, TTFT/TPOT sources; and the streaming probe's TTFT/TPOT) and ``utilization`` (CPU or GPU
while it ran) go to the report's appendix. Each table starts with ``cell_id``, so a row of one finds its row
in another; together they show every column of the summary (the run id is in the title).
"""

from __future__ import annotations

import pandas as pd
from IPython.display import HTML

from .sections import cell_table

KEY = "cell_id"
# slo_goodput (requests/s within every token-level SLO bound) took the probe's TTFT's place (now in details):
# the body holds 10 columns at most (cell_id, 7 measures, goodput, validity; the request count is in details)
MAIN = ("vus", "errors", "rps", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "tokens_per_s",
        "slo_goodput", "validity")  # validity: VALID | INVALID (analysis/validity.py); its reasons in the validity table
VALIDITY = ("little_ratio", "validity_reasons")  # the appendix's validity table (under details)
UTILIZATION_PREFIXES = ("gpu_", "cpu_")  # summary._utilization's columns
SLO_PREFIXES = ("slo_", "probe_")  # token-level goodput (slo_goodput itself is in MAIN) and the probe's TTFT/TPOT
HIDDEN = ("run_id",)


def groups(cells: pd.DataFrame) -> dict[str, list[str]]:
    """The columns of each table, in the summary's order; every column but the key (and the
    run id) is in exactly one."""
    rest = [c for c in cells.columns if c != KEY and c not in HIDDEN]
    util = [c for c in rest if c.startswith(UTILIZATION_PREFIXES)]
    main = [c for c in rest if c in MAIN]
    valid = [c for c in rest if c in VALIDITY]
    slo = [c for c in rest if c.startswith(SLO_PREFIXES) and c not in main]
    return {"main": [KEY, *main],
            "details": [KEY, *(c for c in rest if c not in main and c not in util and c not in slo and c not in valid)],
            "validity": [KEY, *valid], "slo": [KEY, *slo], "utilization": [KEY, *util]}


def _table(cells: pd.DataFrame, group: str):
    columns = groups(cells)[group]
    if not cells.empty and columns == [KEY]:
        return f"no {group} columns in this run"  # e.g. no CPU or GPU telemetry recorded
    return cell_table(cells[columns] if not cells.empty else cells)


def main(cells: pd.DataFrame):
    """Results per cell: the columns a reader compares."""
    return _table(cells, "main")


def details(cells: pd.DataFrame):
    """Appendix: payload, executor, status, request count, error rate, span and steady-state
    window; under it the validity table (:func:`validity`), two tables of <= 10 columns."""
    a, b = _table(cells, "details"), validity(cells)
    if isinstance(a, str) or isinstance(b, str):
        return a if isinstance(b, str) else b
    return HTML(a.to_html() + "<p>Validity of each cell's measurement (INVALID: the checks that failed):</p>"
                + b.to_html())


def validity(cells: pd.DataFrame):
    """Appendix: the Little's-law ratio of the window and, per INVALID cell, the failed checks."""
    return _table(cells, "validity")


def slo(cells: pd.DataFrame):
    """Appendix: the token-level goodput behind ``slo_goodput``: the share of measured requests
    within every SLO bound, the bounds no request could be judged on, where TTFT/TPOT came from;
    beside them the streaming probe's median TTFT/TPOT."""
    return _table(cells, "slo")


def utilization(cells: pd.DataFrame):
    """Appendix: CPU (engine, k6, system) or GPU utilization, memory and power, mean and max."""
    return _table(cells, "utilization")
