"""Workloads against the REAL vLLM CPU engine (the session's ci-tiny engine, max-model-len 1024)
and the real k6: token calibration with /tokenize, prompts rendered to length (checked with the
server's usage), prefix caching visible in vllm:prefix_cache_hits_total only where prompts share
a prefix, multi-turn sessions carrying their answers, and open-loop send lag."""

from __future__ import annotations

import httpx
import pytest

from inferlab.analysis.workload import arrival_summary, token_accuracy, workload_requests
from inferlab.ingest import read_k6, read_k6_points, read_prometheus_text
from inferlab.load.k6 import run_cell
from inferlab.load.workload import calibrate
from inferlab.specs import load_spec, plan_cells

pytestmark = pytest.mark.engine
MODEL = "smollm2"  # ci-tiny's served model name


@pytest.fixture(scope="module")
def calibration(engine):
    return calibrate(engine.base_url, engine.api_key, MODEL)


def _hits(engine, tmp_path) -> float:
    p = tmp_path / "metrics.prom"
    p.write_bytes(httpx.get(f"{engine.base_url}/metrics", headers={"Authorization": f"Bearer {engine.api_key}"}).content)
    m = read_prometheus_text(p)
    return float(m.loc[m["sample"] == "vllm:prefix_cache_hits_total", "value"].sum())


def _run(tmp_path, engine, calibration, workload_yaml: str, name: str):
    wl = tmp_path / f"{name}.yaml"
    wl.write_text(workload_yaml)
    spec_file = tmp_path / f"spec-{name}.yaml"
    spec_file.write_text(f"name: t\nworkload: {wl}\nwarmup_requests: 1\nmodel: {MODEL}\n")
    spec = load_spec(spec_file)
    cell = plan_cells(spec)[0]
    d = tmp_path / name
    d.mkdir()
    before = _hits(engine, tmp_path)
    res = run_cell(spec, cell, engine.base_url, engine.api_key, d, run_id="T", calibration=calibration)
    assert res.exit_code in (0, 99), res.stderr_tail
    req = read_k6(d / "k6.ndjson.gz").assign(cell_id=cell.cell_id)
    pts = read_k6_points(d / "k6.ndjson.gz").assign(cell_id=cell.cell_id)
    return workload_requests(req, pts), _hits(engine, tmp_path) - before


def test_calibration_uses_tokenize(calibration):
    assert calibration["method"] == "tokenize", calibration
    assert 0.9 <= calibration["tokens_per_word"] <= 1.1  # the vocabulary is one token a word for SmolLM2
    assert 5 <= calibration["base_tokens"] <= 30 and 2 <= calibration["message_tokens"] <= 10


def test_prompts_hit_their_length_and_only_shared_prefixes_hit_the_cache(tmp_path, engine, calibration):
    common = ("seed: 7\nsessions_per_cell: 8\ninput: {kind: uniform, low: 300, high: 400}\n"
              "output: {kind: fixed, value: 4}\nmax_total_tokens: 1000\narrival: {kind: closed, vus: 2}\n")
    control, control_hits = _run(tmp_path, engine, calibration, "name: ctl\n" + common, "ctl")
    shared, shared_hits = _run(tmp_path, engine, calibration,
                               "name: pfx\n" + common + "prefix: {groups: 1, tokens: 256, fraction: 1.0}\n", "pfx")
    assert len(control) == len(shared) == 8
    acc = token_accuracy(control)
    assert float(acc["prompt_error_abs_p95"].max()) < 0.03, acc  # rendered to length within 3%
    assert (control["completion_tokens"] == 4).all()  # ignore_eos holds the answer length
    assert control_hits == 0  # unique leading words: no two requests share a KV block
    assert shared_hits >= 7 * 128  # 7 of 8 requests reuse the 256-token prefix (and warm-up too)


def test_multi_turn_sessions_carry_their_answers(tmp_path, engine, calibration):
    wr, _ = _run(tmp_path, engine, calibration,
                 "name: mt\nseed: 3\nsessions_per_cell: 2\ninput: {kind: fixed, value: 40}\n"
                 "output: {kind: fixed, value: 8}\nsessions: {turns: 3, think_time_s: 0.2}\n"
                 "max_total_tokens: 1000\narrival: {kind: closed, vus: 2}\n", "mt")
    assert sorted(wr["request_id"].str.rsplit(".", n=1).str[1]) == ["m0-0", "m0-1", "m0-2", "m1-0", "m1-1", "m1-2"]
    for _, s in wr.groupby("session"):
        s = s.sort_values("turn")
        grown = s["prompt_tokens"].diff().dropna()
        assert (grown >= 8 + 40 - 5).all(), s[["turn", "prompt_tokens"]]  # last answer + new message
    assert float(token_accuracy(wr)["prompt_error_abs_p95"].max()) < 0.05


def test_open_loop_sends_on_schedule(tmp_path, engine, calibration):
    wr, _ = _run(tmp_path, engine, calibration,
                 "name: ol\nseed: 5\nsessions_per_cell: 12\ninput: {kind: fixed, value: 60}\n"
                 "output: {kind: fixed, value: 8}\narrival: {kind: poisson, rate: 4, max_vus: 16}\n", "ol")
    s = arrival_summary(wr, {"ol-at4": 12})
    assert s.loc[0, "sessions"] == 12 and s.loc[0, "dropped"] == 0 and s.loc[0, "open_loop"]
    # on schedule: the median send within 20 ms of its slot and at most one of 12 later than
    # 50 ms. k6 and the engine share 2 cores here, so one send can meet a scheduling hiccup
    # (177 ms seen once in CI while the machine was busy); a closed loop or a broken schedule
    # lags by seconds, which the 1 s ceiling still catches. Whether a cell's lag is good enough to
    # judge is the product's validity check (analysis/validity.py, send lag p99 <= 10 ms).
    assert s.loc[0, "lag_p50_ms"] < 20 and s.loc[0, "late"] <= 1 and s.loc[0, "lag_max_ms"] < 1000, s
