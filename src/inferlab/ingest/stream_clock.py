"""The stream clock's JSON lines (load/stream_clock.py) -> one row per streamed request.

Columns are named ``client_*`` so that they sit beside the server span's ``ttft_ms`` /
``tpot_ms`` in a joined request table without a clash: ``request_id``, ``client_start_ts``
(UTC), ``client_status``, ``client_sse`` (the answer was an SSE stream; only then are its
tokens timed), ``client_connect_ms`` (the relay's own connection to the target, before the
start; NaN in files made before it was recorded), ``client_headers_ms``, ``client_ttft_ms``, ``client_last_token_ms``,
``client_e2e_ms``, ``client_text_events``, ``client_completion_tokens``, ``client_tpot_ms``,
``client_error``. Times are milliseconds after the request's first byte reached the clock.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..formats.stream_clock import FIELDS as FILE_FIELDS
from ..formats.stream_clock import SCHEMA
from .errors import IngestError, LineStats, attach
from .lines import iter_json_lines

# the file's field -> its column: request_id as is, every other field prefixed client_
FIELDS = {k: k if k == "request_id" else f"client_{k}" for k in FILE_FIELDS}
COLUMNS = ["request_id", "client_start_ts", *list(FIELDS.values())[1:]]
EXPECTED = f"one JSON object per line, schema {SCHEMA!r} (the stream clock)"


def read_stream_clock(path: str | Path) -> pd.DataFrame:
    """Tidy :data:`COLUMNS`, one row per request the clock relayed, in the order they ended.
    A line of another schema, or without ``start_unix``, is an IngestError naming its line."""
    stats = LineStats(str(path))
    rows = []
    for line_no, obj, line in iter_json_lines(path, stats, EXPECTED):
        if not isinstance(obj, dict) or obj.get("schema") != SCHEMA or not isinstance(obj.get("start_unix"), (int, float)):
            raise IngestError(path, line_no, EXPECTED, line)
        rows.append({"client_start_ts": obj["start_unix"], **{col: obj.get(k) for k, col in FIELDS.items()}})
        stats.lines_used += 1
    df = pd.DataFrame(rows, columns=COLUMNS)
    df["client_start_ts"] = pd.to_datetime(df["client_start_ts"].astype(float), unit="s", utc=True)
    for col in ("client_status", "client_text_events", "client_completion_tokens"):
        df[col] = pd.to_numeric(df[col]).astype("Int64")
    df["client_sse"] = df["client_sse"].astype("boolean")
    for col in (c for k, c in FIELDS.items() if k.endswith("_ms")):
        df[col] = pd.to_numeric(df[col]).astype(float)
    return attach(df, stats)
