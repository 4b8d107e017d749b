"""Streamed requests with the REAL k6 through the stream clock, against the stand-in server
(which, like vLLM, sends a stream's headers at once and its first token after prefill): the
clock's per-request TTFT and TPOT agree with the stand-in's ground truth, k6's own
``http_req_waiting`` does not (it ends at the headers), and the usage chunk at the stream's
end still gives every request's completion tokens."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from inferlab.analysis.requests import join_requests
from inferlab.analysis.requests import with_clock
from inferlab.analysis.token_slo import CLIENT_STREAM, request_timings
from inferlab.analysis.workload import usage_table
from inferlab.ingest import read_k6, read_k6_points
from inferlab.ingest.stream_clock import read_stream_clock
from inferlab.load.k6 import k6_config, run_cell
from inferlab.load.stream_clock import (SPARE_MAX_AGE_S, STREAM_CLOCK_FILE, ResponseStamps, StreamClock, StreamTiming,
                                        close_after_answer)
from inferlab.specs import builtin_spec, load_spec, plan_cells
from inferlab.standin import StandIn

PREFILL_MS, TPOT_MS, TOKENS = 150.0, 10.0, 8


@pytest.fixture(scope="module")
def standin():
    """A child process, so that its timing does not share this process's GIL with the clock."""
    with StandIn(process=True, slots=4, tpot_ms=TPOT_MS, batch_alpha=0, prefill_base_ms=PREFILL_MS,
                 prefill_ms_per_token=0) as s:
        yield s


def _spec(**extra):
    return load_spec(builtin_spec("ci-tiny"), {
        "concurrency": [1], "min_iterations": 8, "iterations_per_vu": 8, "min_window_requests": 1,
        "warmup_requests": 1, "use_payloads": ["short"],
        "payloads": {"short": {"prompt": "Say hi.", "max_tokens": TOKENS}}, **extra})


def _run_through_clock(tmp_path, standin, spec):
    cell = plan_cells(spec)[0]
    d = tmp_path / cell.cell_id
    d.mkdir()
    with StreamClock(standin.base_url, d / STREAM_CLOCK_FILE) as clock:
        res = run_cell(spec, cell, clock.base_url, None, d, run_id="RUN")
    assert res.exit_code == 0, res.stderr_tail
    return d


def test_streamed_requests_ask_for_the_usage_chunk():
    cfg = k6_config(_spec(), plan_cells(_spec())[0], "http://x")
    assert cfg["stream"] is True
    assert cfg["thresholds"]["http_req_duration{phase:measure}"] == ["p(95)<60000.0"]


def test_client_ttft_and_tpot_agree_with_the_standin_at_low_load(tmp_path, standin):
    d = _run_through_clock(tmp_path, standin, _spec())
    k6 = read_k6(d / "k6.ndjson.gz")
    k6 = k6[k6["phase"] == "measure"]
    clock = read_stream_clock(d / STREAM_CLOCK_FILE)
    truth = {r.request_id: r for r in standin.stats().requests}
    m = k6.merge(clock, on="request_id", how="left")
    assert len(m) == 8 and m["client_ttft_ms"].notna().all() and (m["client_status"] == 200).all()
    true_ttft = np.array([truth[i].ttft_s * 1000 for i in m["request_id"]])
    diff = m["client_ttft_ms"].to_numpy() - true_ttft
    # the clock sees the first token a little after the stand-in made it (HTTP out, loopback in)
    assert np.median(np.abs(diff)) < 5 and np.abs(diff).max() < 25, diff
    assert (true_ttft > PREFILL_MS).all()
    # k6's waiting is the headers' time, not TTFT: the reason the clock exists
    assert (m["waiting_ms"].to_numpy() < PREFILL_MS / 2).all()
    true_tpot = np.array([truth[i].decode_s * 1000 / (TOKENS - 1) for i in m["request_id"]])
    assert np.allclose(m["client_tpot_ms"], true_tpot, rtol=0.1, atol=1.0)
    assert (m["client_completion_tokens"] == TOKENS).all()
    # a target without spans (a URL target, no traces): the token SLO reads the clock's values
    timings = request_timings(with_clock(join_requests(read_k6(d / "k6.ndjson.gz"), None), clock))
    assert (timings["ttft_ms_source"] == CLIENT_STREAM).all() and timings["ttft_ms"].notna().all()
    assert (timings["tpot_ms_source"] == CLIENT_STREAM).all()
    # chat.js read the usage chunk at the stream's end: one completion_tokens Point per request
    usage = usage_table(read_k6_points(d / "k6.ndjson.gz"))
    assert set(m["request_id"]) <= set(usage["request_id"])
    assert (usage.set_index("request_id").loc[m["request_id"], "usage_completion_tokens"] == TOKENS).all()


def test_a_multi_turn_workload_reads_the_streamed_answer(tmp_path, standin):
    wl = tmp_path / "turns.yaml"
    wl.write_text("name: turns\nseed: 7\nsessions_per_cell: 3\ninput: {kind: fixed, value: 20}\n"
                  "output: {kind: fixed, value: 4}\nsessions: {turns: 2, think_time_s: 0}\n"
                  "arrival: {kind: closed, vus: 1}\n")
    (tmp_path / "spec.yaml").write_text(f"name: t\nworkload: {wl}\nwarmup_requests: 0\n")
    spec = load_spec(tmp_path / "spec.yaml")
    d = _run_through_clock(tmp_path, standin, spec)
    points = read_k6_points(d / "k6.ndjson.gz")
    abandoned = points[points["metric"] == "abandoned_turns"]["value"].sum() if len(points) else 0
    assert abandoned == 0  # every second turn was sent: the streamed answer was read
    assert len(read_stream_clock(d / STREAM_CLOCK_FILE)) == 6


def test_the_clock_asks_the_upstream_to_close_and_keeps_the_rest_of_the_head():
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nX-Request-Id: a.b.m1\r\n\r\n{"
    out = close_after_answer(head)
    assert out == (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Request-Id: a.b.m1\r\nConnection: close"
                   b"\r\n\r\n{")


def test_the_clock_names_the_target_as_host():
    """k6 addressed the relay; a URL target behind a name-based proxy must see its own name."""
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:40000\r\nX-Request-Id: a.b.m1\r\n\r\n"
    out = close_after_answer(head, b"llm.example.com")
    assert out == (b"POST /v1/chat/completions HTTP/1.1\r\nX-Request-Id: a.b.m1\r\nHost: llm.example.com"
                   b"\r\nConnection: close\r\n\r\n")
    assert StreamClock("https://llm.example.com:8443/api", Path("unused")).host_header == b"llm.example.com:8443"
    assert StreamClock("http://127.0.0.1:8000", Path("unused")).host_header == b"127.0.0.1:8000"


def test_a_request_in_flight_when_the_clock_stops_is_written_as_cut(tmp_path):
    out = tmp_path / STREAM_CLOCK_FILE
    with StandIn(tpot_ms=200, prefill_base_ms=0) as s:
        clock = StreamClock(s.base_url, out, grace_s=0.2).__enter__()
        body = {"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50,
                "stream": True, "ignore_eos": True}
        def send() -> None:
            with contextlib.suppress(httpx.HTTPError):  # the clock cuts it: that is the point
                httpx.post(f"{clock.base_url}/v1/chat/completions", json=body, headers={"X-Request-Id": "R.c.m0"},
                           timeout=30)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        deadline = time.time() + 10
        while clock.records == 0 and time.time() < deadline and not s.stats().requests:
            time.sleep(0.05)
        time.sleep(0.6)  # a few tokens out, most still to come
        clock.__exit__(None, None, None)
    rec = read_stream_clock(out).iloc[0]
    assert rec["request_id"] == "R.c.m0" and rec["client_error"].startswith("cut:")
    assert rec["client_ttft_ms"] > 0 and rec["client_connect_ms"] >= 0 and pd.isna(rec["client_tpot_ms"])
    with pytest.raises(FileExistsError):  # the file is written once, never appended to
        StreamClock(s.base_url, out).__enter__()


def test_a_text_event_split_between_reads_counts_once_and_the_role_event_not_at_all():
    rec = StreamTiming("r", 0.0)
    stamps = ResponseStamps(rec, time.perf_counter())
    role = b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n'
    stamps.feed(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n" + role)
    assert rec.status == 200 and rec.ttft_ms is None  # headers and the role event: no token yet
    stamps.feed(b'data: {"choices":[{"delta":{"cont')
    stamps.feed(b'ent":"Hi"}}]}\n\ndata: {"choices":[{"delta":{"content":" there"}}]}\n\n')
    stamps.feed(b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\ndata: [DONE]\n\n')
    done = stamps.close()
    assert done.text_events == 2 and done.completion_tokens == 2 and done.ttft_ms is not None
    assert done.tpot_ms == pytest.approx(done.last_token_ms - done.ttft_ms)


def test_a_json_answer_is_not_timed_as_a_stream_but_keeps_its_usage():
    rec = StreamTiming("r", 0.0)
    stamps = ResponseStamps(rec, time.perf_counter())
    stamps.feed(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n")  # the header block split in two
    stamps.feed(b'\r\n{"choices":[{"message":{"content":"fine"}}],"usage":{"completion_tokens":7}}')
    done = stamps.close()
    assert done.sse is False and done.ttft_ms is None and done.tpot_ms is None and done.completion_tokens == 7


def test_a_request_after_another_takes_a_warm_connection_and_a_stale_one_is_not_used(tmp_path):
    """The next request's connection is opened when a request ends (connect_ms 0 with it); a
    spare the target closed, or one older than SPARE_MAX_AGE_S, is closed unused."""
    out = tmp_path / STREAM_CLOCK_FILE
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "stream": True}

    def post(clock, rid):
        r = httpx.post(f"{clock.base_url}/v1/chat/completions", json=body, headers={"X-Request-Id": rid}, timeout=30)
        assert r.status_code == 200

    def spares(clock):
        return len(clock._spares)

    with StandIn(tpot_ms=1, prefill_base_ms=0) as s, StreamClock(s.base_url, out) as clock:
        post(clock, "R.c.m0")
        deadline = time.time() + 5
        while spares(clock) == 0 and time.time() < deadline:
            time.sleep(0.01)
        post(clock, "R.c.m1")  # on the spare
        while spares(clock) == 0 and time.time() < deadline:
            time.sleep(0.01)
        clock._loop.call_soon_threadsafe(lambda: clock._spares[-1][2].transport.abort())  # closed under it
        time.sleep(0.1)
        post(clock, "R.c.m2")  # the closed spare is not used: a new connection
        while spares(clock) == 0 and time.time() < deadline:
            time.sleep(0.01)
        clock._spares[-1] = (clock._spares[-1][0] - SPARE_MAX_AGE_S - 1, *clock._spares[-1][1:])  # aged
        post(clock, "R.c.m3")
    c = read_stream_clock(out).set_index("request_id")
    assert c["client_error"].isna().all() and (c["client_status"] == 200).all()
    assert c.loc["R.c.m0", "client_connect_ms"] > 0 and c.loc["R.c.m1", "client_connect_ms"] == 0
    assert c.loc["R.c.m2", "client_connect_ms"] > 0 and c.loc["R.c.m3", "client_connect_ms"] > 0
