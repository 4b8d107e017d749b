"""The edge's JSON access log -> one row per request the edge answered.

One format, two writers: the local edge (``inferlab.targets.edge``, Debian nginx) and the
ingress-nginx controller (``platform/ingress-controller``), both ``escape=json``, one object
per line; the ``log_format`` both use has one home, :mod:`inferlab.formats.edge_log`. Times are nginx's seconds with ms resolution, turned into milliseconds here; an
upstream time is ``""`` where no upstream was asked (a request ``limit_req`` rejected) and, on
retries or internal redirects, a list (``"0.001, 0.040"``, ``"0.001 : 0.040"``) whose numbers add
up to the time spent upstream (``-`` for an attempt that got no answer is skipped).

``source="controller"``: ``kubectl logs`` of the controller mixes its own klog lines (``I1127
...``) with the access lines; they and blank lines are skipped, counted and summed up in one
note. In the local edge's own file every line must be an access line (a blank one is skipped
and noted, as in every JSON-lines file: :func:`inferlab.ingest.lines.iter_json_lines`).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Literal

import pandas as pd

from .errors import IngestError, LineStats, attach
from .lines import iter_json_lines

COLUMNS = ["ts", "request_id", "status", "request_time_ms", "upstream_connect_ms", "upstream_header_ms",
           "upstream_response_ms", "upstream_status", "bytes_sent", "request_length", "ssl_protocol",
           "ssl_session_reused", "remote_addr", "method", "uri"]
# log field -> column, for the upstream time lists
UPSTREAM_TIMES = {"upstream_connect_time": "upstream_connect_ms", "upstream_header_time": "upstream_header_ms",
                  "upstream_response_time": "upstream_response_ms"}
FIELDS = ("time", "request_id", "status", "request_time", *UPSTREAM_TIMES, "upstream_status", "bytes_sent",
          "request_length", "ssl_protocol", "ssl_session_reused", "remote_addr", "method", "uri")
_ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d)$")
_LIST_SEP = re.compile(r"\s*[,:]\s*")


class _Bad(ValueError):
    """A field's value is not what the format promises; the caller adds file and line."""

    def __init__(self, field: str, expected: str, value: object) -> None:
        super().__init__(field)
        self.field, self.expected, self.value = field, expected, value


def _number(obj: dict, field: str) -> float:
    v = obj[field]
    if isinstance(v, bool) or not isinstance(v, int | float) and not (isinstance(v, str) and _is_float(v)):
        raise _Bad(field, "a number", v)
    return float(v)


def _is_float(s: str) -> bool:
    try:
        return math.isfinite(float(s))
    except ValueError:
        return False


def _upstream_ms(obj: dict, field: str) -> float:
    """nginx's upstream time list in ms: NaN when empty or every attempt is ``-``."""
    v = obj[field]
    if isinstance(v, int | float) and not isinstance(v, bool):
        return float(v) * 1000
    if not isinstance(v, str):
        raise _Bad(field, "seconds, '' or a comma/colon list of seconds", v)
    parts = [p for p in _LIST_SEP.split(v.strip()) if p and p != "-"]
    if not all(_is_float(p) for p in parts):
        raise _Bad(field, "seconds, '' or a comma/colon list of seconds", v)
    return sum(float(p) for p in parts) * 1000 if parts else math.nan


def _last_status(v: object) -> int | None:
    """The last attempt's upstream status (``"502, 200"`` -> 200); None where none answered."""
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if not isinstance(v, str):
        raise _Bad("upstream_status", "a status, '' or a comma/colon list of statuses", v)
    parts = [p for p in _LIST_SEP.split(v.strip()) if p]
    if not parts:
        return None
    if not all(p == "-" or p.isdigit() for p in parts):
        raise _Bad("upstream_status", "a status, '' or a comma/colon list of statuses", v)
    return int(parts[-1]) if parts[-1] != "-" else None


def _text(obj: dict, field: str) -> str:
    v = obj[field]
    if not isinstance(v, str):
        raise _Bad(field, "a string", v)
    return v


def _row(obj: dict) -> dict:
    missing = [f for f in FIELDS if f not in obj]
    if missing:
        raise _Bad(missing[0], f"every field of the edge log format ({', '.join(missing)} missing)", "")
    time = _text(obj, "time")
    if not _ISO_MS.match(time):
        raise _Bad("time", "ISO 8601 with milliseconds and an offset (2026-01-31T12:00:00.123+00:00)", time)
    reused = _text(obj, "ssl_session_reused")
    if reused not in ("r", ".", ""):
        raise _Bad("ssl_session_reused", "'r', '.' or ''", reused)
    request_id = _text(obj, "request_id")
    if not request_id:
        raise _Bad("request_id", "a request id (the client's X-Request-Id or nginx's $request_id)", request_id)
    status = _number(obj, "status")
    if not status.is_integer() or not 100 <= status <= 599:
        raise _Bad("status", "an HTTP status", obj["status"])
    return {
        "ts": time, "request_id": request_id, "status": int(status),
        "request_time_ms": _number(obj, "request_time") * 1000,
        **{col: _upstream_ms(obj, f) for f, col in UPSTREAM_TIMES.items()},
        "upstream_status": _last_status(obj["upstream_status"]),
        "bytes_sent": int(_number(obj, "bytes_sent")), "request_length": int(_number(obj, "request_length")),
        "ssl_protocol": _text(obj, "ssl_protocol"), "ssl_session_reused": reused == "r",
        "remote_addr": _text(obj, "remote_addr"), "method": _text(obj, "method"), "uri": _text(obj, "uri"),
    }


def read_edge_log(path: str | Path, source: Literal["edge", "controller"] = "edge") -> pd.DataFrame:
    """Tidy columns :data:`COLUMNS`; ``ts`` is the request's end (UTC). ``attrs["ingest"]``
    counts the lines; with ``source="controller"`` it notes how many non-access lines were
    skipped. A malformed access line is an IngestError naming the file, line and field."""
    stats = LineStats(str(path))
    controller = source == "controller"
    rows = []
    for line_no, obj, line in iter_json_lines(path, stats, "one JSON object per line (the edge access-log format)",
                                        foreign=(lambda line: not line.lstrip().startswith("{")) if controller else None,
                                        foreign_what="blank or non-access (controller) lines"):
        if not isinstance(obj, dict):
            raise IngestError(path, line_no, "a JSON object (the edge access-log format)", line)
        try:
            rows.append(_row(obj))
        except _Bad as bad:
            raise IngestError(path, line_no, f"field {bad.field!r}: {bad.expected}", repr(bad.value)) from None
        stats.lines_used += 1
    df = pd.DataFrame(rows, columns=COLUMNS)
    df["ts"] = pd.to_datetime(df["ts"], utc=True, format="ISO8601")
    for col in ("status", "upstream_status", "bytes_sent", "request_length"):
        df[col] = df[col].astype("Int64")
    for col in ("request_time_ms", *UPSTREAM_TIMES.values()):
        df[col] = df[col].astype(float)
    df["ssl_session_reused"] = df["ssl_session_reused"].astype(bool)
    for col in ("request_id", "ssl_protocol", "remote_addr", "method", "uri"):
        df[col] = df[col].astype(str)
    return attach(df, stats)
