"""Replay of production trace formats (Azure, Mooncake, BurstGPT): each format's time unit and the
speedup give the planned inter-arrival times; the fit rule keeps prefix sharing and reports the
share changed; Mooncake hash ids become prompt blocks that the real k6 script renders into
identical leading text (a recording HTTP server captures what chat.js sent); the shipped samples
are the generators' output, byte for byte."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from inferlab.formats import burstgpt_trace, mooncake_trace
from inferlab.load.k6 import run_cell
from inferlab.load.workload import (BURSTGPT_SAMPLE, ESTIMATE, MOONCAKE_SAMPLE, build_schedule, burstgpt_sample,
                                    k6_section, mooncake_sample, read_trace_file, schedule_for)
from inferlab.specs import load_spec, plan_cells
from inferlab.specs.workload import Workload


def _w(fmt: str, **arrival) -> Workload:
    return Workload.model_validate({"name": "t", "seed": 3, "sessions_per_cell": 100, "max_total_tokens": 1900,
                                    "arrival": {"kind": "trace", "file": "x", "format": fmt, **arrival}})


@pytest.mark.parametrize("fmt, path, gaps_s", [
    ("mooncake", "mooncake-trace/mooncake_trace-head.jsonl", [0.25, 0.75, 0.75, 2.25]),  # ms in the file
    ("burstgpt", "burstgpt-trace/BurstGPT-head.csv", [0.0, 2.0, 4.0, 8.0]),  # s in the file
    ("azure", "azure-trace/AzureLLMInferenceTrace_conv-head.csv", None),  # wall-clock timestamps
])
@pytest.mark.parametrize("speedup", [1.0, 4.0])
def test_inter_arrival_times_follow_the_unit_and_the_speedup(fixtures, fmt, path, gaps_s, speedup):
    trace = read_trace_file(fixtures / path, fmt)
    s = build_schedule(_w(fmt, speedup=speedup), trace)
    if gaps_s is None:  # Azure: the gaps of the timestamps themselves
        gaps_s = np.diff((trace["ts"] - trace["ts"].iloc[0]).dt.total_seconds()).tolist()
    assert np.allclose(np.diff(s["start_s"]), np.array(gaps_s) / speedup)


def test_fit_scale_keeps_sharing_and_reports_every_request_changed(fixtures):
    trace = read_trace_file(fixtures / "mooncake-trace" / "mooncake_trace-head.jsonl", "mooncake")
    s = build_schedule(_w("mooncake", fit="scale"), trace)
    f = s.attrs["fit"]
    assert f["factor"] == pytest.approx(1900 / 2130) and f["block_tokens"] == int(512 * 1900 / 2130)
    assert (s["input_tokens"] + s["output_tokens"]).max() <= 1900
    assert f["changed"] == 5 and f["share_changed"] == 1.0  # one factor: every length changes
    # dense ids in order of first appearance: 46 -> 0, 47 -> 1, 2 -> 2, ...; whole blocks that fit
    # (input - min_input_tokens) // block_tokens, the partial last block becomes tail
    bt = f["block_tokens"]
    assert s["blocks"].tolist() == [[0, 1], [0, 1], [4], [0, 1, 2, 6], []]
    assert [(i - 16) // bt for i in s["input_tokens"]] == [2, 2, 1, 4, 0]
    # planned reuse: requests 2 and 4 reuse blocks 0, 1; block 2 was request 1's partial tail, so
    # request 4 sends it first
    assert s.attrs["prefix_reuse"]["reused_tokens"] == 4 * bt


def test_fit_clip_changes_only_the_long_requests_and_keeps_their_leading_blocks(fixtures):
    trace = read_trace_file(fixtures / "mooncake-trace" / "mooncake_trace-head.jsonl", "mooncake")
    s = build_schedule(_w("mooncake", fit="clip"), trace)
    assert s.attrs["fit"]["changed"] == 1 and s.attrs["fit"]["share_changed"] == 0.2
    assert s.attrs["fit"]["factor"] == 1.0 and s.attrs["fit"]["block_tokens"] == 512
    long = s.iloc[3]
    assert (long["input_tokens"], long["output_tokens"]) == (1870, 30) and long["blocks"] == [0, 1, 2]
    assert s["blocks"].tolist()[:3] == [[0, 1], [0, 1], [4]]  # 700 tokens: one whole block of 512


def test_burstgpt_fit_and_failed_requests(fixtures):
    trace = read_trace_file(fixtures / "burstgpt-trace" / "BurstGPT-head.csv", "burstgpt")
    s = build_schedule(_w("burstgpt", fit="clip"), trace)
    # the failed request (0 response tokens) is sent with max_tokens 1; the 2,722-token one is cut
    assert s["output_tokens"].tolist() == [18, 1, 412, 120, 240]
    assert s["input_tokens"].iloc[2] == 1900 - 412 and s.attrs["fit"]["changed"] == 2
    assert "prefix_reuse" not in s.attrs and s["blocks"].map(len).sum() == 0


def test_block_tokens_is_mooncake_only_and_prefix_groups_conflict():
    with pytest.raises(ValueError, match="block_tokens applies to format mooncake"):
        _w("burstgpt", block_tokens=256)
    with pytest.raises(ValueError, match="hash_ids"):
        Workload.model_validate({"name": "t", "seed": 1, "sessions_per_cell": 1, "prefix": {"tokens": 32},
                                 "arrival": {"kind": "trace", "file": "x", "format": "mooncake"}})


def test_the_shipped_samples_are_the_generators_output(tmp_path):
    m, b = tmp_path / "m.jsonl", tmp_path / "b.csv"
    mooncake_trace.write_trace(m, mooncake_sample())
    burstgpt_trace.write_trace(b, burstgpt_sample())
    assert m.read_bytes() == MOONCAKE_SAMPLE.read_bytes()  # regenerate: python -m inferlab.load.workload
    assert b.read_bytes() == BURSTGPT_SAMPLE.read_bytes()
    w, s = schedule_for("mooncake-sample")
    assert s.attrs["prefix_reuse"]["share"] > 0.3 and s.attrs["fit"]["factor"] < 1
    w, s = schedule_for("burstgpt-sample")
    gaps = np.diff(s["start_s"].to_numpy())
    assert gaps.std() / gaps.mean() > 1.3 and 0 < s.attrs["fit"]["share_changed"] < 0.2  # bursty; few clipped


# --- real k6 against a server that records every body --------------------------------------------

ANSWER = {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant",
          "content": "ok"}, "finish_reason": "length"}], "usage": {"prompt_tokens": 9, "completion_tokens": 1,
                                                                   "total_tokens": 10}}


@pytest.fixture
def recorder():
    bodies: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            bodies.append({"id": self.headers.get("X-Request-Id"), **body})
            data = json.dumps(ANSWER).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", bodies
    srv.shutdown()


def _mooncake_cell(tmp_path, fixtures, speedup: int, ignore_eos: bool = False, model: str = ""):
    """A five-session workload replaying the Mooncake fixture's head (fit: scale), a spec on it
    and its one cell, with an empty ``cell`` folder beside: (workload file, spec, cell)."""
    trace = fixtures / "mooncake-trace" / "mooncake_trace-head.jsonl"
    wl = tmp_path / "mc.yaml"
    wl.write_text("name: mc\nseed: 9\nsessions_per_cell: 5\nmax_total_tokens: 1900\n"
                  + ("ignore_eos: true\n" if ignore_eos else "")
                  + f"arrival: {{kind: trace, format: mooncake, file: {trace}, speedup: {speedup}, fit: scale, max_vus: 8}}\n")
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(f"name: t\nworkload: {wl}\nwarmup_requests: 0\n" + (f"model: {model}\n" if model else ""))
    spec = load_spec(spec_file)
    (tmp_path / "cell").mkdir()
    return wl, spec, plan_cells(spec)[0]


def test_k6_replays_mooncake_prefix_reuse(tmp_path, fixtures, recorder):
    url, bodies = recorder
    wl, spec, cell = _mooncake_cell(tmp_path, fixtures, speedup=10)
    res = run_cell(spec, cell, url, None, tmp_path / "cell", run_id="RUN")
    assert res.exit_code == 0, res.stderr_tail
    w, sched = schedule_for(str(wl))
    by_session = {int(b["id"].rsplit(".m", 1)[1]): b["messages"] for b in bodies if ".m" in b["id"]}
    assert sorted(by_session) == [0, 1, 2, 3, 4]
    # block words: the estimate calibration (the recorder has no /tokenize) -> 1.33 tokens/word
    bw = round(k6_section(w, sched, ESTIMATE)["block_tokens"] / ESTIMATE["tokens_per_word"])
    system = {s: m[0]["content"].split(" ") for s, m in by_session.items()}
    user = {s: m[1]["content"] for s, m in by_session.items()}
    assert [len(system[s]) for s in range(4)] == [2 * bw, 2 * bw, bw, 4 * bw]  # blocks [0,1] [0,1] [4] [0,1,2,6]
    assert system[0] == system[1] and system[3][:3 * bw] == system[0] + system[3][2 * bw:3 * bw]
    assert system[3][2 * bw:3 * bw] != system[0][:bw] and system[2] != system[0][:bw]  # other ids differ
    assert system[3][3 * bw:] != system[2]  # block 6 is not block 4
    assert len(set(user.values())) == 5  # every tail unique
    assert len(system[4]) == 8  # no whole block: the unique lead words, as outside a trace


def test_the_record_and_the_report_say_what_the_fit_changed():
    from inferlab.load.workload import workload_record
    from inferlab.report.workload import trace_replay_md

    rec = workload_record("burstgpt-sample", ESTIMATE)
    fit = rec["schedule"]["fit"]
    w, s = schedule_for("burstgpt-sample")
    raw = read_trace_file(BURSTGPT_SAMPLE, "burstgpt")
    # changed: over the limit (clipped), or failed in the trace (0 answer tokens: sent with max_tokens 1)
    over = (raw["context_tokens"] + raw["generated_tokens"].clip(lower=1)) > 1900
    assert fit["changed"] == int((over | (raw["generated_tokens"] == 0)).sum()) == 10
    assert fit["changed"] == int(((s["input_tokens"] != raw["context_tokens"]) |
                                  (s["output_tokens"] != raw["generated_tokens"])).sum())
    text = trace_replay_md(rec)
    assert f"{fit['changed']} of 120 requests changed" in text and "`burstgpt` replayed at 1x" in text
    mc = trace_replay_md(workload_record("mooncake-sample", ESTIMATE))
    assert "scaled by 0.433" in mc and "80 of 80 requests changed (100.0%)" in mc and "Shared prompt blocks" in mc
    assert trace_replay_md(workload_record("chat", ESTIMATE)) == ""


def test_k6_replay_on_the_standin_hits_its_prefix_cache_where_hash_ids_are_shared(tmp_path, fixtures):
    """The stand-in's prefix cache (vLLM-style 16-token blocks, word tokens) as the witness:
    requests 2 and 4 (sharing blocks 46, 47 with request 1) are served partly from cache, the
    others not at all, by as many tokens as their shared block text covers (to a 16-token block)."""
    from inferlab.load.workload import calibrate
    from inferlab.standin import StandIn

    wl, spec, cell = _mooncake_cell(tmp_path, fixtures, speedup=1, ignore_eos=True, model="smollm2")
    with StandIn(tpot_ms=1, prefill_ms_per_token=0.01) as si:
        cal = calibrate(si.base_url, None, "smollm2")
        assert cal["method"] == "tokenize"
        res = run_cell(spec, cell, si.base_url, None, tmp_path / "cell", run_id="RUN", calibration=cal)
        assert res.exit_code == 0, res.stderr_tail
        recs = {int(r.request_id.rsplit(".m", 1)[1]): r for r in si.stats().requests if ".m" in r.request_id}
    w, sched = schedule_for(str(wl))
    bw = round(k6_section(w, sched, cal)["block_tokens"] / cal["tokens_per_word"])
    assert [recs[s].cached_tokens for s in (0, 2, 4)] == [0, 0, 0]
    shared = 3 + 2 * bw  # "<|im_start|>", "system", "\n", then blocks 0 and 1
    for s in (1, 3):  # the cache serves the whole 16-token blocks of the shared text (the tails differ)
        assert recs[s].cached_tokens == shared // 16 * 16 > 0
    assert all(recs[s].prompt_tokens == round(cal["base_tokens"] + cal["tokens_per_word"] * (
        bw * len(sched["blocks"].iloc[s]) + max(8, round((sched["input_tokens"].iloc[s] - cal["base_tokens"])
                                                        / cal["tokens_per_word"]) - bw * len(sched["blocks"].iloc[s]))))
               for s in range(5))
