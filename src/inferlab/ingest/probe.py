"""Streaming-probe JSONL -> one row per request, plus a long table of inter-token gaps.

Current fields (written by ``inferlab.probe``, schema ``inferlab.probe/1``): sent_at (RFC 3339
UTC), status, headers_ms (response headers: TTFB, *not* TTFT), ttft_ms (first content token),
e2e_ms, itl_ms (list of gaps), chunks, prompt_tokens, completion_tokens, error, request_id (the
X-Request-Id it sent, joins server spans). The sample's
older fields (headers_s, ttft_s, e2e_s, itl_s, chunks, status) load too, converted to ms.
TPOT = (e2e - ttft) / (completion_tokens - 1), with chunks standing in when usage is absent.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from .errors import IngestError, LineStats, attach
from .lines import iter_json_lines

SECONDS_FIELDS = {"headers_s": "headers_ms", "ttft_s": "ttft_ms", "e2e_s": "e2e_ms"}
REQUEST_COLUMNS = [
    "request_index", "sent_ts", "status", "ok", "headers_ms", "ttft_ms", "e2e_ms", "tpot_ms",
    "chunks", "prompt_tokens", "completion_tokens", "error", "request_id",
]


class Probe(NamedTuple):
    requests: pd.DataFrame
    gaps: pd.DataFrame  # request_index, gap_index, itl_ms


def _normalize(obj: dict, index: int) -> tuple[dict, list[float]]:
    rec = dict(obj)
    for old, new in SECONDS_FIELDS.items():
        if old in rec and new not in rec:
            rec[new] = None if rec[old] is None else rec[old] * 1000.0
    gaps = rec.get("itl_ms")
    if gaps is None and rec.get("itl_s") is not None:
        gaps = [g * 1000.0 for g in rec["itl_s"]]
    gaps = [float(g) for g in (gaps or [])]
    tokens = rec.get("completion_tokens") or rec.get("chunks")
    ttft, e2e = rec.get("ttft_ms"), rec.get("e2e_ms")
    tpot = rec.get("tpot_ms")
    if tpot is None and ttft is not None and e2e is not None and tokens and tokens > 1:
        tpot = (e2e - ttft) / (tokens - 1)
    status = rec.get("status")
    row = {
        "request_index": index,
        "sent_ts": rec.get("sent_at"),
        "status": status,
        "ok": status == 200 and not rec.get("error"),
        "headers_ms": rec.get("headers_ms"),
        "ttft_ms": ttft,
        "e2e_ms": e2e,
        "tpot_ms": tpot,
        "chunks": rec.get("chunks"),
        "prompt_tokens": rec.get("prompt_tokens"),
        "completion_tokens": rec.get("completion_tokens"),
        "error": rec.get("error"),
        "request_id": rec.get("request_id"),  # X-Request-Id (newer records; None before)
    }
    return row, gaps


def read_probe(path: str | Path) -> Probe:
    """Read a probe JSONL file. A truncated final line is skipped with a warning."""
    stats = LineStats(str(path))
    rows, gap_rows = [], []
    for line_no, obj, line in iter_json_lines(path, stats, "one JSON object per line (streaming probe record)"):
        if not isinstance(obj, dict) or "status" not in obj or not ({"ttft_ms", "ttft_s"} & obj.keys()):
            raise IngestError(path, line_no, "a probe record with 'status' and 'ttft_ms' (or 'ttft_s')", line)
        row, gaps = _normalize(obj, len(rows))
        rows.append(row)
        gap_rows.extend((row["request_index"], i, g) for i, g in enumerate(gaps))
        stats.lines_used += 1
    requests = pd.DataFrame(rows, columns=REQUEST_COLUMNS)
    requests["sent_ts"] = pd.to_datetime(requests["sent_ts"], utc=True, format="ISO8601")
    for col in ("headers_ms", "ttft_ms", "e2e_ms", "tpot_ms"):
        requests[col] = pd.to_numeric(requests[col]).astype(float)
    gaps = pd.DataFrame(gap_rows, columns=["request_index", "gap_index", "itl_ms"])
    gaps["itl_ms"] = gaps["itl_ms"].astype(np.float64)
    return Probe(attach(requests, stats), attach(gaps, stats))
