"""The stand-in's knob that changes some answers, as a dtype or kernel change does on a real
engine: ``answer_change_share`` of the prompts (picked by a hash of the prompt, so the same
prompts every time) get an answer that follows the usual one up to a drawn position and differs
from there on. 0 (the default): every answer is the usual one.
"""

from __future__ import annotations

from .text import WORDS, _draw


def _changed_at(key: str, n: int, share: float) -> int | None:
    """:func:`changed_at` for a prompt's key (its tokens joined), ``n >= 1`` and ``share > 0``."""
    if _draw("change:" + key) % 1_000_000 >= share * 1_000_000:
        return None
    return _draw("change-at:" + key) % n


def changed_at(prompt: list[str], n: int, share: float) -> int | None:
    """Where this prompt's answer starts to differ (0 <= k < n), or None when it keeps its answer."""
    if n < 1 or share <= 0:
        return None
    return _changed_at("\x1f".join(prompt), n, share)


def change_answer(prompt: list[str], tokens: list[str], logprobs: list[float] | None, share: float
                  ) -> tuple[list[str], list[float] | None]:
    """(tokens, logprobs), changed from :func:`changed_at` on: each token there another word.
    ``logprobs`` None (the client asked for none): None back."""
    if not tokens or share <= 0:
        return tokens, logprobs
    key = "\x1f".join(prompt)
    k = _changed_at(key, len(tokens), share)
    if k is None:
        return tokens, logprobs
    out = list(tokens[:k])
    for i in range(k, len(tokens)):
        word = " " + WORDS[_draw(f"changed:{key}:{i}") % len(WORDS)]
        out.append(word if word != tokens[i] else " " + WORDS[(WORDS.index(word[1:]) + 1) % len(WORDS)])
    return out, None if logprobs is None else [*logprobs[:k], *(lp - 0.25 for lp in logprobs[k:])]
