"""Joules per successful output token and per good request, by hand-computed examples: the
counter interpolated at the window's ends, integrated power where a GPU has no counter, partial
coverage scaled or refused, and the A/B interval over repeats."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from inferlab.analysis.energy import (COUNTER, POWER, compare_energy_repeats, energy_table, gpu_window_energy,
                                      window_energy)
from inferlab.analysis.token_slo import slo_bounds

T0 = pd.Timestamp("2026-12-04T08:00:00Z")


def at(s: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(seconds=s)


def samples(times, gpu="0", energy_w=None, power_w=None, energy_start=1000.0, cell="c") -> pd.DataFrame:
    """Readings of one GPU: a counter rising at ``energy_w`` (None: no counter), power ``power_w``."""
    t = np.asarray(times, float)
    return pd.DataFrame({"ts": [at(x) for x in t], "gpu": gpu,
                         "energy_j": energy_start + energy_w * t if energy_w is not None else np.nan,
                         "power_w": power_w if power_w is not None else np.nan, "source": "nvml", "cell_id": cell})


def test_counter_interpolated_at_the_window_ends():
    s = samples(np.arange(0, 10.5, 1.0), energy_w=200.0)
    e = gpu_window_energy(s, at(1.25), at(8.75))  # between readings: interpolated
    assert e == {"energy_j": pytest.approx(200 * 7.5), "method": COUNTER, "coverage": 1.0}


def test_integrated_power_without_a_counter_and_when_the_counter_went_down():
    s = samples(np.arange(0, 10.5, 0.5), power_w=np.where(np.arange(0, 10.5, 0.5) < 5, 100.0, 300.0))
    e = gpu_window_energy(s, at(4.0), at(6.0))
    # 100 W to 4.5 s, a linear step to 300 W at 5.0, 300 W after: 50 + 100 + 300 = 450 J
    assert e["method"] == POWER and e["energy_j"] == pytest.approx(450.0)
    reset = samples(np.arange(0, 10.5, 1.0), energy_w=200.0, power_w=210.0)
    reset.loc[reset["ts"] >= at(5), "energy_j"] -= 5000  # driver reloaded: counter restarts lower
    e = gpu_window_energy(reset, at(2), at(8))
    assert e["method"] == POWER and e["energy_j"] == pytest.approx(210 * 6)


def test_partial_coverage_is_scaled_and_too_little_is_no_figure():
    s = samples(np.arange(2, 10.5, 1.0), energy_w=200.0)
    e = gpu_window_energy(s, at(1), at(9))  # readings cover 2..9 of 1..9: 7/8
    assert e["coverage"] == pytest.approx(7 / 8) and e["energy_j"] == pytest.approx(1400 * 8 / 7)
    e = gpu_window_energy(samples(np.arange(5, 10.5, 1.0), energy_w=200.0), at(1), at(9))
    assert np.isnan(e["energy_j"]) and e["coverage"] == pytest.approx(0.5)


def test_gpus_are_summed_and_can_be_chosen():
    s = pd.concat([samples(np.arange(0, 11.0), "0", energy_w=200.0), samples(np.arange(0, 11.0), "1", power_w=50.0)])
    e = window_energy(s, at(1), at(9))
    assert e["energy_j"] == pytest.approx(1600 + 400) and e["mean_power_w"] == pytest.approx(250)
    assert e["gpus"] == 2 and e["method"] == f"{COUNTER} + {POWER}"
    assert window_energy(s, at(1), at(9), gpus=["1"])["energy_j"] == pytest.approx(400)


def _cell(ttft_ms: list[float], ok: list[bool]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """9 open-loop requests started at 1..9 s, 0.5 s each, 64 output tokens from the span."""
    n = len(ok)
    starts = [at(1 + i) for i in range(n)]
    req = pd.DataFrame({"cell_id": "c", "payload": "short", "start_ts": starts,
                        "end_ts": [s + pd.Timedelta(seconds=0.5) for s in starts], "ok": ok, "duration_ms": 500.0})
    timings = pd.DataFrame({"ok": ok, "ttft_ms": ttft_ms, "tpot_ms": 5.0, "e2e_ms": 500.0, "output_tokens": 64.0,
                            "output_tokens_source": pd.array(["server span"] * n, dtype="string")})
    return req, timings


def test_joules_per_token_and_per_good_request_by_hand():
    ok = [True] * 9
    ok[3] = False  # failed: neither its tokens nor a good request
    ttft = [100.0] * 9
    ttft[1] = ttft[5] = 800.0  # over the 500 ms TTFT bound: ok but not good
    req, timings = _cell(ttft, ok)
    s = pd.concat([samples(np.arange(0, 11.0), "0", energy_w=200.0), samples(np.arange(0, 11.0), "1", power_w=50.0)])
    bounds = slo_bounds({"ttft_ms": 500, "tpot_ms": 50, "e2e_ms": 2000})
    out = energy_table(req, timings, s, [("c", "short", "constant-arrival-rate", None)], {}, bounds, "run")
    r = out.iloc[0]
    # window: first start 1 s .. last start 9 s (8 s); ended inside (1, 9]: the 8 requests started
    # at 1..8 s, one failed -> 7 ok, 448 tokens; 2 of them over the TTFT bound -> 5 good
    assert (r["window_s"], r["ok_requests"], r["output_tokens"], r["good_requests"]) == (8.0, 7, 448.0, 5)
    assert r["energy_j"] == pytest.approx(2000.0) and r["mean_power_w"] == pytest.approx(250.0)
    assert r["j_per_token"] == pytest.approx(2000 / 448) and r["j_per_good_request"] == pytest.approx(400.0)
    assert r["tokens_per_s"] == pytest.approx(56.0) and r["tokens_source"] == "server span"


def test_payload_length_fills_missing_token_counts_only_with_ignore_eos():
    req, timings = _cell([100.0] * 9, [True] * 9)
    timings["output_tokens"], timings["output_tokens_source"] = np.nan, pd.array([pd.NA] * 9, dtype="string")
    s = samples(np.arange(0, 11.0), energy_w=100.0)
    cells = [("c", "short", "constant-arrival-rate", None)]
    bounds = slo_bounds({})
    r = energy_table(req, timings, s, cells, {"short": {"max_tokens": 64, "ignore_eos": True}}, bounds).iloc[0]
    assert r["output_tokens"] == 8 * 64 and r["tokens_source"] == "payload max_tokens (ignore_eos)"
    r = energy_table(req, timings, s, cells, {"short": {"max_tokens": 64, "ignore_eos": False}}, bounds).iloc[0]
    assert np.isnan(r["output_tokens"]) and np.isnan(r["j_per_token"])  # unknown lengths: no figure, no guess


def test_ab_interval_over_repeats():
    base = pd.DataFrame({"run_id": ["a1", "a2", "a3"], "cell": "short-c1", "j_per_token": [1.0, 1.1, 0.9],
                         "j_per_good_request": [60.0, 66.0, 54.0]})
    tuned = base.assign(run_id=["b1", "b2", "b3"], j_per_token=base["j_per_token"] * 0.5,
                        j_per_good_request=base["j_per_good_request"] * 0.5)
    out = compare_energy_repeats(base, tuned).set_index("metric")
    for m in ("j_per_token", "j_per_good_request"):
        assert out.loc[m, "ratio"] == pytest.approx(0.5) and out.loc[m, "n_baseline"] == 3
        assert out.loc[m, "ci_low"] < 0.5 < out.loc[m, "ci_high"] < 1.0
    one = compare_energy_repeats(base.iloc[:1], tuned.iloc[:1])
    assert np.isnan(one["ci_low"]).all()  # one repeat a side: a ratio, no interval


def test_a_run_recorded_before_energy_files_gets_integrated_power_from_its_telemetry():
    """The shipped H200 sample (nvidia-smi's 1 s power log, no energy files): each cell's mean
    power is what the log says over the cell's window, and the method says it was integrated."""
    import inferlab
    from inferlab.analysis.energy import cell_energy, energy_samples

    run = inferlab.load_run("20261126T210231Z-url-h200-baseline-eager")
    s = energy_samples(run)
    assert set(s["source"]) == {"nvidia-smi power"} and s["energy_j"].isna().all()
    ce = cell_energy(run).set_index("cell_id")
    r = ce.loc["short-c1"]
    assert r["method"] == POWER and r["coverage"] == 1.0 and r["window_s"] > 20
    cell = next(c for c in run.manifest.cells if c.cell_id == "short-c1")
    req = run.requests[(run.requests["cell_id"] == "short-c1") & (run.requests["phase"] == "measure")]
    from inferlab.analysis.window import steady_window

    t0, t1 = steady_window(req, cell.executor, cell.vus)
    inside = s[(s["ts"] >= t0) & (s["ts"] <= t1)]["power_w"]
    assert r["mean_power_w"] == pytest.approx(inside.mean(), rel=0.03)
    assert r["j_per_token"] == pytest.approx(r["energy_j"] / (r["ok_requests"] * 64))  # ignore_eos, 64 tokens


def test_cell_metrics_for_the_comparison_table():
    import inferlab
    from inferlab.analysis.energy import cell_energy, energy_cell_metrics

    run = inferlab.load_run("20261126T205944Z-url-h200-tuned-cudagraphs")
    m = energy_cell_metrics(run)
    ce = cell_energy(run).set_index("cell_id")
    assert set(m) == set(ce.index) and m["short-c1"]["j_per_token"] == ce.loc["short-c1", "j_per_token"]
