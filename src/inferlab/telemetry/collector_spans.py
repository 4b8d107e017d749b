"""A run's server spans on Kubernetes, read from the tracing component's OpenTelemetry Collector
(platform/components/tracing).

vLLM in the cluster exports its spans to the Collector, whose file exporter appends them, one
OTLP/JSON ``ExportTraceServiceRequest`` a line (each line a batch: the batch processor merges
exports, so one line can hold spans of several runs), to
:data:`~inferlab.formats.otlp.COLLECTOR_SPANS_FILE`; a rotated file is renamed beside it
(``spans-<UTC time>.jsonl``, same inode) and a new one started. :class:`CollectorSpans` follows
those files during a run through ``run(argv) -> stdout``, a command run in the Collector pod's
``reader`` sidecar (busybox: ``stat``, ``tail``; targets/k8s.py builds it, tests run it locally
on a directory laid out the same way).

Contract, the local receiver's (``telemetry.otlp.OtlpReceiver``), so ``sweep.span_collection``
writes either into the run the same way:

- ``count(prefix)``/``wait_for(prefix, n, timeout_s, idle_s)``: the run's request spans read so
  far whose request id starts with ``prefix``; ``wait_for`` polls the files (every ``poll_s``).
- ``drain()``: what was kept since the last drain, as OTLP/JSON lines: a Collector line whose
  spans are all kept as the Collector wrote it, any other with only the kept spans (its
  resource and scope as they were). ``ingest.spans`` reads it like the local receiver's file.
- ``problems()``: what went wrong while reading (exec errors, lines that are not OTLP/JSON), for
  the run's notes; a problem never stops the run.

What is kept (the run's spans, not the cluster's): reading starts at the files' ends when the
object is made (or at its first listing that works): nothing written before the run is read; a
file that appears later is read from its start. Of what is appended, a span is kept when it
started inside the run window (not before ``since`` less :data:`CLOCK_SLACK_S`: the span's time
is the node's clock, ``since`` this machine's) and either carries a request id of this run
(``<run_id>.``, k6's and the probe's X-Request-Id) or carries none (start-up spans of an engine
that started during the run). So other runs' requests in the same lines, a resumed run's earlier
attempt (same ids, earlier times) and an engine's earlier start-up spans flushed late stay out.
Spans without a request id from another run on the same engine in the same window cannot be told
apart (vLLM 0.24/0.32 send none after start-up). A span read twice (same trace and span id) is
kept once.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime

from ..formats.otlp import COLLECTOR_SPANS_FILE, request_id_of
from ..kube import Exec  # run a command where the span files are, return its stdout


CLOCK_SLACK_S = 30  # the node's clock against this machine's (NTP keeps both within far less)
POLL_S = 1.0
# vLLM's batch exporter (0.5 s), the batch processor (0.2 s) and a poll each second lie between a
# response and its span in the file: the local receiver's idle stop (3 s) is stretched to this
MIN_IDLE_S = 5.0
# the span file and its rotated siblings, oldest first ("$1": the directory, "$2": the stem,
# "$3": the extension), each as "inode size name"; an unmatched glob stays literal and is skipped
_LIST = 'cd "$1" || exit 1; for f in "$2"-*"$3" "$2$3"; do [ -f "$f" ] && stat -c "%i %s %n" "$f"; done; true'
# bytes of "$1" from byte "$2" (1-based), after the inode of the file actually opened: rotated
# between listing and reading, the bytes would be another file's
_READ = 'exec 3<"$1" || exit 1; stat -L -c %i /proc/$$/fd/3 && tail -c +"$2" <&3'


class CollectorSpans:
    """The run's spans from the Collector's file exporter (module docstring)."""

    def __init__(self, run: Exec, run_id: str, since: datetime | None = None, path: str = COLLECTOR_SPANS_FILE,
                 poll_s: float = POLL_S) -> None:
        self.run, self.prefix, self.poll_s, self.min_idle_s = run, f"{run_id}.", poll_s, MIN_IDLE_S
        since = since or datetime.now(UTC)
        self.since_ns = int((since.timestamp() - CLOCK_SLACK_S) * 1e9)
        self.dir, name = path.rsplit("/", 1)
        self.stem, dot, ext = name.rpartition(".")
        self.stem, self.ext = (self.stem, dot + ext) if dot else (name, "")
        self._lines: list[bytes] = []
        self._ids: Counter[str] = Counter()
        self._seen: set[tuple[str, str]] = set()
        self._problems: list[str] = []
        self._done: dict[int, int] | None = None  # inode -> bytes taken (whole lines only); None: not listed yet
        self._poll()  # the first listing: what is there now is not this run's

    def _sh(self, script: str, *args: str) -> bytes:
        return self.run(["sh", "-c", script, "sh", *args])

    def _files(self) -> list[tuple[int, int, str]]:
        out = []
        for line in self._sh(_LIST, self.dir, self.stem, self.ext).decode().splitlines():
            inode, size, name = line.split(" ", 2)
            out.append((int(inode), int(size), name))
        return out

    def _poll(self) -> None:
        """Take every whole line appended since the last poll, oldest file first."""
        try:
            files = self._files()
            if self._done is None:
                self._done = {inode: size for inode, size, _ in files}
                return
            for inode, size, name in files:
                done = self._done.get(inode, 0)
                if size < done:  # truncated, or a new file on a freed inode: from its start
                    done = 0
                if size == done:
                    continue
                head, _, data = self._sh(_READ, f"{self.dir}/{name}", str(done + 1)).partition(b"\n")
                if int(head) != inode:
                    return  # rotated since the listing: the next poll sees the new layout
                # a line still being written waits for the next poll, except in a rotated file: it
                # never grows again, and the exporter writes a line's JSON and its "\n" separately,
                # so a rotation between the two leaves the JSON here and the "\n" in the new file
                whole = data if name != self.stem + self.ext else data[:data.rfind(b"\n") + 1]
                self._take(whole, name, done)
                self._done[inode] = done + len(whole)
        except Exception as exc:  # noqa: BLE001 - API errors, a pod restarting: noted, the run goes on
            self._problem(f"reading the Collector's span files: {type(exc).__name__}: {exc}")

    def _take(self, data: bytes, name: str, offset: int) -> None:
        for line in data.splitlines(keepends=True):
            if not line.strip():  # the "\n" of a line that a rotation cut from its JSON
                offset += len(line)
                continue
            try:
                kept, picked, dropped = self._select(json.loads(line))
            except (ValueError, TypeError, AttributeError, KeyError) as exc:
                self._problem(f"{name} byte {offset}: not an OTLP/JSON ExportTraceServiceRequest line ({exc!r})")
            else:
                for key, rid in picked:  # counted once the whole line has parsed
                    self._seen.add(key)
                    if rid is not None:
                        self._ids[rid] += 1
                if kept is not None:  # a rotated file's last line may lack its "\n": every line written ends in one
                    raw = line if line.endswith(b"\n") else line + b"\n"
                    self._lines.append(raw if not dropped else json.dumps(kept, separators=(",", ":")).encode() + b"\n")
            offset += len(line)

    def _select(self, doc: dict) -> tuple[dict | None, list[tuple[tuple[str, str], str | None]], bool]:
        """(the line with only this run's spans, or None when it has none; (trace and span id,
        request id) of each kept span; whether any span was left out)."""
        out, picked, dropped = [], [], False
        for rs in doc["resourceSpans"]:
            scopes = []
            for ss in rs.get("scopeSpans", []):
                spans = []
                for span in ss.get("spans", []):
                    key, rid = (span["traceId"], span["spanId"]), request_id_of(span)
                    if (key not in self._seen and int(span["startTimeUnixNano"]) >= self.since_ns
                            and (rid is None or rid.startswith(self.prefix))):
                        spans.append(span)
                        picked.append((key, rid))
                dropped |= len(spans) < len(ss.get("spans", []))
                if spans:
                    scopes.append({**ss, "spans": spans})
            if scopes:
                out.append({**rs, "scopeSpans": scopes})
        return ({**doc, "resourceSpans": out} if out else None), picked, dropped

    def _problem(self, text: str) -> None:
        if text not in self._problems:
            self._problems.append(text)

    def count(self, prefix: str = "") -> int:
        """The run's request spans read so far whose request id starts with ``prefix``."""
        return sum(n for rid, n in self._ids.items() if rid.startswith(prefix))

    def wait_for(self, prefix: str, n: int, timeout_s: float, idle_s: float | None = None) -> int:
        """Poll until ``n`` request spans with ``prefix`` were read, ``timeout_s`` passed, or (with
        ``idle_s``, at least ``min_idle_s``) none came for that long; the count then."""
        idle_s = None if idle_s is None else max(idle_s, self.min_idle_s)
        deadline = time.monotonic() + timeout_s
        last, changed = -1, time.monotonic()
        while True:
            self._poll()
            have, now = self.count(prefix), time.monotonic()
            if have != last:
                last, changed = have, now
            if have >= n or now >= deadline or (idle_s is not None and now - changed >= idle_s):
                return have
            time.sleep(min(self.poll_s, max(0.0, deadline - now)))

    def drain(self) -> bytes:
        """OTLP/JSON lines of the run's spans read since the last drain (polled first)."""
        self._poll()
        out, self._lines = b"".join(self._lines), []
        return out

    def problems(self) -> list[str]:
        return list(self._problems)
