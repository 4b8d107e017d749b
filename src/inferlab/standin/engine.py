"""The stand-in's serving model: continuous batching with a slot limit, on one asyncio loop.

A request waits in a FIFO queue until one of ``slots`` is free (vLLM's max_num_seqs), then holds
it through prefill and decode. Times, each multiplied by the request's speed factor:

- prefill: ``prefill_base_ms + prefill_ms_per_token x uncached prompt tokens``; its end is the
  first token (TTFT = queue + stall + prefill);
- each later token: ``tpot_ms x (1 + batch_alpha x (running - 1))``, ``running`` counted when the
  token starts, so the batch a request shares slows it as requests join and leave.

Tokens are due on an absolute schedule (``due += gap``), so small timer overshoots never add up;
a hiccup longer than one token (the process starved of CPU) shifts the rest of the schedule, as
it would delay a real engine, rather than sending the late tokens in one burst. The records
hold the times as they happened. What this does not model: chunked prefill stalling other
requests' decode, preemption, KV-cache limits, speculative decoding.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .config import StandInConfig
from .stats import RequestRecord

BLOCK_TOKENS = 16  # vLLM's default KV block size: the prefix cache's unit
CACHE_BLOCKS = 1 << 16  # LRU capacity; plenty for test workloads


class PrefixCache:
    """vLLM-style automatic prefix caching: full 16-token blocks keyed by a hash chain."""

    def __init__(self, capacity: int = CACHE_BLOCKS) -> None:
        self.capacity = capacity
        self._blocks: OrderedDict[bytes, None] = OrderedDict()

    @staticmethod
    def _keys(ids: list[int]) -> list[bytes]:
        keys, h = [], b""
        for i in range(0, len(ids) - len(ids) % BLOCK_TOKENS, BLOCK_TOKENS):
            h = hashlib.blake2b(h + repr(ids[i:i + BLOCK_TOKENS]).encode(), digest_size=16).digest()
            keys.append(h)
        return keys

    def cached_tokens(self, ids: list[int]) -> int:
        """Leading prompt tokens already cached; at least one token is always computed, as in vLLM."""
        n = 0
        for key in self._keys(ids):
            if key not in self._blocks:
                break
            self._blocks.move_to_end(key)
            n += BLOCK_TOKENS
        return min(n, len(ids) - 1)

    def insert(self, ids: list[int]) -> None:
        for key in self._keys(ids):
            self._blocks[key] = None
            self._blocks.move_to_end(key)
        while len(self._blocks) > self.capacity:
            self._blocks.popitem(last=False)


@dataclass
class Job:
    """One admitted chat request: its record, prompt ids and the tokens it will answer."""

    record: RequestRecord
    prompt_ids: list[int]
    answer: list[str]
    arrival: float  # loop time


Emit = Callable[[str, int], Awaitable[None]]  # (token text, index) -> sent


class Engine:
    def __init__(self, cfg: StandInConfig) -> None:
        self.cfg = cfg
        self.running = 0
        self.max_running = 0
        self.cache = PrefixCache() if cfg.enable_prefix_caching else None
        self._queue: deque[asyncio.Future] = deque()

    @property
    def waiting(self) -> int:
        return len(self._queue)

    async def _admit(self) -> None:
        if self.running < self.cfg.slots and not self._queue:
            self.running += 1
        else:
            fut = asyncio.get_running_loop().create_future()
            self._queue.append(fut)
            try:
                await fut  # _release hands its slot over: running is already counted for us
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self._release()  # cancelled just after being handed a slot: pass it on
                else:
                    self._queue.remove(fut)
                raise
        self.max_running = max(self.max_running, self.running)

    def _release(self) -> None:
        while self._queue:
            fut = self._queue.popleft()
            if not fut.done():
                fut.set_result(None)  # the slot passes straight to the next in line
                return
        self.running -= 1

    def tpot_s(self, speed: float) -> float:
        return speed * self.cfg.tpot_ms * (1 + self.cfg.batch_alpha * (self.running - 1)) / 1000

    async def run(self, job: Job, emit: Emit) -> None:
        """Queue, stall, prefill, decode; ``emit`` each token when due. Fills ``job.record``'s
        times; raises ConnectionError (after releasing the slot) when ``emit`` finds the client gone."""
        loop, rec = asyncio.get_running_loop(), job.record
        await self._admit()
        try:
            admitted = loop.time()
            rec.queue_s, rec.batch_at_admission = admitted - job.arrival, self.running
            if rec.stall_s:
                await asyncio.sleep(rec.stall_s)
            if self.cache is not None:
                rec.cached_tokens = self.cache.cached_tokens(job.prompt_ids)
            uncached = rec.prompt_tokens - rec.cached_tokens
            prefill_ms = self.cfg.prefill_base_ms + self.cfg.prefill_ms_per_token * uncached
            due = loop.time() + rec.speed * prefill_ms / 1000
            first = None
            for i, token in enumerate(job.answer):
                gap = self.tpot_s(rec.speed)
                if i:
                    due += gap
                await asyncio.sleep(max(0.0, due - loop.time()))
                if loop.time() - due > gap:
                    due = loop.time()  # a hiccup longer than a token (a starved CPU) shifts the rest: no burst
                if i == 0:
                    first = loop.time()
                    if self.cache is not None:
                        self.cache.insert(job.prompt_ids)
                    rec.prefill_s, rec.ttft_s = first - admitted, first - job.arrival
                await emit(token, i)
                rec.completion_tokens = i + 1
            last = loop.time()
            rec.decode_s, rec.service_s = last - (first or last), last - admitted
        finally:
            self._release()
