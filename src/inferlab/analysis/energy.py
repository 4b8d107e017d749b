"""Energy per successful output token and per good request, per cell, with intervals over repeats.

Per cell (:func:`cell_energy`), over the cell's steady window ``[t0, t1]`` (analysis.window: the
window throughput is measured in, so J/token and tokens/s describe the same seconds):

- ``energy_j``: the GPUs' energy in the window (:func:`energy_samples` says from which witness),
  summed over every GPU sampled (the machine's
  GPU energy: on a host where other GPUs idle beside the engine's, they count; pass ``gpus`` to
  keep some). Per GPU, from the energy **counter** where every reading has one (NVML's
  ``nvmlDeviceGetTotalEnergyConsumption``, DCGM's ``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION``),
  linearly interpolated at t0 and t1; else (no counter, or it went down) the **integrated
  power** (trapezoids, power interpolated at the ends). Readings that cover only part of the
  window (a 15 s DCGM scrape) give the covered part's mean power x the window, with
  ``coverage`` < 1; below :data:`MIN_COVERAGE` the cell has no energy (NaN), never a guess.
- ``output_tokens``: output tokens of the successful requests that ended in ``(t0, t1]`` (the
  requests throughput counts): the server span's ``completion_tokens``, else the stream
  clock's, else the payload's ``max_tokens`` where it sets ``ignore_eos`` (``tokens_source``).
- ``good_requests``: of those, the ones that meet the spec's token SLO
  (analysis.token_slo.meets_slo: TTFT, TPOT and e2e bounds that the run measured).
- ``j_per_token`` = energy_j / output_tokens, ``j_per_good_request`` = energy_j / good_requests
  (NaN where the denominator is 0), ``mean_power_w`` = energy_j / window_s.

Across repeats (:func:`compare_energy`): each run is one repeat (its ``-r<n>`` cells folded by
geometric mean, as analysis/compare.py does), tuned / baseline ratio of geometric means with
the same interval as every comparison metric (stats.ratio_interval: Welch t on the logs).
Lower is better for both metrics. To carry them as secondary metrics of every comparison,
analysis/compare.py merges :data:`LOWER_IS_BETTER` into its own and adds
:func:`energy_cell_metrics` to each cell's row in ``repeat_table``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..ingest.energy import dcgm_energy_samples
from ..runs.layout import base_cell
from ..runs.reader import Run
from . import stats
from .summary import measured
from .token_slo import meets_slo, run_request_timings, slo_bounds
from .window import steady_window

MIN_COVERAGE = 0.8  # share of the window the readings must span for an energy figure
METRICS = ("j_per_token", "j_per_good_request")
LOWER_IS_BETTER = {m: True for m in METRICS}
COUNTER, POWER = "energy counter", "integrated power"


def _seconds(ts: pd.Series | pd.Timestamp, origin: pd.Timestamp) -> np.ndarray:
    return np.asarray((pd.to_datetime(ts, utc=True) - origin) / pd.Timedelta(seconds=1), dtype=float)


def gpu_window_energy(samples: pd.DataFrame, t0: pd.Timestamp, t1: pd.Timestamp) -> dict:
    """One GPU's readings (ts, energy_j, power_w) -> energy_j, method, coverage over [t0, t1]."""
    s = samples.sort_values("ts")
    span = (t1 - t0).total_seconds()
    nan = {"energy_j": np.nan, "method": "", "coverage": 0.0}
    if span <= 0 or s.empty:
        return nan
    x = _seconds(s["ts"], t0)
    lo, hi = max(x.min(), 0.0), min(x.max(), span)
    coverage = max(hi - lo, 0.0) / span
    if coverage < MIN_COVERAGE:
        return {**nan, "coverage": coverage}
    e = s["energy_j"].to_numpy(float)
    if np.isfinite(e).all() and len(e) >= 2 and (np.diff(e) >= 0).all():
        energy, method = float(np.interp(hi, x, e) - np.interp(lo, x, e)), COUNTER
    else:
        ok = np.isfinite(s["power_w"].to_numpy(float))
        if ok.sum() < 2:
            return {**nan, "coverage": coverage}
        px, pw = x[ok], s["power_w"].to_numpy(float)[ok]
        inside = (px > lo) & (px < hi)
        grid = np.concatenate([[lo], px[inside], [hi]])
        energy, method = float(np.trapezoid(np.interp(grid, px, pw), grid)), POWER
    # readings that span only part of the window: that part's mean power over the whole window
    covered = (hi - lo)
    return {"energy_j": energy * span / covered if covered > 0 else np.nan, "method": method, "coverage": coverage}


def window_energy(samples: pd.DataFrame, t0: pd.Timestamp, t1: pd.Timestamp,
                  gpus: Sequence[str] | None = None) -> dict:
    """Every GPU's energy over [t0, t1], summed: energy_j, mean_power_w, gpus (how many),
    method (counter / integrated power / both, per GPU) and the lowest coverage. NaN energy
    when any GPU's readings cover too little of the window."""
    sel = samples if gpus is None else samples[samples["gpu"].astype(str).isin([str(g) for g in gpus])]
    per = {g: gpu_window_energy(d, t0, t1) for g, d in sel.groupby("gpu", sort=True)}
    span = (t1 - t0).total_seconds()
    if not per or span <= 0:
        return {"energy_j": np.nan, "mean_power_w": np.nan, "gpus": len(per), "method": "", "coverage": 0.0}
    energy = float(sum(v["energy_j"] for v in per.values()))  # NaN if any GPU has none
    methods = sorted({v["method"] for v in per.values() if v["method"]})
    return {"energy_j": energy, "mean_power_w": energy / span, "gpus": len(per), "method": " + ".join(methods),
            "coverage": float(min(v["coverage"] for v in per.values()))}


def energy_samples(run: Run) -> pd.DataFrame:
    """The run's GPU energy readings, one source per run, the most exact first: the cells' NVML
    files (counter), else a cluster Prometheus' DCGM series (counter and power), else the run's
    power telemetry (``run.gpu``'s ``power_draw_w``: NVML's sampler where it ran, else nvidia-smi's
    1 s log; integrated, so runs recorded before the energy files still get a figure)."""
    nvml = run.energy
    if not nvml.empty:
        return nvml
    dcgm = dcgm_energy_samples(run.series_raw)
    if not dcgm.empty:
        return dcgm
    return power_samples(run.gpu)


def power_samples(gpu: pd.DataFrame) -> pd.DataFrame:
    """``power_draw_w`` rows of a run's ``gpu`` table (one source: NVML's sampler where present,
    else nvidia-smi's, never both summed) in ingest.energy's columns, without a counter."""
    cols = ["ts", "gpu", "energy_j", "power_w", "source"]
    if gpu.empty or "metric" not in gpu.columns:
        return pd.DataFrame(columns=cols)
    p = gpu[gpu["metric"] == "power_draw_w"]
    if p.empty:
        return pd.DataFrame(columns=cols)
    source = "nvml" if (p["source"] == "nvml").any() else p["source"].iloc[0]
    p = p[p["source"] == source]
    return pd.DataFrame({"ts": pd.to_datetime(p["ts"], utc=True), "gpu": p["gpu_index"].astype(str),
                         "energy_j": np.nan, "power_w": pd.to_numeric(p["value"], errors="coerce"),
                         "source": f"{source} power"}).sort_values(["gpu", "ts"], ignore_index=True)


def _tokens(timings: pd.DataFrame, req: pd.DataFrame, payloads: dict) -> tuple[pd.Series, pd.Series]:
    """Output tokens per request and where each came from (span/stream, else the payload's
    max_tokens where ignore_eos makes every answer that long)."""
    tok = timings["output_tokens"].astype(float).copy()
    src = timings["output_tokens_source"].astype("string").copy()
    for payload, cfg in payloads.items():
        if cfg.get("ignore_eos") and cfg.get("max_tokens"):
            fill = tok.isna() & (req["payload"] == payload).to_numpy()
            tok[fill], src[fill] = float(cfg["max_tokens"]), "payload max_tokens (ignore_eos)"
    return tok, src


CELL_COLUMNS = ["run_id", "cell_id", "payload", "executor", "window_s", "gpus", "method", "coverage", "energy_j",
                "mean_power_w", "ok_requests", "output_tokens", "tokens_source", "good_requests", "tokens_per_s",
                "j_per_token", "j_per_good_request"]


def cell_energy(run: Run, gpus: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per cell with GPU readings (:data:`CELL_COLUMNS`, the module docstring's
    figures). Empty (with the columns) for a run without energy readings."""
    samples = energy_samples(run)
    req = measured(run)
    if samples.empty or req.empty:
        return pd.DataFrame(columns=CELL_COLUMNS)
    req = req.reset_index(drop=True)
    timings = run_request_timings(run)  # measured rows in run.requests' order, as req
    return energy_table(req, timings, samples, [(c.cell_id, c.payload, c.executor, c.vus) for c in run.manifest.cells],
                        run.manifest.spec.get("payloads", {}), slo_bounds(run.manifest.spec.get("slo") or {}),
                        run.run_id, gpus)


def energy_table(req: pd.DataFrame, timings: pd.DataFrame, samples: pd.DataFrame, cells: Sequence[tuple],
                 payloads: dict, bounds, run_id: str = "", gpus: Sequence[str] | None = None) -> pd.DataFrame:
    """:func:`cell_energy` on tables: ``req`` the measured k6 rows (start_ts, end_ts, ok,
    cell_id, payload; index 0..n-1), ``timings`` analysis.token_slo.request_timings of them (same
    order), ``samples`` ingest.energy's columns (with ``cell_id`` when per cell: NVML),
    ``cells`` (cell_id, payload, executor, vus) in order, the spec's ``payloads`` and SLO bounds."""
    tokens, token_src = _tokens(timings, req, payloads)
    good = meets_slo(timings, bounds).to_numpy()
    rows = []
    for cell_id, payload, executor, vus in cells:
        at = (req["cell_id"] == cell_id).to_numpy()
        # NVML: the cell's own file; DCGM: the run window's series, cut to the cell below
        cell_samples = samples[samples["cell_id"] == cell_id] if "cell_id" in samples.columns else samples
        if not at.any() or cell_samples.empty:
            continue
        t0, t1 = steady_window(req[at], executor, vus)
        done = at & (req["end_ts"] > t0).to_numpy() & (req["end_ts"] <= t1).to_numpy() & req["ok"].to_numpy(bool)
        e = window_energy(cell_samples, t0, t1, gpus)
        n_tok = float(tokens[done].sum()) if done.any() and tokens[done].notna().all() else np.nan
        n_good = int(good[done].sum())
        span = (t1 - t0).total_seconds()
        rows.append({"run_id": run_id, "cell_id": cell_id, "payload": payload, "executor": executor,
                     "window_s": span, **e, "ok_requests": int(done.sum()), "output_tokens": n_tok,
                     "tokens_source": ", ".join(sorted(set(token_src[done].dropna()))) or "none",
                     "good_requests": n_good, "tokens_per_s": n_tok / span if span > 0 else np.nan,
                     "j_per_token": e["energy_j"] / n_tok if n_tok else np.nan,
                     "j_per_good_request": e["energy_j"] / n_good if n_good else np.nan})
    return pd.DataFrame(rows, columns=CELL_COLUMNS)


def energy_cell_metrics(run: Run) -> dict[str, dict[str, float]]:
    """``{cell_id: {"j_per_token": .., "j_per_good_request": ..}}`` for every cell with a figure:
    what analysis/compare.py's repeat_table adds to each cell's row (its ``-r<n>`` folding and
    the interval then treat them as any metric in LOWER_IS_BETTER)."""
    ce = cell_energy(run)
    return {r["cell_id"]: {m: float(r[m]) for m in METRICS} for _, r in ce.iterrows()}


def energy_repeat_metrics(run: Run) -> pd.DataFrame:
    """One row per (run, base cell): j_per_token and j_per_good_request, a run's ``-r<n>`` cells
    folded by geometric mean (a run is one repeat). Columns: run_id, cell, and the metrics;
    merge on (run_id, cell) into analysis/compare.py's repeat table."""

    ce = cell_energy(run)
    if ce.empty:
        return pd.DataFrame(columns=["run_id", "cell", *METRICS])
    ce = ce.assign(cell=ce["cell_id"].map(base_cell))
    return ce.groupby(["run_id", "cell"], sort=False)[list(METRICS)].agg(stats.geometric_mean).reset_index()


def compare_energy(baseline: Sequence[Run], tuned: Sequence[Run], level: float = 0.95,
                   method: str = "auto") -> pd.DataFrame:
    """Per cell x metric, tuned vs baseline over their runs (each run one repeat):
    :func:`compare_energy_repeats` of their :func:`energy_repeat_metrics`."""
    def reps(runs: Sequence[Run]) -> pd.DataFrame:
        frames = [energy_repeat_metrics(r) for r in runs]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["run_id", "cell", *METRICS])

    return compare_energy_repeats(reps(baseline), reps(tuned), level, method)


def compare_energy_repeats(baseline: pd.DataFrame, tuned: pd.DataFrame, level: float = 0.95,
                           method: str = "auto") -> pd.DataFrame:
    """Per cell x metric from two repeat tables (run_id, cell, metrics): n repeats a side,
    geometric means, tuned / baseline ratio and its interval (stats.ratio_interval, as every
    comparison metric; no interval below 2 repeats a side), p-value. Lower is better."""
    rows = []
    for cell in dict.fromkeys(baseline["cell"]):
        a, b = baseline[baseline["cell"] == cell], tuned[tuned["cell"] == cell]
        for metric in METRICS:
            va, vb = a[metric].dropna().to_numpy(float), b[metric].dropna().to_numpy(float)
            if not len(va) or not len(vb):
                continue
            iv = stats.ratio_interval(va, vb, level=level, method=method)
            rows.append({"cell": cell, "metric": metric, "n_baseline": len(va), "n_tuned": len(vb),
                         "baseline": stats.geometric_mean(va), "tuned": stats.geometric_mean(vb), "ratio": iv.ratio,
                         "ci_low": iv.low, "ci_high": iv.high, "p_value": iv.p_value, "method": iv.method,
                         "note": iv.note, "level": level})
    return pd.DataFrame(rows, columns=["cell", "metric", "n_baseline", "n_tuned", "baseline", "tuned", "ratio",
                                       "ci_low", "ci_high", "p_value", "method", "note", "level"])


DENOMINATOR = {"j_per_good_request": "good_requests", "j_per_token": "output_tokens"}


def energy_objective(run: Run, metric: str = "j_per_good_request") -> dict:
    """The energy objective of one run (``inferlab tune --objective energy``): ``value`` = the
    energy of every cell with a figure over the good requests (or output tokens) of those same
    windows, a ratio of totals (for one cell, its :func:`cell_energy` figure). Returns value,
    energy_j, the denominator's total, mean_power_w, tokens_per_s, cells, method, coverage; and
    ``reason`` with value None when the run has no GPU energy reading, no cell with a figure, or
    nothing in the denominator (no good request: the energy per good request is unbounded)."""
    if metric not in DENOMINATOR:
        raise ValueError(f"energy metric {metric!r}: expected one of {', '.join(DENOMINATOR)}")
    ce = cell_energy(run)
    if ce.empty:
        return {"value": None, "reason": f"run {run.run_id} has no GPU energy readings (NVML's counter, or DCGM's "
                "series through --prometheus-url: read on a GPU host only)"}
    ok = ce[ce["energy_j"].notna() & ce[DENOMINATOR[metric]].notna()]  # j_per_token: tokens known
    if ok.empty:
        low = float(ce["coverage"].min())
        return {"value": None, "reason": f"run {run.run_id}: no cell has an energy figure with a known "
                f"{DENOMINATOR[metric]} (lowest reading coverage {low:.0%}, {MIN_COVERAGE:.0%} needed)"}
    energy, per = float(ok["energy_j"].sum()), float(ok[DENOMINATOR[metric]].sum())
    window = float(ok["window_s"].sum())
    out = {"energy_j": energy, DENOMINATOR[metric]: per, "mean_power_w": energy / window if window else None,
           "tokens_per_s": float(ok["output_tokens"].sum()) / window if window else None,
           "cells": list(ok["cell_id"]), "cells_without_figure": list(ce.loc[ce["energy_j"].isna(), "cell_id"]),
           "method": ", ".join(sorted(set(ok["method"]))), "coverage": float(ok["coverage"].min())}
    if not per > 0:
        what = "good request" if metric == "j_per_good_request" else "successful output token"
        return {**out, "value": None, "reason": f"run {run.run_id} served no {what} in its windows: {metric} is "
                "unbounded"}
    return {**out, "value": energy / per, "reason": ""}
