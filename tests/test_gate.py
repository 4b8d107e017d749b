"""``inferlab gate``: the three exit codes on recorded comparisons (the shipped ones in
data/sample/comparisons, and synthetic ones this test writes in the recorded layout: runs through
runs.store with k6 JSON lines and OTLP spans, a comparison.json), usage errors (exit 2), and one
end-to-end ``inferlab gate BASELINE_SPEC CANDIDATE_SPEC`` that runs its interleaved A/B against
the stand-in server with real k6. The real engine's gate runs on the kept 2+2 interleave
(tests/e2e/test_comparison.py): a 2+2 gate can only be inconclusive."""

from __future__ import annotations

import gzip
import json
import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from inferlab.analysis.gate import gate_comparison, gate_repeats
from inferlab.cli import main
from inferlab.procs import free_port
from inferlab.runs.comparison import (Comparison, Repeat, comparisons_dir, load_comparison, sample_comparisons,
                                      save_comparison)
from inferlab.runs.manifest import CellRecord, HostInfo, Manifest, TargetInfo, Versions
from inferlab.runs.store import RunWriter
from inferlab.standin import StandIn, StandInConfig

IDS = sample_comparisons()
AA = next((c for c in IDS if c.endswith("-ab-aa-local")), None)
AB = next((c for c in IDS if c.endswith("-ab-ab-maxseqs1")), None)
PREFIX = next((c for c in IDS if c.endswith("-ab-prefix-cache")), None)
shipped = pytest.mark.skipif(not (AA and AB and PREFIX), reason="shipped local comparisons not in data/sample")


def gate(capsys, *argv: str) -> tuple[int, str]:
    code = main(["gate", *argv])
    out = capsys.readouterr()
    return code, out.out + out.err


# --- the shipped comparisons (real CPU-engine runs) -----------------------------------------------


@shipped
def test_the_known_worse_engine_fails_the_gate_with_its_interval_and_margin(workspace, capsys):
    code, out = gate(capsys, AB[:16], "--margin", "5%")
    assert code == 1, out
    line = next(x for x in out.splitlines() if "short-c16 throughput" in x)
    assert line.startswith("REGRESSION") and "0.124x 90% CI [0.104, 0.148]" in line and "margin -5 %" in line
    assert "worse than 0.952x is a regression" in line
    assert next(x for x in out.splitlines() if "short-c1 throughput" in x).startswith("NON-INFERIOR")
    assert out.splitlines()[-1].startswith("gate: regression (exit 1): 1 of 4 gated metrics regressed")


@shipped
def test_the_aa_is_inconclusive_at_5_percent_and_passes_its_primary_metric_at_30(workspace, capsys):
    code, out = gate(capsys, AA, "--margin", "5%")
    assert code == 3, out
    assert "INCONCLUSIVE  short-c16 throughput" in out and "more repeats a side would decide" in out
    # the e2e p95 of these small cells has no value in some repeats: inconclusive, never skipped
    assert "INCONCLUSIVE  short-c1 e2e p95 (token SLO percentile" in out and "the percentile needs 20" in out
    # no spans in these runs: TTFT/TPOT are listed, not gated
    assert "NOT GATED     short-c1 TTFT p99" in out and "not measured in these runs" in out
    code, out = gate(capsys, AA, "--margin", "30%", "--primary-only")
    assert code == 0, out
    assert out.count("NON-INFERIOR") == 2 and "left out by --primary-only" in out


@shipped
def test_token_percentiles_come_from_the_spans_where_the_runs_have_them(workspace):
    res = gate_comparison(PREFIX, 0.05)
    lines = {(x.cell, x.metric): x for x in res.lines}
    ttft = lines[("shared-system-prompt-c2", "ttft_p99")]
    assert ttft.outcome == "inconclusive" and "the percentile needs 100" in ttft.why()  # 26 window requests a repeat
    e2e = lines[("shared-system-prompt-c2", "e2e_p95")]
    assert e2e.outcome == "regression" and e2e.test.ratio == pytest.approx(1.846, abs=0.01)
    assert res.exit_code == 1


@shipped
def test_compare_margin_adds_equivalence_verdicts_under_the_unchanged_verdict_table(workspace, capsys):
    assert main(["compare", AB]) == 0
    plain = capsys.readouterr().out
    assert main(["compare", AB, "--margin", "20%"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(plain)  # the verdict table and headline as before, the equivalence table after
    rows = {tuple(x.split()[:2]): x for x in out[len(plain):].splitlines()[2:]}
    assert rows[("short-c16", "throughput")].endswith("not equivalent")
    assert rows[("short-c1", "throughput")].endswith("equivalent within ±20 %")
    assert "90% CI" in out and "[0.833, 1.200]" in out
    assert main(["compare", AA, "--margin", "5%"]) == 0
    assert "more repeats a side" in capsys.readouterr().out


def test_usage_and_input_errors_exit_2(workspace, capsys):
    code, out = gate(capsys, "no-such-comparison", "--margin", "5%")
    assert code == 2 and "no comparison 'no-such-comparison'" in out
    with pytest.raises(SystemExit) as exc:
        main(["gate", "x", "--margin", "5"])
    assert exc.value.code == 2 and "ambiguous" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["gate", "x"])  # the margin is required
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["gate", "x", "--margin", "5%", "--alpha", "0.7"])
    assert exc.value.code == 2 and "--alpha" in capsys.readouterr().err


# --- synthetic comparisons in the recorded layout -------------------------------------------------

CELL, VUS, PER_USER = "short-c2", 2, 20
SLO = {"ttft_ms": 5000, "ttft_p": 90, "tpot_ms": 500, "tpot_p": 90, "e2e_ms": 60000, "e2e_p": 90}


def _point(metric: str, t: datetime, value: float, tags: dict, rid: str) -> str:
    return json.dumps({"metric": metric, "type": "Point", "data": {
        "time": t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "value": value, "tags": tags, "metadata": {"request_id": rid}}},
        separators=(",", ":"))


def _span(rid: str, start: datetime, end: datetime, ttft_s: float, decode_s: float, tokens: int) -> dict:
    ns = lambda t: str(int(t.timestamp() * 1e9))  # noqa: E731
    attrs = [("gen_ai.request.id", {"stringValue": f"chatcmpl-{rid}"}),
             ("gen_ai.latency.time_to_first_token", {"doubleValue": ttft_s}),
             ("gen_ai.latency.time_in_model_decode", {"doubleValue": decode_s}),
             ("gen_ai.latency.e2e", {"doubleValue": (end - start).total_seconds()}),
             ("gen_ai.usage.completion_tokens", {"intValue": str(tokens)})]
    return {"traceId": f"{abs(hash(rid)):032x}"[-32:], "spanId": f"{abs(hash(rid + 's')):016x}"[-16:],
            "name": "llm_request", "kind": 2, "startTimeUnixNano": ns(start), "endTimeUnixNano": ns(end),
            "attributes": [{"key": k, "value": v} for k, v in attrs]}


def write_run(run_id: str, t0: datetime, service_ms: float, rng: np.random.Generator, fail_share: float = 0.0) -> str:
    """A complete closed-loop run of one cell (VUS users, PER_USER requests each, back to back):
    k6's JSON lines (request ids in the metadata, as chat.js sends them) and the server's spans,
    TTFT a quarter of each request, 16 tokens. ``service_ms``: this repeat's mean service time."""
    m = Manifest(run_id=run_id, kind="sweep", label=run_id, created_at=t0, status="running",
                 target=TargetInfo(kind="local", base_url="http://127.0.0.1:9", model="smollm2"),
                 versions=Versions(inferlab="test", python="3"),
                 host=HostInfo(hostname="synthetic", cpu_model="synthetic", cores=2, utc_offset_minutes=0),
                 spec={"slo": SLO},
                 cells=[CellRecord(cell_id=CELL, payload="short", executor="shared-iterations", vus=VUS,
                                   iterations=VUS * PER_USER, status="complete")])
    w = RunWriter.create(comparisons_dir().parent / "runs" / run_id, m)
    lines, spans = [], []
    for user in range(VUS):
        t = t0 + timedelta(milliseconds=3 * user)
        for i in range(PER_USER):
            dur = service_ms * float(np.exp(rng.normal(0, 0.05)))
            end = t + timedelta(milliseconds=dur)
            rid = f"{run_id}.{CELL}.m{user * PER_USER + i}"
            ok = rng.random() >= fail_share
            tags = {"cell": CELL, "expected_response": "true" if ok else "false", "payload": "short",
                    "phase": "measure", "status": "200" if ok else "500", "vus": str(VUS)}
            lines += [_point("http_reqs", end, 1, tags, rid), _point("http_req_duration", end, dur, tags, rid),
                      _point("http_req_failed", end, 0 if ok else 1, tags, rid)]
            if ok:
                spans.append(_span(rid, t, end, dur / 4000, dur * 0.74 / 1000, 16))
            t = end
    w.write_bytes(f"cells/{CELL}/k6.ndjson.gz", gzip.compress(("\n".join(lines) + "\n").encode()))
    doc = {"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [{"spans": spans}]}]}
    w.write_bytes(f"cells/{CELL}/spans.otlp.jsonl.gz", gzip.compress((json.dumps(doc) + "\n").encode()))
    w.finish("complete")
    return run_id


def write_comparison(name: str, pairs: int, candidate_factor: float, run_sd: float, seed: int,
                     status: str = "complete", fail_share: float = 0.0) -> str:
    """A comparison record of ``pairs`` alternating repeats: every repeat's service time is 400 ms
    x a between-repeat factor exp(N(0, run_sd)), the candidate's x ``candidate_factor`` (the truth)."""
    rng = np.random.default_rng(seed)
    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    cid = f"20261201T000000Z-local-ab-{name}"
    c = Comparison(comparison_id=cid, created_at=t0, target="local", order="alternate", seed=seed, baseline={},
                   tuned={}, status=status)
    for pair in range(1, pairs + 1):
        for side in ("baseline", "tuned"):
            t = t0 + timedelta(minutes=len(c.repeats))
            factor = float(np.exp(rng.normal(0, run_sd))) * (candidate_factor if side == "tuned" else 1.0)
            run_id = write_run(f"{t:%Y%m%dT%H%M%SZ}-local-{name}-{side[0]}", t, 400 * factor, rng,
                               fail_share if side == "tuned" else 0.0)
            c.repeats.append(Repeat(side=side, pair=pair, run_id=run_id, status="complete"))
    d = comparisons_dir() / cid
    d.mkdir(parents=True)
    save_comparison(c, d)
    return cid


def test_an_unchanged_candidate_passes_on_throughput_and_every_token_percentile(workspace, capsys):
    cid = write_comparison("same", pairs=4, candidate_factor=1.0, run_sd=0.005, seed=1)
    code, out = gate(capsys, cid, "--margin", "5%")
    assert code == 0, out
    for label in ("throughput", "TTFT p90", "TPOT p90", "e2e p90"):
        assert f"NON-INFERIOR  {CELL} {label} " in out, label
    assert out.splitlines()[-1] == ("gate: non-inferior (exit 0): all 4 gated metrics are within ±5 % of the baseline "
                                    "or better")
    assert "intersection-union" in out


def test_a_candidate_25_percent_slower_fails_on_every_metric(workspace, capsys):
    cid = write_comparison("slower", pairs=3, candidate_factor=1.25, run_sd=0.01, seed=2)
    code, out = gate(capsys, cid, "--margin", "5%")
    assert code == 1, out
    assert out.count("REGRESSION") == 4
    res = gate_comparison(cid, 0.05)
    by = {x.metric: x.test.ratio for x in res.lines}
    assert by["throughput"] == pytest.approx(0.8, abs=0.03)
    assert by["ttft_p90"] == pytest.approx(1.25, abs=0.05) and by["tpot_p90"] == pytest.approx(1.25, abs=0.05)


def test_noise_larger_than_the_margin_is_inconclusive_with_how_many_more_repeats(workspace, capsys):
    cid = write_comparison("noisy", pairs=3, candidate_factor=1.0, run_sd=0.08, seed=3)
    code, out = gate(capsys, cid, "--margin", "5%")
    assert code == 3, out
    assert "more repeats a side would decide at the measured noise" in out and "assuming the measured ratio" in out
    assert re.search(r"could not be shown within ±5 %; \d+ more repeats a side would decide all of them", out), out


def test_a_2_plus_2_gate_and_a_partial_comparison_cannot_pass(workspace, capsys):
    cid = write_comparison("two", pairs=2, candidate_factor=1.0, run_sd=0.005, seed=4)
    code, out = gate(capsys, cid, "--margin", "5%")
    assert code == 3, out
    assert "2 repeats on a side (a decision needs 3)" in out
    cid = write_comparison("cut", pairs=4, candidate_factor=1.0, run_sd=0.005, seed=1, status="partial")
    code, out = gate(capsys, cid, "--margin", "5%")
    assert code == 3 and "it cannot pass" in out.splitlines()[-1], out


def test_a_candidate_that_fails_more_cannot_pass_on_latency(workspace):
    cid = write_comparison("fails", pairs=4, candidate_factor=1.0, run_sd=0.005, seed=1, fail_share=0.1)
    res = gate_comparison(cid, 0.3)
    latency = [x for x in res.lines if x.metric != "throughput"]
    assert latency and all(x.outcome == "inconclusive" and "failed more requests" in x.why() for x in latency)
    assert res.exit_code == 3


def test_a_primary_repeat_without_a_value_is_inconclusive_not_dropped():
    """gate_repeats on compare's repeat table: 4 + 4 repeats, one candidate repeat with an empty window."""
    rows = [{"side": side, "run_id": f"{side}{i}", "cell": "c", "throughput": 1.0 + 0.001 * i, "requests": 50,
             "errors": 0} for side in ("baseline", "tuned") for i in range(4)]
    reps = pd.DataFrame(rows)
    assert gate_repeats(reps, pd.DataFrame(), 0.05).exit_code == 0
    reps.loc[7, "throughput"] = np.nan
    res = gate_repeats(reps, pd.DataFrame(), 0.05)
    assert res.exit_code == 3 and "1 repeat(s) without a value" in res.lines[0].why()


def test_an_invalid_repeat_makes_the_cell_inconclusive_even_when_the_numbers_pass():
    """compare refuses a verdict from INVALID data; the gate likewise never exits 0 on it."""
    rows = [{"side": side, "run_id": f"{side}{i}", "cell": "c", "throughput": 1.0 + 0.001 * i, "requests": 50,
             "errors": 0, "validity": "VALID", "validity_reasons": ""} for side in ("baseline", "tuned") for i in range(4)]
    reps = pd.DataFrame(rows)
    assert gate_repeats(reps, pd.DataFrame(), 0.05).exit_code == 0
    reps.loc[5, ["validity", "validity_reasons"]] = ["INVALID", "send lag p99 80 ms > 50 ms"]
    res = gate_repeats(reps, pd.DataFrame(), 0.05)
    assert res.exit_code == 3 and len(res.lines) == 1
    assert "INVALID data in 1 repeat(s): send lag p99 80 ms > 50 ms" in res.lines[0].why()


def test_gate_of_two_specs_on_k8s_deploys_the_baseline_overlay_first_and_stops_without_a_cluster(
        workspace, monkeypatch, tmp_path, capsys):
    """Up to the cluster boundary (no cluster here): the A/B's first repeat deploys the baseline
    overlay; its failure is an error of the run (exit 2), recorded in the comparison."""
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    code, out = gate(capsys, "ci-tiny", "ci-tiny", "--target", "k8s", "--overlay-baseline", "baseline",
                     "--overlay-candidate", "tuned", "--margin", "5%", "--label", "k8s-gate")
    assert code == 2 and "deploy of overlay 'baseline' exited 3" in out, out
    (d,) = (workspace / "data" / "comparisons").iterdir()
    assert load_comparison(d).status == "failed"


# --- end to end: the A/B run first, on the stand-in with real k6 ------------------------------------


@pytest.mark.slow
def test_gate_of_two_specs_runs_an_interleaved_ab_on_the_standin_and_fails_the_slower_candidate(
        workspace, monkeypatch, capsys):
    """Both sides against one stand-in (target url); the candidate asks for 64 output tokens where
    the baseline asks for 16, at 10 ms a token: a regression far beyond 5 %."""
    key = "standin-key"
    monkeypatch.setenv("INFERLAB_API_KEY", key)
    cfg = StandInConfig(port=free_port(), api_key=key, tpot_ms=10)
    sets = ["concurrency=[4]", "iterations_per_vu=8", "probe.idle_requests=0", "probe.under_load_requests=0"]
    argv = ["ci-tiny", "ci-tiny", "--target", "url", "--base-url", f"http://127.0.0.1:{cfg.port}", "--pairs", "3",
            "--margin", "5%", "--label", "gate-e2e"]
    argv += [x for s in sets for x in ("--set-baseline", s)]
    argv += [x for s in [*sets, "payloads.short.max_tokens=64"] for x in ("--set-candidate", s)]
    with StandIn(cfg):
        code, out = gate(capsys, *argv)
    assert code == 1, out
    cid = out.splitlines()[0].removeprefix("ran comparison ")
    c = load_comparison(cid)
    assert c.status == "complete" and [r.side for r in c.repeats] == ["baseline", "tuned"] * 3
    line = next(x for x in out.splitlines() if " throughput " in x)
    assert line.startswith("REGRESSION") and "3+3 repeats" in line
    assert "REGRESSION    short-c4 e2e p95" in out  # k6's durations
    # a url target without spans: TTFT and TPOT come from the stream clock, so they are gated too
    # (the candidate's longer answers leave its TTFT unchanged: never a regression)
    ttft = next(x for x in out.splitlines() if " short-c4 TTFT p90 " in x)
    assert not ttft.startswith(("NOT GATED", "REGRESSION")), ttft
    assert any(x.startswith(("INCONCLUSIVE", "NON-INFERIOR", "REGRESSION")) and " short-c4 TPOT p90 " in x
               for x in out.splitlines())
    (summary,) = [x for x in out.splitlines() if x.startswith("gate: ")]
    assert summary.startswith("gate: regression (exit 1): ") and "of 4 gated metrics regressed" in summary, summary
