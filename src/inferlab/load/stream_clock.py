"""The stream clock: client-side token timing for k6's streamed requests.

Stock k6 reads a whole response before a script sees it, and its ``http_req_waiting`` ends
at the first response byte: the headers, which vLLM (Starlette's StreamingResponse under
uvicorn) and the stand-in send before the engine has made a token. So k6 alone cannot time
the first token of a stream. The stream clock is a relay on loopback that k6 sends its
requests through (k6's ``base_url`` becomes :attr:`StreamClock.base_url`); it passes the
bytes on (only the request's Connection header changes, below) and stamps, per request, on
one monotonic clock:

- ``start``: the request head leaves for the target (after the relay's own connection to it);
- ``headers_ms``: the first byte of the response (what k6 calls waiting + sending);
- ``ttft_ms``: the first SSE event that carries answer text (``"content":"`` followed by a
  character; vLLM's role event carries ``"content":""`` and does not count);
- ``last_token_ms``: the last event that carries answer text; ``e2e_ms``: the upstream's
  last byte. ``tpot_ms`` = (last_token - ttft) / (completion_tokens - 1), from the usage
  chunk's ``completion_tokens`` (``stream_options.include_usage``).

One request per upstream connection: the relay asks the upstream to close after answering
(``Connection: close`` in the forwarded request head), so a response ends at the upstream's
EOF and no HTTP framing is parsed. k6 then opens a loopback connection per request (tens of
microseconds: ``http_req_connecting``). The relay's connections to the target (TCP, and TLS to
an https edge or URL) are opened *ahead*: when a request ends, a spare connection is opened in
the background for the next one, which takes the newest spare that is open and at most
:data:`SPARE_MAX_AGE_S` old (far under servers' idle limits for a connection that has sent
nothing: uvicorn has none before a first request, nginx's ``client_header_timeout`` is 60 s),
so a keep-alive client's cost is what k6's duration sees, not a handshake per request. Without
a fresh spare (the first requests, a pause longer than that) the request opens its own
connection before its clock starts. ``connect_ms`` records what the request waited for its
connection: 0 with a spare; k6's duration includes it, the clock's times do not. The ``Host`` header is the target's (k6 addressed the relay),
so a URL target behind a name-based proxy sees its own name. One JSON line per request goes to
``out`` as it ends (formats/stream_clock.py; :func:`inferlab.ingest.stream_clock.read_stream_clock`
reads them); ``out`` is created, never appended to (raw run files are written once). On stop,
requests in flight get ``grace_s`` to end (k6 has a whole answer before the target's EOF
reaches the relay); one still in flight then is written with ``error`` ``cut: ...``.

Cost, measured against the stand-in (200 requests of 64 streamed tokens at 8 VUs, 14 req/s):
6 ms of CPU per request in this process, 8 % of a core: fine for a CPU engine's rates; at a
GPU host's hundreds of requests/s the engine's spans carry TTFT/TPOT without it.
"""

from __future__ import annotations

import asyncio
import collections
import json
import re
import ssl
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..formats.stream_clock import SCHEMA
from ..runs.layout import CELL_FILES

STREAM_CLOCK_FILE = CELL_FILES["stream_clock"]  # in the cell folder, beside k6's files
TEXT_EVENT = re.compile(rb'"content":"[^"]')  # a delta with answer text (the role event has "")
COMPLETION_TOKENS = re.compile(rb'"completion_tokens":(\d+)')
REQUEST_ID = re.compile(rb"\r\nx-request-id:[ \t]*([^\r\n]*)", re.IGNORECASE)
CONNECTION = re.compile(rb"\r\n(connection|keep-alive):[^\r\n]*", re.IGNORECASE)
HOST = re.compile(rb"\r\nhost:[^\r\n]*", re.IGNORECASE)
STATUS = re.compile(rb"^HTTP/\d(?:\.\d)? (\d{3})")
SSE = re.compile(rb"\r\ncontent-type:[ \t]*text/event-stream", re.IGNORECASE)
GRACE_S = 10.0  # on stop, requests in flight get this long to end before they are cut
SPARE_MAX_AGE_S = 2.0  # a spare connection older than this is closed unused (module docstring)
MAX_SPARES = 256
CARRY = 16  # bytes kept across reads so a pattern split between two reads is still seen once
TAIL = 2048  # bytes of the response end kept for the usage chunk
READ = 1 << 16


@dataclass
class StreamTiming:
    """One request as the relay saw it (milliseconds after ``start_unix``)."""

    request_id: str | None
    start_unix: float
    status: int | None = None
    sse: bool | None = None  # the answer came as an SSE stream (else its text is not timed)
    connect_ms: float | None = None  # the relay's connection to the target, before start_unix
    headers_ms: float | None = None
    ttft_ms: float | None = None
    last_token_ms: float | None = None
    e2e_ms: float | None = None
    text_events: int = 0
    completion_tokens: int | None = None
    tpot_ms: float | None = None
    error: str | None = None


class ResponseStamps:
    """Stamps one response as its bytes pass (module docstring)."""

    def __init__(self, rec: StreamTiming, t0: float) -> None:
        self.rec, self.t0, self.carry, self.tail, self.head = rec, t0, b"", b"", b""

    def _ms(self) -> float:
        return (time.perf_counter() - self.t0) * 1000

    def feed(self, data: bytes) -> None:
        now = self._ms()
        if self.rec.headers_ms is None:
            self.rec.headers_ms = now
            m = STATUS.match(data)
            self.rec.status = int(m.group(1)) if m else None
        if self.rec.sse is None:  # until the header block is complete
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            self.rec.sse = SSE.search(self.head[:end]) is not None
            data = self.head[end:]
        if not self.rec.sse:  # a JSON answer: only its usage (the tail) is read
            self.tail = (self.tail + data)[-TAIL:]
            return
        seen = self.carry + data
        hits = sum(1 for m in TEXT_EVENT.finditer(seen) if m.end() > len(self.carry))
        if hits:
            self.rec.text_events += hits
            self.rec.ttft_ms = now if self.rec.ttft_ms is None else self.rec.ttft_ms
            self.rec.last_token_ms = now
        self.carry = seen[-CARRY:]
        self.tail = (self.tail + data)[-TAIL:]

    def close(self) -> StreamTiming:
        rec = self.rec
        rec.e2e_ms = self._ms()
        found = COMPLETION_TOKENS.findall(self.tail)
        rec.completion_tokens = int(found[-1]) if found else None
        n = rec.completion_tokens
        if n and n > 1 and rec.ttft_ms is not None and rec.last_token_ms is not None:
            rec.tpot_ms = (rec.last_token_ms - rec.ttft_ms) / (n - 1)
        return rec


def close_after_answer(head: bytes, host: bytes | None = None) -> bytes:
    """The request head with its Connection/Keep-Alive headers replaced by ``Connection: close``
    and, given ``host``, its Host header replaced by ``Host: <host>`` (the target's)."""
    end = head.index(b"\r\n\r\n")
    fields = CONNECTION.sub(b"", head[:end])
    if host is not None:
        fields = HOST.sub(b"", fields) + b"\r\nHost: " + host
    return fields + b"\r\nConnection: close" + head[end:]


class StreamClock:
    """The relay, in a thread of this process: ``with StreamClock(upstream, out) as clock:``
    then send to ``clock.base_url``. ``upstream``: the target's base URL (http or https; with
    https, ``ca_file`` is trusted, or nothing is checked with ``tls_skip_verify``)."""

    def __init__(self, upstream: str, out: Path, *, ca_file: str | None = None, tls_skip_verify: bool = False,
                 grace_s: float = GRACE_S) -> None:
        u = urlsplit(upstream)
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.path = u.path.rstrip("/")
        self.host_header = (u.netloc.rpartition("@")[2] or self.host).encode("idna")
        self.tls: ssl.SSLContext | None = None
        if u.scheme == "https":
            self.tls = ssl.create_default_context(cafile=ca_file)
            if tls_skip_verify:
                self.tls.check_hostname, self.tls.verify_mode = False, ssl.CERT_NONE
        self.out = Path(out)
        self.records = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="stream-clock", daemon=True)
        self._server: asyncio.Server | None = None
        self._fh = None
        self._tasks: set[asyncio.Task] = set()  # strong references: asyncio keeps only weak ones
        self._in_flight: set[asyncio.Task] = set()  # relays past the request head
        self.grace_s = grace_s
        self._spares: collections.deque = collections.deque()  # (opened monotonic s, reader, writer), newest last
        self.base_url = ""

    def __enter__(self) -> StreamClock:
        self._fh = open(self.out, "x", encoding="utf-8")  # write-once: never appended to
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._relay, "127.0.0.1", 0), self._loop).result(10)
        port = self._server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}{self.path}"
        return self

    def __exit__(self, *exc) -> None:
        async def stop() -> None:
            self._server.close()  # type: ignore[union-attr]
            # a request k6 has its whole answer of may still wait for the target's EOF: let it
            # end; then cut what is left (a connection k6 opened but never used waits for a head)
            if self._in_flight:
                await asyncio.wait(list(self._in_flight), timeout=self.grace_s)
            rest = list(self._tasks)
            for t in rest:
                t.cancel()
            await asyncio.gather(*rest, return_exceptions=True)
            while self._spares:
                self._spares.pop()[2].close()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._fh.close()  # type: ignore[union-attr]

    def _write(self, rec: StreamTiming) -> None:
        self._fh.write(json.dumps({"schema": SCHEMA, **asdict(rec)}) + "\n")  # type: ignore[union-attr]
        self._fh.flush()  # type: ignore[union-attr]
        self.records += 1

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)  # type: ignore[arg-type]
        try:
            await self._relay_one(client_r, client_w)
        finally:
            self._tasks.discard(task)  # type: ignore[arg-type]
            self._in_flight.discard(task)  # type: ignore[arg-type]

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, float]:
        """A connection to the target and the ms waited for it: the newest fresh, open spare
        (0 ms), else a new one. Spares too old, or closed by the target, are closed unused."""
        now = time.monotonic()
        while self._spares:
            opened, r, w = self._spares.pop()
            if now - opened <= SPARE_MAX_AGE_S and not r.at_eof() and not w.is_closing():
                while self._spares and now - self._spares[0][0] > SPARE_MAX_AGE_S:  # the rest, oldest first
                    self._spares.popleft()[2].close()
                return r, w, 0.0
            w.close()
        t = time.perf_counter()
        r, w = await asyncio.open_connection(self.host, self.port, ssl=self.tls)
        return r, w, (time.perf_counter() - t) * 1000

    async def _open_spare(self) -> None:
        """One spare connection for the next request; a failure is left to that request."""
        try:
            r, w = await asyncio.open_connection(self.host, self.port, ssl=self.tls)
        except (OSError, ssl.SSLError):
            return
        if len(self._spares) >= MAX_SPARES:
            w.close()
        else:
            self._spares.append((time.monotonic(), r, w))

    async def _relay_one(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            head = await client_r.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            client_w.close()
            return
        self._in_flight.add(asyncio.current_task())  # type: ignore[arg-type]
        m = REQUEST_ID.search(head)
        rec = StreamTiming(m.group(1).decode("latin-1").strip() if m else None, time.time())
        try:
            up_r, up_w, rec.connect_ms = await self._connect()
        except (OSError, ssl.SSLError) as exc:
            rec.error = f"upstream: {exc}"
            self._write(rec)
            client_w.close()
            return
        # the clock starts when the request leaves for the target: a connection it had to open
        # (a TLS handshake to an edge) is the relay's, which a keep-alive client would not pay
        rec.start_unix = time.time()
        stamps = ResponseStamps(rec, time.perf_counter())
        up_w.write(close_after_answer(head, self.host_header))

        async def request_body() -> None:  # the rest of the request, as it comes
            while data := await client_r.read(READ):
                up_w.write(data)
                await up_w.drain()

        sender = asyncio.create_task(request_body())
        try:
            while data := await up_r.read(READ):
                stamps.feed(data)
                client_w.write(data)
                await client_w.drain()
        except ConnectionError as exc:
            rec.error = f"relay: {exc}"
        except asyncio.CancelledError:
            rec.error = "cut: the clock stopped with the request in flight"
            raise
        finally:
            sender.cancel()
            self._write(stamps.close())
            for w in (up_w, client_w):
                w.close()
            if rec.error is None:  # the next request's connection, opened while this client is busy
                spare = asyncio.ensure_future(self._open_spare())
                self._tasks.add(spare)  # held (and cancelled on stop) like a relay
                spare.add_done_callback(self._tasks.discard)
