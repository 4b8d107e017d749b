"""The two cut certified searches on one H200 (data/gpu-evidence/2026-12-04-h200-session7: cap-1
and cap-2, each SIGTERMed by its time limit during certification) re-read with the product's
own verifier, segment judge and report: a change to the readers, the backlog test or the
capacity report that would alter the figures its README reports fails here. Fast: a few cells
are re-judged from their raw files (the whole re-judge, readings/investigate.py, takes ~40 s).
Uses the shipped files only (read-only)."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from inferlab.analysis.capacity_steps import read_segment, rejudged_record
from inferlab.ingest import read_k6, read_spans
from inferlab.report.capacity import front_line, headline, step_table
from inferlab.runs.reader import Run
from inferlab.runs.verify import verify_run

D = Path(__file__).resolve().parents[2] / "data" / "gpu-evidence" / "2026-12-04-h200-session7"
RUNS = {"cap-1": D / "cap-1/ws/data/runs/20261204T152105Z-local-cap-1",
        "cap-2": D / "cap-2/ws/data/runs/20261204T154743Z-local-cap-2"}
LEFT_OUT = {"cap-1": {"telemetry/metrics-samples.prom.gz", "cells/short-at256/spans.otlp.jsonl.gz"},
            "cap-2": {"telemetry/metrics-samples.prom.gz", "cells/short-at281p25/spans.otlp.jsonl.gz",
                      "cells/short-at273p51/spans.otlp.jsonl.gz"}}


def record(name: str) -> dict:
    return json.loads((D / "readings" / f"{name}.capacity-partial.json").read_text())


@pytest.mark.parametrize("name", RUNS)
def test_what_is_missing_is_what_the_readme_leaves_out_and_every_gzip_restores_its_bytes(name):
    run_dir = RUNS[name]
    recorded = {f.path: f for f in Run(run_dir).manifest.files}
    zipped = {p for p in recorded if p.endswith((".prom", "engine.log"))}
    problems = verify_run(run_dir)
    assert {p.path for p in problems if p.kind == "missing"} == zipped | LEFT_OUT[name]
    assert {p.path for p in problems if p.kind == "unrecorded"} == {f"{p}.gz" for p in zipped}
    assert {p.kind for p in problems} == {"missing", "unrecorded"}
    for p in zipped:  # gunzip gives back exactly the recorded bytes
        data = gzip.decompress((run_dir / f"{p}.gz").read_bytes())
        assert (len(data), hashlib.sha256(data).hexdigest()) == (recorded[p].bytes, recorded[p].sha256), p


def test_the_partial_records_steps_and_the_report_says_no_claim():
    one, two = record("cap-1"), record("cap-2")
    rows = lambda r: [(s["rate"], s["phase"], s["decision"]) for s in r["steps"]]  # noqa: E731
    assert rows(one) == [(64.0, "explore", ""), (128.0, "explore", ""), (256.0, "explore", ""),
                         (181.02, "explore", ""), (215.27, "explore", ""), (234.75, "explore", ""),
                         (224.8, "explore", ""), (160.8, "certify", "pass"), (183.78, "certify", "pass"),
                         (197.56, "certify", "fail"), (211.34, "certify", "undecided")]
    assert rows(two) == [(180.0, "explore", ""), (225.0, "explore", ""), (281.25, "explore", ""),
                         (251.56, "explore", ""), (265.99, "explore", ""), (191.46, "certify", "fail"),
                         (218.81, "certify", "fail"), (235.22, "certify", "fail"), (251.63, "certify", "fail"),
                         (262.57, "certify", "fail")]
    assert one["explore_bracket"] == [224.8, 234.75] and two["explore_bracket"] == [265.99, 281.25]
    assert (one["open_step"]["rate"], one["open_step"]["running"]) == (220.53, "short-at220p53")
    assert (two["open_step"]["rate"], two["open_step"]["running"]) == (273.51, "short-at273p51")
    for r, n_cert in ((one, 4), (two, 5)):
        assert r["complete"] is False and r["certified_rate"] is None and "interval_low" not in r
        assert r["claim"].startswith(f"no claim: the search stopped after {n_cert} of 10 planned certification steps")
        assert r["judged"] == ["ttft_ms", "tpot_ms", "e2e_ms"] and not r["unmeasured"]  # TTFT/TPOT from the spans
        assert headline(r).startswith("**Incomplete: no claim.**") and "incomplete: no claim" in front_line(r)
        assert step_table(r).shape[0] == len(r["steps"])
    by_rate = {s["rate"]: s for s in one["steps"] + two["steps"]}
    assert (by_rate[211.34]["n e2e_ms"], by_rate[211.34]["t e2e_ms"]) == (3970, 0)  # undecided with 0 violations
    assert (by_rate[262.57]["n ttft_ms"], by_rate[262.57]["t ttft_ms"]) == (793, 236)


@pytest.mark.parametrize("name, cell_id, grows, growth", [
    ("cap-1", "short-at197p56", True, "+77.9"),   # certification: fails on the backlog test alone
    ("cap-1", "short-at215p27", False, "-23.8"),  # exploration at a higher rate: keeps up
    ("cap-2", "short-at191p46", True, "+107.2"),  # cap-2's lowest certification step
])
def test_backlog_verdicts_re_judged_from_the_raw_files_with_no_queue_at_the_server(name, cell_id, grows, growth):
    run = Run(RUNS[name])
    cell = run.manifest.cell(cell_id)
    seg = read_segment(run.dir, run.run_id, cell, 5.0)
    assert seg.rose is grows and f"({growth} requests over " in seg.backlog_note
    rows = next(s for s in record(name)["steps"] if cell_id in s["cells"])  # as recorded by the one-window rule
    assert f"({growth} requests over the window" in rows["backlog"]
    lo, hi = seg.window["start_ts"].min(), seg.window["start_ts"].max()
    spans = read_spans(run.dir / "cells" / cell_id / "spans.otlp.jsonl.gz")
    spans = spans[(spans["name"] == "llm_request") & spans["request_id"].isin(
        read_k6(run.dir / "cells" / cell_id / "k6.ndjson.gz").query("start_ts >= @lo")["request_id"])]
    assert len(spans) >= len(seg.window) and spans["queue_ms"].max() < 1.0  # no request waited in vLLM's queue
    m = pd.read_csv(D / "readings" / "metrics-waiting-running.csv", parse_dates=["ts"])
    w = m[(m["run"] == name) & (m["family"] == "vllm:num_requests_waiting") & (m["ts"] >= lo) & (m["ts"] <= hi)]
    assert len(w) >= 3 and w["value"].max() == 0  # nor did /metrics see one waiting


@pytest.mark.parametrize("name, cell_id, failed", [("cap-1", "short-at256", 24), ("cap-2", "short-at281p25", 2)])
def test_the_status_0_requests_met_a_connection_idle_at_the_servers_keep_alive_limit(name, cell_id, failed):
    """k6 hands its 1,500 pre-allocated VUs out first in, first out: the VU of iteration j is
    the (j - 1500)-th to come back. Every request whose VU sat idle under 5.0 s reused its
    connection, none over 5.1 s did, and every reset (status 0, k6 1220) sat 5.0-5.1 s."""
    req = read_k6(RUNS[name] / "cells" / cell_id / "k6.ndjson.gz")
    m = req[req["phase"] == "measure"].copy()
    m["it"] = m["request_id"].str.rsplit(".m", n=1).str[1].astype(int)
    m = m.sort_values("it").reset_index(drop=True)
    ends = np.sort(m["end_ts"].to_numpy())
    j = m[m["it"] >= 1500].copy()
    j["idle"] = (j["start_ts"].to_numpy() - ends[(j["it"] - 1500).to_numpy()]) / np.timedelta64(1, "s")
    bad = j[~j["ok"]]
    assert len(bad) == failed == int((~req["ok"]).sum()) and set(bad["error_code"].astype(str)) == {"1220"}
    assert (bad["connecting_ms"] == 0).all() and bad["idle"].between(5.0, 5.1).all()
    assert (j.loc[j["idle"] > 5.1, "connecting_ms"] > 0).all()
    assert (j.loc[j["idle"] <= 5.0, "connecting_ms"] == 0).mean() > 0.98


def test_re_judged_by_the_step_backlog_rule_the_records_stop_before_the_one_window_verdicts():
    """The rule now (a step's backlog grows only on three rising looks in a row) re-judges the
    same cells: cap-1's exploration at 234.75 req/s, over on one rising window then, is under,
    so its plan explores 245.14 next, which the record never ran; cap-2's first certification
    step, 191.46 req/s, failed then on its one rising look, now needs a second look, which the
    record does not hold. Neither record reaches a certification verdict under the rule now: a
    new search is needed (the device budget of the session that changed the rule was spent)."""
    one, two = (rejudged_record(Run(RUNS[n])) for n in ("cap-1", "cap-2"))
    assert [s["rate"] for s in one["steps"]] == [64.0, 128.0, 256.0, 181.02, 215.27, 234.75]
    assert "rose in the last 1 of the 3 looks" in one["steps"][-1]["backlog"]
    assert one["explore_bracket"] == [234.75, 256.0] and one["open_step"]["rate"] == 245.14
    assert "running" not in one["open_step"]  # the cut cell (220.53) is not a look of that step
    assert [s["rate"] for s in two["steps"]] == [180.0, 225.0, 281.25, 251.56, 265.99]
    assert (two["open_step"]["rate"], two["open_step"]["looks_done"]) == (191.46, 1)
    for r in (one, two):
        assert r["complete"] is False and r["certified_rate"] is None
