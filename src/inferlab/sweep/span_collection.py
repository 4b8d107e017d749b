"""Server spans of a run, per scope (the idle probe, each cell, the run's tail), written into the
run once each, from either source: the local engine's OTLP receiver
(``telemetry.otlp.OtlpReceiver``), or on Kubernetes the tracing component's Collector
(``telemetry.collector_spans.CollectorSpans``, attached by :meth:`SpanCollector.attach` when
the k8s target found one). Same files (``spans.otlp.jsonl.gz`` per scope), so the reader, the
join and the report sections cannot tell the two apart.

The engine's batch exporter sends spans after the responses, so a scope waits for its requests'
spans (bounded) before it drains the source; a scope whose requests lack spans says so in the
manifest's notes (rejected or failed requests have none)."""

from __future__ import annotations

import gzip
from typing import Protocol

from ..runs.layout import unique_name
from ..runs.store import RunWriter
from ..targets.session import TargetSession
from ..telemetry.collector_spans import CollectorSpans

SPAN_WAIT_S = 30  # after a scope's last response; the engine's batch exporter flushes every 0.5 s
SPAN_IDLE_S = 3.0  # 6x the export delay: no new span for this long, none is coming (rejected requests have none)
SPANS_FILE = "spans.otlp.jsonl.gz"


class SpanSource(Protocol):
    """What a span source offers (``OtlpReceiver``, ``CollectorSpans``)."""

    def count(self, prefix: str = "") -> int: ...
    def wait_for(self, prefix: str, n: int, timeout_s: float, idle_s: float | None = None) -> int: ...
    def drain(self) -> bytes: ...
    def problems(self) -> list[str]: ...


class SpanCollector:
    """Writes what ``source`` holds into ``w``; a no-op without one (url targets, a cluster
    without the tracing component, traces off)."""

    def __init__(self, w: RunWriter, source: SpanSource | None) -> None:
        self.w, self.source = w, source

    def attach(self, session: TargetSession) -> None:
        """On a k8s target whose cluster runs the tracing component (``session.span_reader``),
        read the run's spans from its Collector from now on (the run window opens: a resumed
        run's earlier attempt stays out); otherwise nothing changes."""
        if self.source is None and session.span_reader is not None:
            self.source = CollectorSpans(session.span_reader, self.w.manifest.run_id)

    def collect(self, folder: str, prefix: str, expected: int) -> None:
        """Wait until ``expected`` request spans with ``prefix`` arrived (the exporter drops what it
        holds at shutdown), then write what came since the last call once into ``folder``
        (``run``: the run's top level, for spans that arrive after the last cell)."""
        if self.source is None:
            return
        got = (self.source.wait_for(prefix, expected, SPAN_WAIT_S, idle_s=SPAN_IDLE_S) if expected
               else self.source.count(prefix))
        data = self.source.drain()
        if data:
            rel = SPANS_FILE if folder == "run" else f"{folder}/{SPANS_FILE}"
            self.w.write_bytes(unique_name(self.w.dir, rel), gzip.compress(data))
        notes = self.w.manifest.notes
        if expected and got < expected:
            notes.append(f"{folder}: {got} of {expected} requests have a server span (rejected or "
                         "failed requests have none; the report counts unmatched rows)")
        if folder == "run":
            notes.extend(self.source.problems())
