"""Continuous batching with a slot limit: with one slot, concurrent requests take turns (the
completion rate is 1/service time); with four, they share the batch and each token slows by
(1 + alpha x (batch - 1)). Checked against the server's ground truth and the client's clock."""

import statistics
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from inferlab.standin import StandIn
from inferlab.standin.draws import draw
from inferlab.standin.config import StandInConfig

TPOT_MS, TOKENS = 20.0, 10


def _send(base_url: str, n: int, rid_prefix: str = "r", max_tokens: int = TOKENS) -> list[dict]:
    """``n`` requests at once (one shared client: making a client per thread staggers them)."""
    def one(i: int) -> dict:
        return client.post("/v1/chat/completions", headers={"X-Request-Id": f"{rid_prefix}{i}"},
                           json={"model": "smollm2", "max_tokens": max_tokens,
                                 "messages": [{"role": "user", "content": f"Question number {i}, please."}]}).json()

    with httpx.Client(base_url=base_url, timeout=30, limits=httpx.Limits(max_connections=n)) as client, \
            ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def _ends(stats) -> list[float]:
    return sorted(r.arrival_unix + r.e2e_s for r in stats.requests)


def test_one_slot_serializes_four_concurrent_requests():
    with StandIn(slots=1, tpot_ms=TPOT_MS, batch_alpha=0.5, enable_prefix_caching=False) as s:
        answers = _send(s.base_url, 4)
        st = s.stats()
    assert all(a["usage"]["completion_tokens"] == TOKENS for a in answers)
    assert st.completed == 4 and st.max_running == 1 and st.waiting == st.running == 0
    service = statistics.mean(r.service_s for r in st.requests)
    # alone in the batch: prefill + (tokens - 1) x tpot, no batch slow-down
    prompt = st.requests[0].prompt_tokens
    assert service == pytest.approx((5 + 0.5 * prompt + (TOKENS - 1) * TPOT_MS) / 1000, rel=0.15)
    ends = _ends(st)
    gaps = [b - a for a, b in zip(ends, ends[1:])]
    assert all(g == pytest.approx(service, rel=0.25) for g in gaps)  # one after another
    assert 3 / (ends[-1] - ends[0]) == pytest.approx(1 / service, rel=0.15)  # throughput = 1 / service time
    assert sorted(r.queue_s for r in st.requests)[-1] == pytest.approx(3 * service, rel=0.2)


def test_four_slots_share_the_batch_and_each_token_slows_with_it():
    alpha = 0.5
    with StandIn(slots=4, tpot_ms=TPOT_MS, batch_alpha=alpha, enable_prefix_caching=False) as s:
        _send(s.base_url, 4)
        st = s.stats()
    assert st.max_running == 4 and st.completed == 4
    assert max(r.queue_s for r in st.requests) < 0.05
    # each request decoded beside three others most of the time: tpot x (1 + alpha x 3) per token
    per_token = [r.decode_s / (TOKENS - 1) for r in st.requests]
    assert statistics.mean(per_token) == pytest.approx(TPOT_MS / 1000 * (1 + alpha * 3), rel=0.15)
    assert max(_ends(st)) - min(r.arrival_unix for r in st.requests) < 2 * max(r.service_s for r in st.requests)


def test_prefix_cache_serves_a_repeated_prompt_faster():
    long = "word " * 200
    with StandIn(slots=1, tpot_ms=1, prefill_ms_per_token=1.0) as s:
        for _ in range(2):
            httpx.post(f"{s.base_url}/v1/chat/completions", json={
                "model": "smollm2", "max_tokens": 2, "messages": [{"role": "user", "content": long}]})
        first, second = s.stats().requests
        metrics = httpx.get(f"{s.base_url}/metrics").text
    assert first.cached_tokens == 0 and second.cached_tokens == first.prompt_tokens // 16 * 16
    assert second.prefill_s < first.prefill_s / 3
    assert f'vllm:prefix_cache_hits_total{{engine="0",model_name="smollm2"}} {float(second.cached_tokens)}' in metrics


def test_lognormal_speed_factors_are_seeded_per_request_id_with_mean_one():
    cfg = StandInConfig(service_sigma=0.5, seed=3)
    speeds = [draw(cfg, f"run.cell.m{i}").speed for i in range(4000)]
    assert statistics.mean(speeds) == pytest.approx(1.0, abs=0.03)
    assert statistics.stdev(speeds) > 0.4
    assert draw(cfg, "run.cell.m7") == draw(cfg, "run.cell.m7")
    assert draw(cfg.model_copy(update={"seed": 4}), "run.cell.m7") != draw(cfg, "run.cell.m7")
    with StandIn(cfg, slots=1, tpot_ms=TPOT_MS, enable_prefix_caching=False) as s:
        _send(s.base_url, 3, rid_prefix="run.cell.m", max_tokens=4)
        recs = {r.request_id: r for r in s.stats().requests}
    for rid, rec in recs.items():
        assert rec.speed == draw(cfg, rid).speed
        # a request's times scale with its own factor (one slot: always alone in the batch)
        assert rec.decode_s == pytest.approx(3 * TPOT_MS / 1000 * rec.speed, rel=0.1, abs=0.005)
