"""The stand-in's HTTP routes: vLLM's OpenAI-compatible surface (chat completions with and
without SSE, models, tokenize, health, version, metrics) plus ``/standin/stats``.

vLLM's behaviour kept: a bearer key guards ``/v1/*`` only (401 ``{"error": "Unauthorized"}``);
the request id is ``chatcmpl-<X-Request-Id>``; a stream sends its headers at once, then a role
chunk, one chunk per token (the last one carries ``finish_reason``), a usage chunk with
``stream_options.include_usage``, and ``data: [DONE]``; unknown model 404, prompt plus
max_tokens over max_model_len 400. Injected errors are answered on arrival, before the queue.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from .. import __version__
from .config import StandInConfig
from .draws import Draws, draw
from .engine import Engine, Job
from .http import Connection, Request
from .metrics import Metrics
from .spans import SpanExporter, request_span
from .stats import RequestRecord, Stats
from .answer_change import change_answer
from .text import answer_logprobs, answer_tokens, chat_prompt_tokens, natural_length, token_ids, tokenize

VERSION = f"standin-{__version__}"  # what /version says: never mistaken for a vLLM release
MASK = "***"


class Refused(Exception):
    """A request refused before it counts as arrived (as vLLM refuses it)."""

    def __init__(self, status: int, message: str, kind: str) -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


def _error(status: int, message: str, kind: str) -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": status}}


def _logprob(token: str, logprob: float) -> dict:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode()), "top_logprobs": []}


def _sse(doc: dict | str) -> bytes:
    return b"data: " + (doc if isinstance(doc, str) else json.dumps(doc, separators=(",", ":"))).encode() + b"\n\n"


class App:
    """Routes and the serving state behind them; ``on_completed`` runs after each full answer
    (the server checks its death condition there)."""

    def __init__(self, cfg: StandInConfig, ignored_args: list[str] | None = None,
                 exporter: SpanExporter | None = None) -> None:
        self.cfg = cfg
        self.engine = Engine(cfg)
        self.exporter = exporter
        self.active: dict[int, RequestRecord] = {}
        # the key is masked: /standin/stats is open, as /metrics is
        self.stats = Stats(config=cfg.model_copy(update={"api_key": MASK if cfg.api_key else None}),
                           ignored_args=ignored_args or [], started_unix=time.time())
        self.metrics = Metrics(cfg.served_model_name, lambda: self.engine.running, lambda: self.engine.waiting,
                               lambda: sum(r.prompt_tokens + r.completion_tokens for r in self.active.values()))
        self.on_completed = lambda: None

    def snapshot(self, with_requests: bool = True) -> Stats:
        s = self.stats
        s.running, s.waiting, s.max_running = self.engine.running, self.engine.waiting, self.engine.max_running
        s.spans_exported = self.exporter.exported if self.exporter else 0
        return s.model_copy(deep=True, update=None if with_requests else {"requests": []})

    async def __call__(self, req: Request, conn: Connection) -> None:
        if req.path.startswith("/v1/") and self.cfg.api_key and \
                req.headers.get("authorization") != f"Bearer {self.cfg.api_key}":
            self.stats.rejected += 1
            return await conn.reply(401, {"error": "Unauthorized"})
        route = (req.method, req.path)
        if route == ("POST", "/v1/chat/completions"):
            return await self.chat(req, conn)
        if route == ("GET", "/health"):
            return await conn.reply(200, b"")
        if route == ("GET", "/metrics"):
            return await conn.reply(200, self.metrics.exposition(), "text/plain; version=0.0.4; charset=utf-8")
        if route == ("GET", "/v1/models"):
            return await conn.reply(200, self.models())
        if route == ("GET", "/version"):
            return await conn.reply(200, {"version": VERSION})
        if route == ("POST", "/tokenize"):
            return await self.tokenize(req, conn)
        if route == ("GET", "/standin/stats"):
            full = req.query.get("requests", ["1"])[0] not in ("0", "false")
            return await conn.reply(200, self.snapshot(full).model_dump_json().encode())
        await conn.reply(404, {"detail": "Not Found"})

    def models(self) -> dict:
        return {"object": "list", "data": [{
            "id": self.cfg.served_model_name, "object": "model", "created": int(self.stats.started_unix),
            "owned_by": "vllm", "root": self.cfg.model, "parent": None, "max_model_len": self.cfg.max_model_len}]}

    async def tokenize(self, req: Request, conn: Connection) -> None:
        try:
            body = req.json()
            tokens = (chat_prompt_tokens(body["messages"], body.get("add_generation_prompt", True))
                      if "messages" in body else tokenize(str(body["prompt"])))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return await conn.reply(400, _error(400, f"bad tokenize request: {exc}", "BadRequestError"))
        await conn.reply(200, {"count": len(tokens), "max_model_len": self.cfg.max_model_len,
                               "tokens": token_ids(tokens), "token_strs": None})

    def _validate(self, req: Request) -> tuple[dict, list[str], int]:
        """(body, prompt tokens, max_tokens) of a chat request, or :class:`Refused` as vLLM refuses it."""
        try:
            body = req.json()
            prompt = chat_prompt_tokens(body["messages"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise Refused(400, f"bad chat request: {type(exc).__name__}: {exc}", "BadRequestError") from None
        if body.get("model") not in (None, self.cfg.served_model_name):
            raise Refused(404, f"The model `{body.get('model')}` does not exist.", "NotFoundError")
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or self.cfg.max_model_len - len(prompt)
        if not isinstance(max_tokens, int) or max_tokens < 1 or len(prompt) + max_tokens > self.cfg.max_model_len:
            raise Refused(400, f"This model's maximum context length is {self.cfg.max_model_len} tokens. However, you "
                          f"requested {max_tokens} output tokens and your prompt contains {len(prompt)} input tokens.",
                          "BadRequestError")
        return body, prompt, max_tokens

    def _arrive(self, req: Request, body: dict, prompt: list[str], max_tokens: int) -> tuple[RequestRecord, Draws]:
        """Count and record an accepted request; its draws come from its id (else arrival number)."""
        self.stats.arrived += 1
        rid = req.headers.get("x-request-id")
        d = draw(self.cfg, rid or f"#{self.stats.arrived}")
        rec = RequestRecord(request_id=rid or uuid.uuid4().hex, arrival_unix=time.time(),
                            stream=bool(body.get("stream")), prompt_tokens=len(prompt), max_tokens=max_tokens,
                            speed=d.speed, stall_s=d.stall_s,
                            temperature=float(body.get("temperature", 1.0)), top_p=float(body.get("top_p", 1.0)))
        self.stats.requests.append(rec)
        self.stats.stalled += bool(d.stall_s)
        return rec, d

    async def _inject_error(self, rec: RequestRecord, status: int, conn: Connection) -> None:
        rec.status, rec.finish_reason = status, "error"
        self.stats.errors_injected[str(status)] = self.stats.errors_injected.get(str(status), 0) + 1
        kind = "ServiceUnavailableError" if status == 503 else "InternalServerError"
        await conn.reply(status, _error(status, "stand-in: injected error", kind))

    async def chat(self, req: Request, conn: Connection) -> None:
        try:
            body, prompt, max_tokens = self._validate(req)
        except Refused as no:
            self.stats.rejected += 1
            return await conn.reply(no.status, _error(no.status, no.message, no.kind))
        rec, d = self._arrive(req, body, prompt, max_tokens)
        if d.error_status is not None:
            return await self._inject_error(rec, d.error_status, conn)
        n = max_tokens
        if self.cfg.eos_tokens and not body.get("ignore_eos"):
            n = min(max_tokens, natural_length(prompt, self.cfg.eos_tokens, self.cfg.output_seed))
        rec.finish_reason = "length" if n == max_tokens else "stop"
        lps = answer_logprobs(prompt, n, self.cfg.output_seed) if body.get("logprobs") else None  # only when asked
        tokens, lps = change_answer(prompt, answer_tokens(prompt, n, self.cfg.output_seed), lps,
                                    self.cfg.answer_change_share)
        logprobs = None
        if lps is not None:
            # vLLM's return_tokens_as_token_ids: a logprob entry names its token "token_id:<id>"
            names = ([f"token_id:{i}" for i in token_ids(tokens)] if body.get("return_tokens_as_token_ids") else tokens)
            logprobs = [_logprob(t, lp) for t, lp in zip(names, lps, strict=True)]
        job = Job(rec, token_ids(prompt), tokens, asyncio.get_running_loop().time())
        self.active[id(rec)] = rec
        try:
            await (self._stream(job, conn, body, logprobs) if rec.stream else self._complete(job, conn, logprobs))
        except ConnectionError:
            rec.finish_reason = "abort"
            self.stats.aborted += 1
            raise
        finally:
            self.active.pop(id(rec), None)
        self._completed(job)

    def _counting(self, emit):
        """Wrap an emit so each token reaches /metrics with its gap to the one before."""
        loop, last = asyncio.get_running_loop(), []

        async def counted(token: str, i: int) -> None:
            now = loop.time()
            self.metrics.token(now - last[0] if last else None)
            last[:] = [now]
            await emit(token, i)

        return counted

    def _usage(self, rec: RequestRecord) -> dict:
        return {"prompt_tokens": rec.prompt_tokens, "total_tokens": rec.prompt_tokens + rec.completion_tokens,
                "completion_tokens": rec.completion_tokens, "prompt_tokens_details": None}

    async def _complete(self, job: Job, conn: Connection, logprobs: list[dict] | None) -> None:
        text: list[str] = []

        async def emit(token: str, i: int) -> None:
            text.append(token)

        await self.engine.run(job, self._counting(emit))
        rec = job.record
        rec.status = 200
        await conn.reply(200, {
            "id": f"chatcmpl-{rec.request_id}", "object": "chat.completion", "created": int(rec.arrival_unix),
            "model": self.cfg.served_model_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(text), "tool_calls": []},
                         "logprobs": None if logprobs is None else {"content": logprobs[:len(text)]},
                         "finish_reason": rec.finish_reason, "stop_reason": None}],
            "usage": self._usage(rec)})

    async def _stream(self, job: Job, conn: Connection, body: dict, logprobs: list[dict] | None) -> None:
        rec = job.record
        rec.status = 200
        stream = await conn.stream()
        head = {"id": f"chatcmpl-{rec.request_id}", "object": "chat.completion.chunk", "created": int(rec.arrival_unix),
                "model": self.cfg.served_model_name}
        last = len(job.answer) - 1

        def chunk(delta: dict, finish: str | None = None, lp: dict | None = None) -> bytes:
            return _sse({**head, "choices": [{"index": 0, "delta": delta, "logprobs": lp, "finish_reason": finish}]})

        async def emit(token: str, i: int) -> None:
            role = chunk({"role": "assistant", "content": ""}) if i == 0 else b""
            lp = None if logprobs is None else {"content": [logprobs[i]]}
            await stream.send(role + chunk({"content": token}, rec.finish_reason if i == last else None, lp))

        await self.engine.run(job, self._counting(emit))
        if (body.get("stream_options") or {}).get("include_usage"):
            await stream.send(_sse({**head, "choices": [], "usage": self._usage(rec)}))
        await stream.send(_sse("[DONE]"))
        await stream.end()

    def _completed(self, job: Job) -> None:
        rec = job.record
        now = time.time()
        rec.e2e_s = asyncio.get_running_loop().time() - job.arrival
        self.stats.completed += 1
        self.metrics.finished(rec)
        if self.exporter is not None:
            self.exporter.add(request_span(rec, now))
        self.on_completed()
