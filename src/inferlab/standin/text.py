"""Tokens and answers of the stand-in: a word-level tokenizer, a chat template's token count,
and a deterministic answer drawn from the prompt.

Decisions: a token is a word or one punctuation mark (regex ``\\w+|[^\\w\\s]``), so counts are
easy to predict in tests; the chat template adds :data:`MESSAGE_TOKENS` per message and
:data:`GENERATION_PROMPT_TOKENS` for the assistant's turn (the shape of SmolLM2's ChatML
template). The answer is a function of the prompt text and ``output_seed`` only, never of
sampling settings or load: the same prompt always gets the same answer, as a greedy engine
would, and another ``output_seed`` plays "a setting that changes answers".
"""

from __future__ import annotations

import hashlib
import re

TOKEN = re.compile(r"\w+|[^\w\s]")
MESSAGE_TOKENS = 4  # <|im_start|> role \n ... <|im_end|>
GENERATION_PROMPT_TOKENS = 3  # <|im_start|> assistant \n
WORDS = ("the model answers with words drawn from this short list so that every answer is plain text "
         "a GPU is a processor built for many small computations at once and it serves tokens quickly").split()


def tokenize(text: str) -> list[str]:
    return TOKEN.findall(text)


def chat_prompt_tokens(messages: list[dict], add_generation_prompt: bool = True) -> list[str]:
    """The prompt's tokens as the template lays them out: role markers around each message."""
    out: list[str] = []
    for m in messages:
        content = m.get("content") or ""
        if isinstance(content, list):  # OpenAI content parts: the text ones count
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        out += ["<|im_start|>", str(m.get("role", "user")), "\n", *tokenize(str(content)), "<|im_end|>"]
    if add_generation_prompt:
        out += ["<|im_start|>", "assistant", "\n"]
    return out


def token_ids(tokens: list[str]) -> list[int]:
    """Stable ids (a hash of each token), for /tokenize and the prefix cache's block keys."""
    return [int.from_bytes(hashlib.blake2b(t.encode(), digest_size=4).digest(), "big") for t in tokens]


def _draw(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


def _answer_key(prompt: list[str], output_seed: int) -> str:
    return hashlib.sha256((f"{output_seed}\x00" + "\x1f".join(prompt)).encode()).hexdigest()


def answer_tokens(prompt: list[str], n: int, output_seed: int = 0) -> list[str]:
    """``n`` answer tokens (each a word with its leading space), a function of the prompt and seed."""
    key = _answer_key(prompt, output_seed)
    return [" " + WORDS[_draw(f"{key}:{i}") % len(WORDS)] for i in range(n)]


def answer_logprobs(prompt: list[str], n: int, output_seed: int = 0) -> list[float]:
    """A log-probability for each answer token (in (-2, 0]), as deterministic as the tokens."""
    key = _answer_key(prompt, output_seed)
    return [-(_draw(f"{key}:lp:{i}") % 2000) / 1000 for i in range(n)]


def natural_length(prompt: list[str], eos_tokens: int, output_seed: int = 0) -> int:
    """Where an answer ends when the client does not ask to ignore EOS: between half and 1.5x
    ``eos_tokens``, drawn from the prompt (the same prompt always stops at the same place)."""
    lo = max(1, eos_tokens // 2)
    return lo + _draw(f"eos:{output_seed}:" + "\x1f".join(prompt)) % (eos_tokens + 1)
