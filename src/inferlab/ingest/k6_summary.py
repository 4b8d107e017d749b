"""k6 ``--summary-export`` JSON -> tidy rows (metric, stat, value) and thresholds.

In that file a threshold's value ``true`` means the threshold FAILED (k6's legacy export
semantics); :func:`read_k6_summary` turns it into an explicit ``passed`` column.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .errors import IngestError, LineStats, attach
from .lines import read_json


def read_k6_summary(path: str | Path) -> pd.DataFrame:
    """Rows (metric, stat, value); thresholds as rows with stat ``threshold:<expr>`` and
    ``attrs["thresholds"]`` = list of {metric, threshold, passed}."""
    stats = LineStats(str(path))
    doc = read_json(path, stats, "a k6 --summary-export JSON document")
    stats.lines_read = 1  # one document
    if not isinstance(doc, dict) or not isinstance(doc.get("metrics"), dict):
        raise IngestError(path, None, "a JSON object with a 'metrics' object (k6 --summary-export)")
    rows, thresholds = [], []
    for metric, body in doc["metrics"].items():
        if not isinstance(body, dict):
            raise IngestError(path, None, f"metrics.{metric} to be an object")
        for stat, value in body.items():
            if stat == "thresholds" and isinstance(value, dict):
                for expr, failed in value.items():
                    thresholds.append({"metric": metric, "threshold": expr, "passed": not bool(failed)})
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                rows.append({"metric": metric, "stat": stat, "value": float(value)})
    stats.lines_used = 1
    df = pd.DataFrame(rows, columns=["metric", "stat", "value"])
    attach(df, stats)
    df.attrs["thresholds"] = thresholds
    checks = (doc.get("root_group") or {}).get("checks") or {}
    df.attrs["checks"] = [
        {"check": c.get("name", k), "passes": c.get("passes", 0), "fails": c.get("fails", 0)}
        for k, c in (checks.items() if isinstance(checks, dict) else enumerate(checks))
    ]
    return df
