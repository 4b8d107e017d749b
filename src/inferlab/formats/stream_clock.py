"""The stream clock's file (``stream-clock.jsonl`` in a cell folder): what the relay
(``load.stream_clock``, write side) writes and ``ingest.stream_clock`` (read side) reads.

One JSON object a line, one line per request the relay passed on, written as the request
ends: ``schema`` (:data:`SCHEMA`), ``request_id`` (the X-Request-Id, null when the request sent
none), ``start_unix`` (wall clock when the request left for the target, seconds), and on the
relay's monotonic clock, milliseconds after that start: ``headers_ms``, ``ttft_ms``,
``last_token_ms``, ``e2e_ms``; ``connect_ms`` (what the request waited for the relay's
connection to the target, before ``start_unix``: 0 on a spare opened ahead; absent in files
made before it was recorded), ``status``, ``sse``,
``text_events``, ``completion_tokens``, ``tpot_ms``, ``error``.
"""

from __future__ import annotations

SCHEMA = "inferlab.stream-clock/1"
# the record's fields beside schema and start_unix, in the order they are written
FIELDS = ("request_id", "status", "sse", "connect_ms", "headers_ms", "ttft_ms", "last_token_ms", "e2e_ms",
          "text_events", "completion_tokens", "tpot_ms", "error")
