"""How fast this machine's engine answers one client, measured once per test session.

Engine tests derive their SLOs, rates, answer lengths and VU counts from this instead of
constants measured on one CPU, so that no test passes or fails with the CPU (issue 18 item 6):
the same test runs 16-token answers in ~0.5 s on a machine with AVX-512 and in ~2 s on a 2-core
machine with AVX2 only.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import dataclass

import httpx

from inferlab.specs import ProbeSpec

PROMPT = "Explain what a GPU is in two sentences."

#: ci-tiny's answers and streaming probe on the real engine are as long as one client gets in
#: this many seconds, 4 to 16 tokens (:func:`tiny_tokens`). Decision: the engine tests check what
#: a run records, not how the engine decodes long answers. With ci-tiny's own 16-token answers and
#: the probe's default 64, the engine session took 1,300 s with the engine slowed below the
#: AVX2-only CPU's speed; with 4 tokens, 759 s (docs/testing.md, "Slow engine"). Not shorter than
#: half a second: k6's own gap between a VU's requests (tens of ms) must stay within the in-flight
#: check's 5 % (analysis/validity.py); 1/3 s (8 tokens on this CPU with AVX-512) read 0.90 once on
#: the 2+2's one-slot side (CI at 41cfab4). 14 tokens here, 4 on the slowed engine.
TINY_ANSWER_S = 0.5


@dataclass(frozen=True)
class MeasuredSpeed:
    """One client's view of the engine: time to the first token and decode tokens per second
    (median of a few streamed answers with nothing else running)."""

    ttft_s: float
    tokens_per_s: float

    def answer_s(self, tokens: int) -> float:
        """Seconds one answer of ``tokens`` tokens takes at 1 client (no queue, no batch)."""
        return self.ttft_s + tokens / self.tokens_per_s

    def tokens_within(self, seconds: float, low: int, high: int) -> int:
        """The longest answer (clamped to [low, high]) that one client gets within ``seconds``."""
        return max(low, min(high, math.floor((seconds - self.ttft_s) * self.tokens_per_s)))

    def describe(self) -> str:
        return f"TTFT {self.ttft_s * 1000:.0f} ms, {self.tokens_per_s:.1f} tokens/s at 1 client"


def _one_answer(client: httpx.Client, model: str, tokens: int) -> tuple[float, float]:
    """(TTFT, decode tokens/s) of one streamed answer of exactly ``tokens`` tokens."""
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": tokens,
            "ignore_eos": True, "stream": True}
    t0 = time.monotonic()
    first = last = None
    chunks = 0
    with client.stream("POST", "/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: {"):
                continue
            choices = json.loads(line.removeprefix("data: ")).get("choices") or [{}]
            if not choices[0].get("delta", {}).get("content"):  # the role chunk, the usage chunk
                continue
            last = time.monotonic()
            first = first or last
            chunks += 1
    if first is None or last is None:
        raise RuntimeError("the engine streamed no content: cannot measure its speed")
    decode_s = last - first
    # the first chunk carries the first token; the rest arrived over decode_s
    return first - t0, (chunks - 1) / decode_s if chunks > 1 and decode_s > 0 else tokens / (last - t0)


def measure_speed(base_url: str, api_key: str, model: str, tokens: int = 16, repeats: int = 3) -> MeasuredSpeed:
    """Stream ``repeats`` answers of ``tokens`` tokens one after another (after one unmeasured
    answer that warms the engine's caches) and take the medians."""
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=300) as c:
        _one_answer(c, model, 4)
        samples = [_one_answer(c, model, tokens) for _ in range(repeats)]
    return MeasuredSpeed(ttft_s=statistics.median(s[0] for s in samples),
                         tokens_per_s=statistics.median(s[1] for s in samples))


def tiny_tokens(speed: MeasuredSpeed) -> int:
    """ci-tiny's answer length on this engine: what one client gets in :data:`TINY_ANSWER_S`."""
    return speed.tokens_within(TINY_ANSWER_S, 4, 16)


def tiny_sets(tokens: int) -> list[str]:
    """``--set`` items (the CLI's, the sweep notebook's ``set_fields``) that give ci-tiny's
    answers and its streaming probe ``tokens`` tokens each."""
    prompt = ProbeSpec().payload.prompt  # the probe's own default prompt, at this length
    return [f"payloads.short.max_tokens={tokens}", f'probe.payload={{prompt: "{prompt}", max_tokens: {tokens}}}']
