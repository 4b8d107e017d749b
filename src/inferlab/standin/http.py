"""A minimal HTTP/1.1 server on asyncio streams: keep-alive, Content-Length request bodies,
plain responses and chunked streams (what SSE needs). Just enough for k6, httpx and the
OpenAI clients; not a general server.

Decision: the stdlib, not aiohttp or starlette (neither is a dependency of the project), and
asyncio rather than threads, so the batching model runs on one event loop without locks.
Contract: ``handler(request, conn)`` answers each request once, with :meth:`Connection.reply`
or :meth:`Connection.stream`; a write to a peer that went away raises ConnectionResetError.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

MAX_HEADER_BYTES = 64 << 10
MAX_BODY = 32 << 20


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self):
        return json.loads(self.body or b"null")


class BadRequest(Exception):
    pass


class Connection:
    """One client connection; ``keep_alive`` is False after a request asked to close."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.keep_alive = True

    async def _write(self, data: bytes) -> None:
        if self.writer.transport.is_closing():
            raise ConnectionResetError("the client went away")
        self.writer.write(data)
        await self.writer.drain()

    def _head(self, status: int, headers: dict[str, str]) -> bytes:
        lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", *(f"{k}: {v}" for k, v in headers.items())]
        if not self.keep_alive:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def reply(self, status: int, body: bytes | dict | list = b"", content_type: str = "application/json") -> None:
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        await self._write(self._head(status, {"Content-Type": content_type, "Content-Length": str(len(body))}) + body)

    async def stream(self, content_type: str = "text/event-stream; charset=utf-8") -> Stream:
        await self._write(self._head(200, {"Content-Type": content_type, "Transfer-Encoding": "chunked",
                                           "Cache-Control": "no-cache"}))
        return Stream(self)


class Stream:
    """A chunked response body: :meth:`send` each piece, then :meth:`end`."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def send(self, data: bytes) -> None:
        if data:
            await self.conn._write(b"%x\r\n%b\r\n" % (len(data), data))

    async def end(self) -> None:
        await self.conn._write(b"0\r\n\r\n")


Handler = Callable[[Request, Connection], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None  # the client closed between requests
    except asyncio.LimitOverrunError as exc:
        raise BadRequest("request head too large") from exc
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, _version = lines[0].split(" ", 2)
    except ValueError:
        raise BadRequest(f"bad request line {lines[0][:80]!r}") from None
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise BadRequest("chunked request bodies are not supported: send Content-Length")
    try:
        length = int(headers.get("content-length") or 0)
    except ValueError:
        raise BadRequest("Content-Length is not a number") from None
    if length > MAX_BODY:
        raise BadRequest(f"body over {MAX_BODY} bytes")
    body = await reader.readexactly(length) if length else b""
    url = urlsplit(target)
    return Request(method.upper(), url.path, parse_qs(url.query), headers, body)


async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handler: Handler,
                           open_writers: set[asyncio.StreamWriter]) -> None:
    """Requests one after another on one connection until it closes or asks to; the writer is
    in ``open_writers`` meanwhile (a dying server resets them all)."""
    conn = Connection(writer)
    open_writers.add(writer)
    try:
        while conn.keep_alive:
            try:
                req = await _read_request(reader)
            except BadRequest as exc:
                conn.keep_alive = False
                await conn.reply(400, {"error": {"message": str(exc), "type": "BadRequestError", "code": 400}})
                break
            if req is None:
                break
            conn.keep_alive = req.headers.get("connection", "").lower() != "close"
            await handler(req, conn)
    except (ConnectionError, asyncio.IncompleteReadError):
        pass  # the client went away mid-request: nothing to answer
    finally:
        open_writers.discard(writer)
        writer.close()


async def start_server(handler: Handler, host: str, port: int,
                       open_writers: set[asyncio.StreamWriter]) -> asyncio.Server:
    return await asyncio.start_server(lambda r, w: serve_connection(r, w, handler, open_writers), host, port,
                                      limit=MAX_HEADER_BYTES)
