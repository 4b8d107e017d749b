"""Request traces in the Mooncake layout (kvcache-ai/Mooncake, ``mooncake_trace.jsonl`` and the
``FAST25-release`` traces): read and write.

The layout: JSON lines, one request per line, e.g.
``{"timestamp": 27482, "input_length": 6955, "output_length": 52, "hash_ids": [46, 47, 2, 3]}``.
``timestamp`` is the send time in **milliseconds** since the trace started (an integer);
``input_length``/``output_length`` are prompt and answer tokens; ``hash_ids`` name the prompt's
blocks of :data:`BLOCK_TOKENS` tokens in order: two requests whose lists start with the same ids
share that prefix (the last id may cover a partial block). Extra keys are ignored; blank lines
are skipped (``df.attrs["blank_lines"]``).

Decision: read strictly, with the standard ``json`` module line by line (the formats layer sits
below ``ingest.lines``, the ingest side's JSON-lines loop; ``ingest.trace`` wraps this reader in
the ingest contract). A bad line is a :class:`~inferlab.formats.azure_trace.TraceFormatError`
naming file, line, field and what was expected.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .azure_trace import TraceFormatError

BLOCK_TOKENS = 512  # Mooncake's published block size: one hash id per 512 prompt tokens
FIELDS = ("timestamp", "input_length", "output_length", "hash_ids")


def _int(path: Path, line: int, doc: dict, key: str) -> int:
    v = doc[key]
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise TraceFormatError(path, line, f"field {key}: a non-negative integer", json.dumps(v))
    return v


def read_trace(path: str | Path) -> pd.DataFrame:
    """One row per request, sorted by time: ``line`` (1-based), ``offset_s`` (seconds since the
    first request: ``timestamp`` ms / 1000, minus the first), ``context_tokens``,
    ``generated_tokens``, ``hash_ids`` (a list of ints). A line that is not a JSON object, a
    missing field, a timestamp or length that is not a non-negative integer, or ``hash_ids`` not a
    list of non-negative integers raises :class:`TraceFormatError` naming line and field."""
    path = Path(path)
    rows, blank = [], []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceFormatError(path, None, "a readable Mooncake trace (UTF-8 JSON lines)", str(exc)) from None
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            blank.append(n)
            continue
        try:
            doc = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise TraceFormatError(path, n, f"a JSON object ({exc.msg} at column {exc.colno})", raw) from None
        if not isinstance(doc, dict):
            raise TraceFormatError(path, n, "a JSON object with " + ", ".join(FIELDS), raw)
        missing = [k for k in FIELDS if k not in doc]
        if missing:
            raise TraceFormatError(path, n, f"field {missing[0]} (a Mooncake line has {', '.join(FIELDS)})", raw)
        ts, inp, out = (_int(path, n, doc, k) for k in FIELDS[:3])
        ids = doc["hash_ids"]
        if not isinstance(ids, list) or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in ids):
            raise TraceFormatError(path, n, "field hash_ids: a list of non-negative integers", json.dumps(ids))
        rows.append((n, ts, inp, out, ids))
    if not rows:
        raise TraceFormatError(path, None, "at least one request line", "an empty file")
    df = pd.DataFrame(rows, columns=["line", "timestamp_ms", "context_tokens", "generated_tokens", "hash_ids"])
    df = df.sort_values(["timestamp_ms", "line"], kind="stable").reset_index(drop=True)
    out = pd.DataFrame({"line": df["line"], "offset_s": (df["timestamp_ms"] - df["timestamp_ms"].min()) / 1000.0,
                        "context_tokens": df["context_tokens"].astype("int64"),
                        "generated_tokens": df["generated_tokens"].astype("int64"), "hash_ids": df["hash_ids"]})
    out.attrs["blank_lines"] = blank
    return out


def write_trace(path: str | Path, trace: pd.DataFrame) -> None:
    """Write ``timestamp_ms`` (integers), ``context_tokens``, ``generated_tokens``, ``hash_ids``
    in the Mooncake layout, one compact JSON object per line in this key order."""
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for ts, inp, out, ids in trace[["timestamp_ms", "context_tokens", "generated_tokens", "hash_ids"]].itertuples(
                index=False):
            fh.write(json.dumps({"timestamp": int(ts), "input_length": int(inp), "output_length": int(out),
                                 "hash_ids": [int(i) for i in ids]}, separators=(", ", ": ")) + "\n")
