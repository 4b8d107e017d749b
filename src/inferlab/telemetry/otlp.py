"""An OTLP/HTTP trace receiver on loopback, for the duration of a run.

vLLM started with ``engine_args()`` and ``engine_env()`` posts its spans here: one
``llm_request`` span per request (``gen_ai.request.id`` = ``chatcmpl-<X-Request-Id>``, queue,
prefill, decode, TTFT, e2e, token counts) and its start-up spans (Overall Loading, Load model,
Allocate KV cache, ...). Observed on vLLM 0.32 (CPU): the start-up spans come with the endpoint
alone, and ``detailed=True`` (``--collect-detailed-traces all``) changes no span: 0.32 defines the
flag's switches (model forward/execute time) but reads them nowhere. It is passed on when asked,
for engines that do (the GPU host's 0.24 is to be checked).

Contract:
- ``POST /v1/traces`` with ``Content-Type: application/x-protobuf`` (optionally
  ``Content-Encoding: gzip``) and an ``ExportTraceServiceRequest`` body: kept, converted to
  OTLP/JSON (the OpenTelemetry Collector file exporter's format: one JSON
  ``ExportTraceServiceRequest`` per line, trace and span ids in hex), answered 200 with an empty
  ``ExportTraceServiceResponse``. Any other path 404, method 405, content type 415 (JSON is not
  accepted: vLLM sends protobuf, and one format is one thing to get right), encoding 415, and
  a body that is not such a message 400, each with a plain-text reason.
- ``count(prefix)``/``wait_for(prefix, n, timeout_s)``: request spans whose request id (without
  ``chatcmpl-``) starts with ``prefix``, cumulative over the receiver's life. The batch span
  processor drops what it holds at shutdown, so the runner waits for a cell's spans before the
  cell ends and before the engine stops.
- ``drain()``: the NDJSON received since the last drain, written once into the run record.
- ``problems()``: refused posts, for the run's notes. (``telemetry.collector_spans`` keeps the
  same four calls for the cluster's Collector.)
Binds 127.0.0.1 only; nothing here contacts anything.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from ..formats.otlp import REQUEST_ID_ATTR, REQUEST_ID_PREFIX, hex_ids

PATH = "/v1/traces"
PROTOBUF = "application/x-protobuf"
MAX_BODY = 64 << 20  # a batch of 512 request spans is ~0.3 MB; anything near this is not ours

# OTel SDK switches: traces over HTTP/protobuf to the receiver; every other signal and exporter
# off, so nothing but loopback is contacted whatever the SDK's defaults are. The schedule delay
# (default 5 s) is shortened so a cell's spans arrive soon after its last request.
OTEL_ENV = {
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
    "OTEL_METRICS_EXPORTER": "none",
    "OTEL_LOGS_EXPORTER": "none",
    "OTEL_TRACES_SAMPLER": "always_on",
    "OTEL_BSP_SCHEDULE_DELAY": "500",
    "OTEL_SDK_DISABLED": "false",
}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive: the exporter reuses its connection

    def log_message(self, format, *args) -> None:  # noqa: A002 - the stdlib's name
        pass  # no access log on stderr; the receiver's record is the spans themselves

    def _reply(self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _fail(self, code: int, why: str) -> None:
        self.server.receiver.rejected[code] += 1
        self._reply(code, f"{why}\n".encode())

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self._fail(405, f"only POST {PATH} (OTLP/HTTP traces, protobuf) is served")

    do_PUT = do_DELETE = do_GET  # noqa: N815

    def do_POST(self) -> None:  # noqa: N802
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True  # the body's end is unknown: this connection cannot go on
            return self._fail(400, f"Content-Length {self.headers.get('Content-Length')!r} is not a number")
        if length > MAX_BODY:
            self.close_connection = True
            return self._fail(413, f"body of {length} bytes is over the {MAX_BODY}-byte limit")
        body = self.rfile.read(length) if length else b""
        if self.path.split("?")[0] != PATH:
            return self._fail(404, f"{self.path}: this receiver serves {PATH} only (traces)")
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != PROTOBUF:
            return self._fail(415, f"Content-Type {ctype or '(none)'!r} not supported: send {PROTOBUF} "
                              "(OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/protobuf)")
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding == "gzip":
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError) as exc:
                return self._fail(400, f"Content-Encoding gzip, but the body is not gzip: {exc}")
        elif encoding != "identity":
            return self._fail(415, f"Content-Encoding {encoding!r} not supported: gzip or none")
        try:
            msg = ExportTraceServiceRequest.FromString(body)
        except DecodeError as exc:
            return self._fail(400, f"body is not an OTLP ExportTraceServiceRequest (protobuf): {exc}")
        self.server.receiver._keep(msg)
        self._reply(200, ExportTraceServiceResponse().SerializeToString(), PROTOBUF)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: OtlpReceiver


def request_ids(msg: ExportTraceServiceRequest) -> list[str]:
    """The request id (``chatcmpl-`` removed) of every span in ``msg`` that has one."""
    out = []
    for rs in msg.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                for kv in span.attributes:
                    if kv.key == REQUEST_ID_ATTR:
                        out.append(kv.value.string_value.removeprefix(REQUEST_ID_PREFIX))
                        break
    return out


class OtlpReceiver:
    """``with OtlpReceiver() as rx: engine(args=rx.engine_args(), env=rx.engine_env()) ...``"""

    def __init__(self, detailed: bool = False, port: int = 0) -> None:
        self.detailed = detailed
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.receiver = self
        # a 50 ms poll: shutdown() waits up to one poll, paid at the end of every run (0.5 s by default)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="otlp-receiver",
                                        daemon=True)
        self._cond = threading.Condition()
        self._lines: list[bytes] = []
        self._ids: Counter[str] = Counter()
        self.spans = 0  # every span received, request spans or not
        self.posts = 0
        self.rejected: Counter[int] = Counter()  # HTTP status -> count of refused posts

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    def engine_args(self) -> list[str]:
        """vLLM CLI arguments: export traces here (and start-up spans when ``detailed``)."""
        return ["--otlp-traces-endpoint", self.endpoint, *(["--collect-detailed-traces", "all"] if self.detailed else [])]

    def engine_env(self) -> dict[str, str]:
        """Environment for the engine process (see ``OTEL_ENV``)."""
        return dict(OTEL_ENV)

    def _keep(self, msg: ExportTraceServiceRequest) -> None:
        doc = hex_ids(json_format.MessageToDict(msg, use_integers_for_enums=True))
        line = json.dumps(doc, separators=(",", ":")).encode() + b"\n"
        ids = request_ids(msg)
        with self._cond:
            self._lines.append(line)
            self._ids.update(ids)
            self.posts += 1
            self.spans += sum(len(ss.spans) for rs in msg.resource_spans for ss in rs.scope_spans)
            self._cond.notify_all()

    def count(self, prefix: str = "") -> int:
        """Request spans received so far whose request id starts with ``prefix``."""
        with self._cond:
            return self._count(prefix)

    def _count(self, prefix: str) -> int:
        return sum(n for rid, n in self._ids.items() if rid.startswith(prefix))

    def wait_for(self, prefix: str, n: int, timeout_s: float, idle_s: float | None = None) -> int:
        """Block until ``n`` request spans with ``prefix`` have arrived, ``timeout_s`` passed, or
        (with ``idle_s``) no such span arrived for ``idle_s``; returns the count then (less than
        ``n`` on timeout). ``idle_s`` ends the wait early when fewer spans than requests will
        ever come (requests an edge rejected, or the engine refused, have no span): a few times
        the exporter's schedule delay (``OTEL_BSP_SCHEDULE_DELAY``) is enough."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            last, changed = self._count(prefix), time.monotonic()
            while (have := self._count(prefix)) < n:
                now = time.monotonic()
                if have != last:
                    last, changed = have, now
                left = deadline - now
                if idle_s is not None:
                    left = min(left, changed + idle_s - now)
                if left <= 0:
                    break
                self._cond.wait(left)
            return have

    def drain(self) -> bytes:
        """NDJSON (one OTLP/JSON ExportTraceServiceRequest a line) received since the last drain."""
        with self._cond:
            out, self._lines = b"".join(self._lines), []
        return out

    def problems(self) -> list[str]:
        """What the run's notes should say about this receiver: the posts it refused."""
        return [f"OTLP receiver refused posts (HTTP status: count): {dict(self.rejected)}"] if self.rejected else []

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
