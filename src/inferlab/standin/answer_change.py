"""The stand-in's knob that changes some answers, as a dtype or kernel change does on a real
engine: ``answer_change_share`` of the prompts (picked by a hash of the prompt, so the same
prompts every time) get an answer that follows the usual one up to a drawn position and differs
from there on. 0 (the default): every answer is the usual one.
"""

from __future__ import annotations

import hashlib

from .text import WORDS


def _draw(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


def changed_at(prompt: list[str], n: int, share: float) -> int | None:
    """Where this prompt's answer starts to differ (0 <= k < n), or None when it keeps its answer."""
    key = "\x1f".join(prompt)
    if n < 1 or share <= 0 or _draw("change:" + key) % 1_000_000 >= share * 1_000_000:
        return None
    return _draw("change-at:" + key) % n


def change_answer(prompt: list[str], tokens: list[str], logprobs: list[float], share: float
                  ) -> tuple[list[str], list[float]]:
    """(tokens, logprobs), changed from :func:`changed_at` on: each token there another word."""
    k = changed_at(prompt, len(tokens), share)
    if k is None:
        return tokens, logprobs
    out = list(tokens[:k])
    key = "\x1f".join(prompt)
    for i in range(k, len(tokens)):
        word = " " + WORDS[_draw(f"changed:{key}:{i}") % len(WORDS)]
        out.append(word if word != tokens[i] else " " + WORDS[(WORDS.index(word[1:]) + 1) % len(WORDS)])
    return out, [*logprobs[:k], *(lp - 0.25 for lp in logprobs[k:])]
