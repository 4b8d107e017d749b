"""Server spans of a run (local engine): the OTLP receiver's spans written into the run, per
scope (the idle probe, each cell, the run's tail), once each.

The engine's batch exporter sends spans after the responses, so a scope waits for its requests'
spans (bounded) before it drains the receiver; a scope whose requests lack spans says so in the
manifest's notes (rejected or failed requests have none)."""

from __future__ import annotations

import gzip

from ..runs.layout import unique_name
from ..runs.store import RunWriter
from ..telemetry.otlp import OtlpReceiver

SPAN_WAIT_S = 30  # after a scope's last response; the engine's batch exporter flushes every 0.5 s
SPAN_IDLE_S = 3.0  # 6x the export delay: no new span for this long, none is coming (rejected requests have none)
SPANS_FILE = "spans.otlp.jsonl.gz"


class SpanCollector:
    """Writes what ``receiver`` holds into ``w``; a no-op without a receiver (url/k8s targets,
    traces off)."""

    def __init__(self, w: RunWriter, receiver: OtlpReceiver | None) -> None:
        self.w, self.receiver = w, receiver

    def collect(self, folder: str, prefix: str, expected: int) -> None:
        """Wait until ``expected`` request spans with ``prefix`` arrived (the exporter drops what it
        holds at shutdown), then write what came since the last call once into ``folder``
        (``run``: the run's top level, for spans that arrive after the last cell)."""
        if self.receiver is None:
            return
        got = (self.receiver.wait_for(prefix, expected, SPAN_WAIT_S, idle_s=SPAN_IDLE_S) if expected
               else self.receiver.count(prefix))
        data = self.receiver.drain()
        if data:
            rel = SPANS_FILE if folder == "run" else f"{folder}/{SPANS_FILE}"
            self.w.write_bytes(unique_name(self.w.dir, rel), gzip.compress(data))
        notes = self.w.manifest.notes
        if expected and got < expected:
            notes.append(f"{folder}: {got} of {expected} requests have a server span (rejected or "
                         "failed requests have none; the report counts unmatched rows)")
        if folder == "run" and self.receiver.rejected:
            notes.append(f"OTLP receiver refused posts (HTTP status: count): {dict(self.receiver.rejected)}")
