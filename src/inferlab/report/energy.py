"""Report section: GPU power and energy per token beside throughput (analysis/energy.py).

Per run (:func:`section`): one table per cell (window, GPUs, method, energy, mean power, tokens/s,
J per output token, J per good request) and one figure of three panels per cell: throughput
(output tokens/s), mean GPU power (W) and J per output token, so a configuration that buys
throughput with power shows both. Per comparison (:func:`comparison`): the tuned / baseline ratio
of J/token and J/good request per cell with its interval over repeats. A run without readings
gets one sentence saying where they come from. Contract: report/sections.py (returns, never
displays).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown

from ..analysis.energy import MIN_COVERAGE, cell_energy, compare_energy
from ..runs.reader import Run
from .plots import _done, use_theme
from .sections import Section, show

NONE = ("No GPU energy in {these}: it is read per cell from NVML on the GPU host (`cells/<cell>/energy.csv`, "
        "any local or url run there) or, on Kubernetes, from DCGM's energy and power series through "
        "`--prometheus-url`.")
METHOD = ("Energy over each cell's steady window (the window throughput is measured in), summed over the GPUs "
          "sampled: NVML's / DCGM's energy counter interpolated at the window's ends, else power integrated "
          f"over time; readings covering less than {MIN_COVERAGE:.0%} of the window give no figure. "
          "J/token: per output token of the successful requests that ended in the window; J/good request: per "
          "request that also met the spec's TTFT, TPOT and e2e bounds.")
COLUMNS = {"cell_id": "cell", "window_s": "window (s)", "gpus": "GPUs", "method": "method", "energy_j": "energy (J)",
           "mean_power_w": "mean power (W)", "tokens_per_s": "tokens/s", "j_per_token": "J/token",
           "good_requests": "good requests", "j_per_good_request": "J/good request", "tokens_source": "tokens from"}


def table(energy: pd.DataFrame):
    """The per-cell energy table (analysis.energy.cell_energy's columns, renamed)."""
    return show(energy[list(COLUMNS)].rename(columns=COLUMNS), precision=3)


def plot(energy: pd.DataFrame):
    """Throughput, mean power and J per token per cell, side by side."""
    use_theme()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), sharey=True)
    cells = energy["cell_id"].tolist()
    for ax, (col, label) in zip(axes, (("tokens_per_s", "output tokens/s"), ("mean_power_w", "mean GPU power (W)"),
                                       ("j_per_token", "J per output token"))):
        ax.barh(cells, energy[col])
        ax.set_xlabel(label)
    axes[0].invert_yaxis()
    return _done(fig, "Throughput, power and energy per token, per cell")


def section(run: Run) -> Section:
    """The whole energy section of a run, or one sentence when it has no readings."""
    energy = cell_energy(run)
    if energy.empty:
        return Section(Markdown(NONE.format(these="this run")))
    return Section(Markdown(METHOD), table(energy), plot(energy))


def comparison(baseline: Sequence[Run], tuned: Sequence[Run], level: float = 0.95) -> Section:
    """J/token and J/good request, tuned / baseline per cell with their intervals over repeats."""
    res = compare_energy(baseline, tuned, level)
    if res.empty:
        return Section(Markdown(NONE.format(these="these runs")))
    shown = res.assign(interval=[f"[{lo:.3f}, {hi:.3f}]" for lo, hi in zip(res["ci_low"], res["ci_high"])])
    return Section(Markdown(f"Lower is better. Each run is one repeat; ratio of geometric means with a "
                            f"{level:.0%} interval ({res['method'].iloc[0]}). " + METHOD),
                   show(shown[["cell", "metric", "n_baseline", "n_tuned", "baseline", "tuned", "ratio", "interval",
                               "p_value", "note"]], precision=3))
