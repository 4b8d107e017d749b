"""One pass of the answer check against a server: every prompt of the set, greedy, and each
answer's tokens and log-probabilities, as the bytes of an answer file (:mod:`inferlab.formats.answers`).

Requests: ``/v1/chat/completions``, not streamed, ``temperature`` 0 (greedy), ``seed`` 0,
``max_tokens`` as given, ``logprobs: true`` and vLLM's ``return_tokens_as_token_ids`` (other
servers ignore it and name tokens by their text). ``concurrency`` requests are in flight at once
(a thread pool, prompts handed out in the set's order), so the server batches them as under
load; the pass's control runs at the same concurrency. Each request carries
``X-Request-Id: answers-<pass>-<prompt id>`` (its server span, if any, is told apart from load).
A failed request is a line with its status and error, never an exception: the check counts it.
"""

from __future__ import annotations

import json
import ssl
from concurrent.futures import ThreadPoolExecutor

import httpx

from ..formats.answers import AnswerLine, token_id
from ..specs.answer_prompts import Prompt


def request_body(prompt: Prompt, model: str, max_tokens: int) -> dict:
    return {"model": model, "messages": prompt.messages, "max_tokens": max_tokens, "temperature": 0.0, "seed": 0,
            "logprobs": True, "return_tokens_as_token_ids": True, "stream": False}


def parse_answer(prompt_id: str, status: int, doc: dict) -> AnswerLine:
    """An answer line from a chat completion response (OpenAI/vLLM shape)."""
    choice = (doc.get("choices") or [{}])[0]
    lp = (choice.get("logprobs") or {}).get("content") or []
    tokens = [str(e.get("token", "")) for e in lp]
    ids = [token_id(t) for t in tokens]
    return AnswerLine(prompt_id=prompt_id, status=status, text=(choice.get("message") or {}).get("content") or "",
                      finish_reason=choice.get("finish_reason"),
                      completion_tokens=(doc.get("usage") or {}).get("completion_tokens"), tokens=tokens,
                      token_ids=[i for i in ids if i is not None] if lp and all(i is not None for i in ids) else None,
                      logprobs=[float(e["logprob"]) for e in lp] if lp and all("logprob" in e for e in lp) else None)


def _one(client: httpx.Client, url: str, prompt: Prompt, body: dict, rid: str) -> AnswerLine:
    try:
        r = client.post(url, json=body, headers={"X-Request-Id": rid})
    except httpx.HTTPError as exc:
        return AnswerLine(prompt_id=prompt.id, error=f"{type(exc).__name__}: {exc}"[:300])
    if r.status_code != 200:
        return AnswerLine(prompt_id=prompt.id, status=r.status_code, error=r.text[:300] or f"HTTP {r.status_code}")
    try:
        return parse_answer(prompt.id, 200, r.json())
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return AnswerLine(prompt_id=prompt.id, status=200, error=f"unreadable answer: {exc}"[:300])


def collect(base_url: str, api_key: str | None, model: str, prompts: list[Prompt], max_tokens: int,
            concurrency: int, tag: str = "pass", verify: bool | ssl.SSLContext = True,
            timeout_s: float = 300.0) -> bytes:
    """The answer file of one pass (lines in the prompt set's order)."""
    url = f"{base_url.rstrip('/')}/v1/chat/completions"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with httpx.Client(headers=headers, timeout=timeout_s, verify=verify) as client, \
            ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        lines = list(pool.map(lambda p: _one(client, url, p, request_body(p, model, max_tokens),
                                             f"answers-{tag}-{p.id}"), prompts))
    return "".join(json.dumps(ln.model_dump(mode="json"), separators=(",", ":")) + "\n" for ln in lines).encode()
