"""A /metrics sampler: every ``interval_s`` it scrapes each target's Prometheus endpoint and
appends the raw exposition text, timestamped, to one gzip file in the run
(``telemetry/metrics-samples.prom.gz``). Without a Prometheus it is what gives a run its server
time series (``inferlab.ingest.series.read_series`` reads it into the same table).

File format (decision: raw scrapes, not a pre-digested table, so the record keeps what the
server said; the reader does the arithmetic). A gzip stream of blocks, one per scrape::

    # inferlab-scrape ts=2026-11-27T10:00:01.002345+00:00 job=vllm status=200 elapsed_ms=11.8
    <the response body, byte for byte>

``ts`` is when the request was sent (UTC), ``job`` names the target (``vllm``, ``edge``), and a
failed scrape is a header with ``status=error`` (or the HTTP status) and an empty body. Every
block is followed by a gzip sync flush, so a writer killed mid-run leaves a file that decodes
up to its last whole scrape. The API key travels in the request header only; it is never
written.
"""

from __future__ import annotations

import gzip
import ssl
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

SCRAPE_HEADER = "# inferlab-scrape"
SAMPLES_FILE = "telemetry/metrics-samples.prom.gz"


@dataclass
class ScrapeTarget:
    """One /metrics endpoint: ``job`` labels its series, ``metrics_url`` is the full URL."""

    job: str
    metrics_url: str
    headers: dict[str, str] = field(default_factory=dict)
    verify_tls: bool | str = True


def header_line(ts: datetime, job: str, status: str, elapsed_ms: float) -> bytes:
    return f"{SCRAPE_HEADER} ts={ts.isoformat()} job={job} status={status} elapsed_ms={elapsed_ms:.1f}\n".encode()


class MetricsSampler:
    """``with MetricsSampler(path, [ScrapeTarget(...)], 1.0): ...`` scrapes in a thread until exit.

    Scrapes are paced on a monotonic schedule (no drift); a scrape slower than the interval
    delays the next one rather than overlapping it. ``scrapes`` / ``failures`` count them."""

    def __init__(self, out: Path, targets: list[ScrapeTarget], interval_s: float = 1.0, timeout_s: float = 5.0) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.out, self.targets, self.interval_s, self.timeout_s = out, targets, interval_s, timeout_s
        self.scrapes = self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="metrics-sampler", daemon=True)
        self._error: BaseException | None = None

    def _scrape(self, client: httpx.Client, t: ScrapeTarget) -> bytes:
        ts, t0 = datetime.now(UTC), time.perf_counter()
        try:
            r = client.get(t.metrics_url, headers=t.headers)
            status, body = str(r.status_code), (r.content if r.status_code == 200 else b"")
        except httpx.HTTPError:  # the message is not recorded: it can echo the request
            status, body = "error", b""
        self.scrapes += 1
        self.failures += status != "200"
        if body and not body.endswith(b"\n"):
            body += b"\n"
        return header_line(ts, t.job, status, (time.perf_counter() - t0) * 1000) + body

    def _loop(self) -> None:
        # a CA path (the local edge's) as an SSL context: httpx deprecates verify=<str>
        clients = {id(t): httpx.Client(timeout=self.timeout_s, verify=ssl.create_default_context(cafile=t.verify_tls)
                                       if isinstance(t.verify_tls, str) else t.verify_tls) for t in self.targets}
        try:
            with gzip.open(self.out, "xb", compresslevel=6) as fh:
                start = time.monotonic()
                k = 0
                while True:
                    for t in self.targets:
                        fh.write(self._scrape(clients[id(t)], t))
                    fh.flush()  # gzip sync flush: the file decodes up to here if we die
                    k += 1
                    # next slot on the fixed schedule; skip slots a slow scrape already overran
                    k = max(k, int((time.monotonic() - start) / self.interval_s))
                    if self._stop.wait(max(0.0, start + k * self.interval_s - time.monotonic())):
                        break
        except BaseException as exc:  # noqa: BLE001 - surfaced in __exit__
            self._error = exc
        finally:
            for c in clients.values():
                c.close()

    def __enter__(self) -> MetricsSampler:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=self.timeout_s * len(self.targets) + 10)
        if self._error is not None and exc[0] is None:  # never mask the exception already in flight
            raise RuntimeError(f"metrics sampler writing {self.out} failed: {self._error}") from self._error
