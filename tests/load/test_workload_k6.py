"""Workload timing with the real k6 against real nginx answering every chat completion at once
(a canned OpenAI response with usage), so what is measured is the client: open-loop sends at
their scheduled time (Poisson inter-arrival CV, trace-replay send lag), request ids, metadata
and the usage join. The server side of workloads is tests/load/test_workload_engine.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from inferlab.analysis.workload import arrival_summary, token_accuracy, workload_requests
from inferlab.ingest import read_k6, read_k6_points
from inferlab.load.k6 import k6_config, run_cell
from inferlab.load.workload import BURSTY_TRACE, schedule_for
from inferlab.nginx import NginxProcess, main_config
from inferlab.procs import free_port
from inferlab.specs import load_spec, plan_cells

ANSWER = {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant",
          "content": "fine thanks"}, "finish_reason": "length"}], "usage": {"prompt_tokens": 123,
          "completion_tokens": 7, "total_tokens": 130}}


@pytest.fixture(scope="module")
def server():
    """Debian nginx on a free loopback port: 200 + ANSWER for every POST."""
    port = free_port()
    nginx = NginxProcess(name="answering nginx", error=RuntimeError, health=f"http://127.0.0.1:{port}/")
    work = nginx.work_dir("inferlab-test-answer-")
    (work / "nginx.conf").write_text(main_config(work, f"""  access_log off;
  server {{ listen 127.0.0.1:{port}; client_max_body_size 10m;
    location / {{ default_type application/json; return 200 '{json.dumps(ANSWER)}'; }} }}"""))
    nginx.use_config(work / "nginx.conf")
    with nginx:
        yield f"http://127.0.0.1:{port}"


def _spec(tmp_path, workload: str, **extra):
    p = tmp_path / "spec.yaml"
    p.write_text(f"name: t\nworkload: {workload}\nwarmup_requests: 1\n" + "".join(f"{k}: {v}\n" for k, v in extra.items()))
    return load_spec(p)


def _run(tmp_path, server, spec):
    cell = plan_cells(spec)[0]
    d = tmp_path / cell.cell_id
    d.mkdir()
    res = run_cell(spec, cell, server, None, d, run_id="RUN")
    assert res.exit_code == 0, res.stderr_tail
    req = read_k6(d / "k6.ndjson.gz").assign(cell_id=cell.cell_id)
    return cell, workload_requests(req, read_k6_points(d / "k6.ndjson.gz").assign(cell_id=cell.cell_id))


def test_poisson_sends_keep_their_schedule_and_cv(tmp_path, server):
    wl = tmp_path / "fast-poisson.yaml"
    wl.write_text("name: fast-poisson\nseed: 505\nsessions_per_cell: 400\ninput: {kind: fixed, value: 40}\n"
                  "output: {kind: fixed, value: 4}\narrival: {kind: poisson, rate: 40, max_vus: 32}\n")
    cell, wr = _run(tmp_path, server, _spec(tmp_path, wl))
    s = arrival_summary(wr, {cell.cell_id: 400}).iloc[0]
    assert s["sessions"] == 400 and s["dropped"] == 0 and s["open_loop"]
    assert abs(s["scheduled_cv"] - 1) <= 0.1  # the schedule is Poisson...
    assert abs(s["interarrival_cv"] - s["scheduled_cv"]) < 0.05  # ...and the sends follow it
    assert s["lag_p99_ms"] < 50 and s["late"] <= 4
    # the usage of each response is joined to its request row by request_id
    assert (wr["prompt_tokens"] == 123).all() and (wr["completion_tokens"] == 7).all()
    assert wr["request_id"].is_unique and wr["request_id"].str.fullmatch(r"RUN\.fast-poisson-at40\.m\d+").all()


def test_trace_replay_send_lag(tmp_path, server):
    w, schedule = schedule_for("bursty-trace")
    fast = tmp_path / "bursty-fast.yaml"  # the shipped trace at 10x: ~10 s instead of ~100 s
    arrival = w.arrival.model_copy(update={"speedup": 10.0, "file": str(BURSTY_TRACE)})
    fast.write_text(w.model_copy(update={"arrival": arrival}).model_dump_json())
    cell, wr = _run(tmp_path, server, _spec(tmp_path, fast))
    s = arrival_summary(wr, {cell.cell_id: len(schedule)}).iloc[0]
    assert cell.cell_id == "bursty-trace-x10" and s["sessions"] == 120 and s["dropped"] == 0
    assert s["lag_p99_ms"] < 50
    planned = schedule["start_s"].to_numpy() * 100  # ms at 10x
    assert np.allclose(np.sort(wr["scheduled_ms"].to_numpy("float64")), np.round(planned), atol=1)


def test_multi_turn_metadata_and_ids(tmp_path, server):
    wl = tmp_path / "mt.yaml"
    wl.write_text("name: mt\nseed: 1\nsessions_per_cell: 3\ninput: {kind: fixed, value: 30}\n"
                  "output: {kind: fixed, value: 7}\nsessions: {turns: 2}\nprefix: {groups: 1, tokens: 64, "
                  "fraction: 1}\narrival: {kind: closed, vus: 3}\n")
    _, wr = _run(tmp_path, server, _spec(tmp_path, wl))
    assert sorted(wr["request_id"].str.rsplit(".", n=1).str[1]) == ["m0-0", "m0-1", "m1-0", "m1-1", "m2-0", "m2-1"]
    assert set(wr["turn"]) == {0, 1} and (wr["prefix_group"] == 0).all()
    assert wr["scheduled_ms"].isna().all() and wr["send_lag_ms"].isna().all()  # closed loop: no schedule
    later = wr[wr["turn"] == 1]
    # a later turn expects the server's last prompt + answer + the new message
    assert (later["expected_prompt_tokens"] > 123 + 7).all()
    assert set(token_accuracy(wr)["turns"]) == {"first", "later"}


def test_payload_cells_have_no_workload_config():
    from inferlab.specs import builtin_spec

    spec = load_spec(builtin_spec("matrix-local"))
    cfg = k6_config(spec, plan_cells(spec)[0], "http://x")
    assert "workload" not in cfg and cfg["prompt"] == spec.payloads["short"].prompt


def test_two_k6_segments_split_the_sessions_exactly(tmp_path, server):
    wl = tmp_path / "seg.yaml"
    wl.write_text("name: seg\nseed: 2\nsessions_per_cell: 60\ninput: {kind: fixed, value: 30}\n"
                  "output: {kind: fixed, value: 4}\narrival: {kind: closed, vus: 8}\n")
    # closed loop: an open-loop workload refuses segments (each process would time its own schedule)
    spec = _spec(tmp_path, wl, k6_segments=2)
    cell = plan_cells(spec)[0]
    d = tmp_path / "segs"
    d.mkdir()
    assert run_cell(spec, cell, server, None, d, run_id="RUN").exit_code == 0
    parts = []
    for f in ("k6.seg1of2.ndjson.gz", "k6.seg2of2.ndjson.gz"):
        req, pts = read_k6(d / f).assign(cell_id=cell.cell_id), read_k6_points(d / f).assign(cell_id=cell.cell_id)
        parts.append(workload_requests(req, pts))
    ids = sorted(int(i.rsplit(".m", 1)[1]) for p in parts for i in p["request_id"])
    assert ids == list(range(60)) and all(len(p) > 0 for p in parts)  # each session once, both segments busy
