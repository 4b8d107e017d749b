"""The answer file: what one pass of the answer check got from a server, one JSON line a prompt.

Written once by :mod:`inferlab.probe.answers` (``answers/<side>-p<pair>[-<n>].jsonl`` in a
comparison's folder), read by :mod:`inferlab.ingest.answers`. ``format``: ``inferlab.answers/1``;

- ``prompt_id``: the prompt set's id (``p01`` ...), in the set's order;
- ``status``: HTTP status (None: no response), ``error``: why there is no answer ('' when there is);
- ``text``: the answer's text; ``finish_reason``; ``completion_tokens`` (the server's usage);
- ``tokens``: the answer's tokens as the server's logprobs name them (vLLM with
  ``return_tokens_as_token_ids``: ``"token_id:1234"``); ``token_ids``: their ids where the server
  gave them (else None: the tokens' strings are compared instead); ``logprobs``: each token's
  log-probability (None where the server returns none).
"""

from __future__ import annotations

from pydantic import Field

from ..specs import StrictModel

SCHEMA = "inferlab.answers/1"
FOLDER = "answers"  # inside the comparison's folder
TOKEN_ID_PREFIX = "token_id:"  # vLLM's token names under return_tokens_as_token_ids


class AnswerLine(StrictModel):
    format: str = SCHEMA
    prompt_id: str
    status: int | None = None
    error: str = ""
    text: str = ""
    finish_reason: str | None = None
    completion_tokens: int | None = None
    tokens: list[str] = Field(default_factory=list)
    token_ids: list[int] | None = None
    logprobs: list[float] | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and not self.error


def pass_file(side: str, pair: int, n: int = 1) -> str:
    """Relative path of a pass's file in the comparison folder (``n`` > 1: a second pass on the
    same engine)."""
    return f"{FOLDER}/{side}-p{pair}" + (f"-{n}" if n > 1 else "") + ".jsonl"


def token_id(token: str) -> int | None:
    """The id in vLLM's ``token_id:1234`` token name, else None."""
    if token.startswith(TOKEN_ID_PREFIX):
        try:
            return int(token[len(TOKEN_ID_PREFIX):])
        except ValueError:
            return None
    return None
