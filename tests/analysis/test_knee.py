import pandas as pd
import pytest

import inferlab
from inferlab.analysis.knee import find_knee, ramp_windows


def windows(achieved, target, p95):
    df = pd.DataFrame({"window": range(len(achieved)), "achieved_rps": achieved, "target_rps": target,
                       "latency_p95_ms": p95, "error_rate": 0.0})
    df["breaks_slo"] = (df["latency_p95_ms"] > 1000) | (df["achieved_rps"] < 0.9 * df["target_rps"])
    return df


def test_knee_is_the_best_rate_before_the_first_break():
    k = find_knee(windows([10, 20, 30, 31, 29], [10, 20, 30, 40, 50], [100, 120, 200, 900, 3000]))
    assert k == {"knee_rps": 30.0, "first_break_window": 3, "reason": ""}


def test_knee_edges_say_what_to_change():
    assert "ramp higher" in find_knee(windows([10, 20], [10, 20], [100, 100]))["reason"]
    assert "start the ramp lower" in find_knee(windows([5, 6], [10, 20], [100, 100]))["reason"]


def test_sample_stress_knee_golden(workspace):
    # H200 reference ramp 20 -> 600 req/s over 120 s passes the knee at roughly 350-425 req/s
    run = inferlab.load_run("20261126T214243Z-url-h200-stress")
    ramp = next(c.cell_id for c in run.manifest.cells if c.executor == "ramping-arrival-rate")
    w = ramp_windows(run, ramp, 10.0, 10000, 0.01)
    assert w["t_start_s"].max() < run.manifest.cell(ramp).duration_s  # no post-ramp straggler window
    k = find_knee(w)
    assert 350 <= k["knee_rps"] <= 450 and k["first_break_window"] is not None
    assert w["dropped_iterations"].sum() > 0
    assert k["knee_rps"] == pytest.approx(w.loc[: k["first_break_window"] - 1, "achieved_rps"].max())


def test_reports_judge_a_ramp_by_the_runs_own_slo(workspace):
    from inferlab.analysis.knee import knee_sentence, run_slo

    run = inferlab.load_run("20261126T214243Z-url-h200-stress")  # imported: its spec has no SLO
    assert run_slo(run) == (2000.0, 0.01) and run_slo(run, 5000.0) == (5000.0, 0.01)
    gpu = inferlab.load_run("20261126T232956Z-url-h200-smollm2-inferlab")  # made by inferlab: spec SLO
    assert run_slo(gpu) == (10000.0, 0.01)
    w = ramp_windows(run, "short-rate20to600", 10.0, *run_slo(run))
    text = knee_sentence(find_knee(w), w, *run_slo(run))
    assert text.startswith("Knee: **425.") and "First break at 70 s" in text and "p95 4299 ms" in text


def test_analyze_ramp_is_the_report_section_in_one_call(workspace):
    from inferlab.analysis.knee import analyze_ramp, run_slo

    run = inferlab.load_run("20261126T214243Z-url-h200-stress")
    ramp = analyze_ramp(run, 10.0)
    assert ramp.cell_id == "short-rate20to600"
    assert (ramp.slo_p95_ms, ramp.slo_error_rate) == run_slo(run)
    w = ramp_windows(run, "short-rate20to600", 10.0, *run_slo(run))
    pd.testing.assert_frame_equal(ramp.windows, w)
    assert ramp.knee == find_knee(w)
    assert ramp.sentence.startswith("Knee: **425.")
    assert analyze_ramp(run, 10.0, 100.0).slo_p95_ms == 100.0  # an explicit SLO wins


def test_a_run_without_a_ramp_needs_no_branch(workspace):
    from inferlab.analysis.knee import analyze_ramp, ramp_cells
    from inferlab.report import plots, sections

    run = inferlab.load_run("20261126T205944Z-url-h200-tuned-cudagraphs")
    assert ramp_cells(run) == []
    ramp = analyze_ramp(run)
    assert ramp.cell_id is None and ramp.windows.empty and ramp.sentence == "No ramp cell in this run."
    assert sections.knee_md(ramp).data == "No ramp cell in this run."
    assert sections.ramp_table(ramp) == "no ramp cell in this run"
    assert plots.ramp_knee(ramp) is None


def test_closed_loop_and_dropped_iterations(workspace):
    from inferlab.analysis.knee import analyze_ramp, closed_loop, dropped_iterations
    from inferlab.analysis.summary import cell_summary

    run = inferlab.load_run("20261126T214243Z-url-h200-stress")
    cells = cell_summary(run)
    closed = closed_loop(cells)
    assert "short-rate20to600" in set(cells["cell_id"]) and "short-rate20to600" not in set(closed["cell_id"])
    assert (closed["executor"] == "shared-iterations").all() and len(closed) == len(cells) - 1
    dropped = dropped_iterations(run).set_index("cell_id")["dropped_iterations"]
    assert dropped["short-rate20to600"] == 2974  # k6's own count (tests/ingest/test_k6.py)
    assert dropped.sum() == analyze_ramp(run).windows["dropped_iterations"].sum()  # the windows lose none
