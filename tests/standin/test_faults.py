"""Fault injection: HTTP errors on arrival, stalls that hold a slot, and death (after K
requests, or at a time) as a real process exit or, in a thread, reset connections."""

import time

import httpx
import pytest

from inferlab.standin import DEATH_EXIT_CODE, StandIn

CHAT = {"model": "smollm2", "max_tokens": 3, "messages": [{"role": "user", "content": "Hello."}]}


def test_injected_errors_are_answered_at_once_and_counted(tmp_path):
    with StandIn(tpot_ms=1, error_rate=0.5, error_503_share=0.5, seed=1) as s, httpx.Client(base_url=s.base_url) as c:
        codes = [c.post("/v1/chat/completions", json=CHAT, headers={"X-Request-Id": f"e{i}"}).status_code
                 for i in range(40)]
        st = s.stats()
        success = c.get("/metrics").text
    assert set(codes) == {200, 500, 503}
    assert st.errors_injected == {"500": codes.count(500), "503": codes.count(503)}
    assert st.completed == codes.count(200) and 10 <= codes.count(200) <= 30
    assert {r.status for r in st.requests if r.finish_reason == "error"} == {500, 503}
    total = sum(float(line.rsplit(" ", 1)[1]) for line in success.splitlines()
                if line.startswith("vllm:request_success_total"))
    assert total == codes.count(200)  # vLLM never saw the injected failures finish
    with StandIn(tpot_ms=1, error_rate=1.0, error_503_share=1.0) as s:
        r = httpx.post(f"{s.base_url}/v1/chat/completions", json=CHAT)
        assert r.status_code == 503 and r.json()["error"]["code"] == 503


def test_a_stall_holds_the_slot_before_the_first_token():
    with StandIn(slots=1, tpot_ms=1, stall_rate=1.0, stall_s=0.4) as s:
        t0 = time.perf_counter()
        with httpx.stream("POST", f"{s.base_url}/v1/chat/completions", json={**CHAT, "stream": True}) as r:
            headers_s = time.perf_counter() - t0
            r.read()
        (rec,) = s.stats().requests
    assert headers_s < 0.3  # headers at once, as vLLM sends them; the tokens wait
    assert rec.stall_s == 0.4 and rec.ttft_s >= 0.4 and rec.prefill_s >= 0.4 and rec.queue_s < 0.05
    assert s.stats().stalled == 1


def test_death_after_k_requests_is_a_real_process_exit():
    with StandIn(process=True, tpot_ms=1, die_after_requests=2, api_key="k") as s:
        # the key reached the child through $VLLM_API_KEY; the open stats endpoint masks it
        assert s.stats().config.api_key == "***" and "k" not in s.proc.args
        assert httpx.post(f"{s.base_url}/v1/chat/completions", json=CHAT).status_code == 401
        for _ in range(2):
            assert httpx.post(f"{s.base_url}/v1/chat/completions", json=CHAT, headers=s.headers()).status_code == 200
        assert s.proc.wait(timeout=10) == DEATH_EXIT_CODE
        with pytest.raises(httpx.ConnectError):
            httpx.post(f"{s.base_url}/v1/chat/completions", json=CHAT, headers=s.headers())


def test_death_at_a_time_resets_requests_in_flight():
    with StandIn(tpot_ms=100, die_at_s=0.5) as s:
        with pytest.raises(httpx.TransportError):
            httpx.post(f"{s.base_url}/v1/chat/completions", json={**CHAT, "max_tokens": 50}, timeout=10)
        assert s.dead.wait(5)
        st = s.stats()
    assert st.dead and st.completed == 0 and st.arrived == 1
