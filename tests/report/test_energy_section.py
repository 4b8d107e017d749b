"""The energy section shows power and J/token beside throughput, and says where readings come
from when a run has none (the shipped CPU sample has none)."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

import inferlab
from inferlab.report import energy


def test_a_run_without_readings_gets_one_sentence():
    run = inferlab.load_run("20261127T073618Z-local-aa-local-a")  # the CPU engine: no GPU at all
    out = energy.section(run)
    assert len(out) == 1 and "NVML" in out.parts[0].data and "DCGM" in out.parts[0].data


def test_table_and_three_panels(monkeypatch):
    rows = pd.DataFrame({"run_id": "r", "cell_id": ["short-c1", "short-c64"], "payload": "short",
                         "executor": "shared-iterations", "window_s": [20.0, 10.0], "gpus": 1, "method": "energy counter",
                         "coverage": 1.0, "energy_j": [2000.0, 3000.0], "mean_power_w": [100.0, 300.0],
                         "ok_requests": [40, 380], "output_tokens": [2560.0, 24320.0], "tokens_source": "server span",
                         "good_requests": [40, 370], "tokens_per_s": [128.0, 2432.0], "j_per_token": [0.78, 0.12],
                         "j_per_good_request": [50.0, 8.1]})
    monkeypatch.setattr(energy, "cell_energy", lambda run: rows)
    out = energy.section(object())
    assert len(out) == 3 and isinstance(out.parts[2], Figure)
    assert [ax.get_xlabel() for ax in out.parts[2].axes] == ["output tokens/s", "mean GPU power (W)", "J per output token"]
    shown = out.parts[1].data
    assert list(shown["J/token"]) == [0.78, 0.12] and list(shown["mean power (W)"]) == [100.0, 300.0]
