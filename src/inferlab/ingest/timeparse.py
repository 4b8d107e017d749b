"""Tolerant RFC 3339 parsing to integer nanoseconds since the epoch (UTC).

k6 writes up to 9 fractional digits and drops trailing zeros (``...44.92695Z``), and writes the
host's offset (``+01:00``) when the host is not on UTC: one chrono format covers all of these.
"""

from __future__ import annotations

import polars as pl

from .errors import IngestError

RFC3339 = "%Y-%m-%dT%H:%M:%S%.f%#z"


def parse_rfc3339_ns(expr: pl.Expr) -> pl.Expr:
    """Expression: RFC 3339 strings -> Int64 ns since epoch, UTC. Unparseable -> null: check with
    :func:`require_parsed`."""
    return expr.str.to_datetime(RFC3339, time_unit="ns", time_zone="UTC", strict=False).dt.epoch("ns")


def require_parsed(df: pl.DataFrame, ts_col: str, raw_col: str, line_col: str, path: str) -> None:
    """Raise IngestError at the first row whose timestamp did not parse."""
    bad = df.filter(pl.col(ts_col).is_null() & pl.col(raw_col).is_not_null())
    if len(bad):
        row = bad.row(0, named=True)
        raise IngestError(path, row[line_col], "an RFC 3339 timestamp", str(row[raw_col]))
