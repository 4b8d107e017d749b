"""Tuned vs baseline with verdicts a performance engineer can defend.

The repeat is the unit of inference: every side is a list of runs (an interleaved comparison's
repeats, or one run each whose cells may repeat as ``-r<n>``), and each repeat of a cell gives
one value per metric, measured in the cell's steady-state window (analysis/window.py).

- primary metric (default ``throughput``: successful requests/s in the window) carries the
  verdict, Holm-corrected across cells; secondary metrics (goodput, latency p50/p95/p99) get
  intervals and Holm q-values within their own family and are labelled secondary;
- each metric is tested on its own, in its own direction (stats.verdict);
- a ratio is tuned/baseline of the geometric means printed beside it, with a Welch t-interval
  on the logs (stats.ratio_interval); with one repeat a side no interval and no verdict;
- failures count: throughput and goodput count only successful requests, and a side with a
  higher error rate is never "better" on them;
- the A/A spread beside every effect: the half-width of an A/A interval at this design and the
  measured between-repeat noise, and the smallest detectable ratio (80 % power).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..runs.reader import Run
from . import stats
from .summary import measured
from .token_slo import e2e_bound_ms
from .window import QUANTILES, min_requests, repeat_metrics

LOWER_IS_BETTER = {"throughput": False, "goodput": False, **{k: True for k in QUANTILES}, "max_sustainable_rate": False}
FAILURE_SENSITIVE = ("throughput", "goodput", *QUANTILES)  # a side that failed more is never better on these
MIN_VERDICT_REPEATS = 3  # per side: the design's minimum for a verdict (2 give an interval, no verdict)
PRIMARY = "throughput"
NOT_COMPARED = ("ramping-arrival-rate",)  # a ramp has no steady state


def base_cell(cell_id: str) -> str:
    return re.sub(r"-r\d+$", "", cell_id)


def _runs(x: Run | Sequence[Run]) -> list[Run]:
    return [x] if isinstance(x, Run) else list(x)


def repeat_table(runs: Run | Sequence[Run], side: str, slo_e2e_ms: float) -> pd.DataFrame:
    """One row per (run, cell): the repeat's metrics (window.repeat_metrics) and keys.

    A run is one repeat: ``-r<n>`` cells inside one run (same engine, back to back, not
    interleaved) are folded into one value per metric (geometric mean; counts summed), so they
    never pose as independent repeats. A failed cell stays in: its requests count as failures and
    a cell that served nothing has throughput 0. A capacity run contributes its max sustainable
    rate (metric ``max_sustainable_rate``)."""
    rows = []
    for run in _runs(runs):
        if run.manifest.kind == "capacity":
            msr = run.capacity.get("msr") if run.capacity else None
            payload = run.manifest.spec.get("capacity", {}).get("payload", "")
            rows.append({"side": side, "run_id": run.run_id, "cell_id": f"{payload}-capacity",
                         "cell": f"{payload}-capacity", "payload": payload, "vus": 0, "executor": "capacity",
                         "requests": 0, "errors": 0, "window_requests": 0,
                         "max_sustainable_rate": float(msr) if msr is not None else 0.0})
            continue
        req = measured(run)
        for cell in run.manifest.cells:
            if cell.executor in NOT_COMPARED or cell.status in ("pending", "skipped", "running"):
                continue
            g = req[req["cell_id"] == cell.cell_id] if not req.empty else req
            rows.append({"side": side, "run_id": run.run_id, "cell_id": cell.cell_id, "cell": base_cell(cell.cell_id),
                         "payload": cell.payload, "vus": cell.vus, "executor": cell.executor,
                         **repeat_metrics(g, slo_e2e_ms, cell.executor, cell.vus)})
    return _fold_within_run(pd.DataFrame(rows))


COUNTS = ("requests", "errors", "window_requests")


def _fold_within_run(reps: pd.DataFrame) -> pd.DataFrame:
    """One row per (side, run, cell): geometric mean of a run's ``-r<n>`` values, counts summed."""
    if reps.empty:
        return reps
    keys = ["side", "run_id", "cell"]
    metrics = [c for c in reps.columns if c in LOWER_IS_BETTER or c == "window_s"]
    agg = {c: stats.geometric_mean for c in metrics}
    agg.update({c: "sum" for c in COUNTS if c in reps.columns})
    agg.update({c: "first" for c in ("payload", "vus", "executor") if c in reps.columns})
    agg["cell_id"] = lambda v: ",".join(v)
    out = reps.groupby(keys, sort=False).agg(agg).reset_index()
    out["error_rate"] = out["errors"] / out["requests"].where(out["requests"] > 0)
    return out


def _slo(runs: list[Run], slo_e2e_ms: float | None) -> float:
    return slo_e2e_ms or e2e_bound_ms(runs[0].manifest.spec.get("slo"), 10000.0)


def compare_sides(baseline: Run | Sequence[Run], tuned: Run | Sequence[Run], slo_e2e_ms: float | None = None,
                  primary: str = PRIMARY, alpha: float = 0.05, level: float = 0.95,
                  method: str = "auto") -> pd.DataFrame:
    """Long table: one row per matching cell x metric (ratio = tuned / baseline). Capacity runs
    compare their max sustainable rate, which is then the primary metric."""
    base_runs, tuned_runs = _runs(baseline), _runs(tuned)
    slo = _slo(tuned_runs, slo_e2e_ms)
    reps = pd.concat([repeat_table(base_runs, "baseline", slo), repeat_table(tuned_runs, "tuned", slo)],
                     ignore_index=True)
    out = compare_repeats(reps, primary, alpha, level, method)
    out.attrs.update(baseline=[r.run_id for r in base_runs], tuned=[r.run_id for r in tuned_runs], slo_e2e_ms=slo)
    return out


def compare_repeats(reps: pd.DataFrame, primary: str = PRIMARY, alpha: float = 0.05, level: float = 0.95,
                    method: str = "auto") -> pd.DataFrame:
    """The verdict table from a repeat table (one row per side x repeat x cell with the metrics of
    ``window.repeat_metrics``, plus ``payload`` and ``vus``): intervals, Holm q-values per family,
    the A/A spread and the detectable effect, verdicts."""
    rows = []
    if not reps.empty:
        cells = [c for c in dict.fromkeys(reps["cell"]) if set(reps.loc[reps["cell"] == c, "side"]) == {"baseline", "tuned"}]
        for cell in cells:
            a, b = reps[(reps["cell"] == cell) & (reps["side"] == "baseline")], reps[(reps["cell"] == cell) & (reps["side"] == "tuned")]
            for metric in [m for m in LOWER_IS_BETTER if m in reps.columns and reps[m].notna().any()]:
                rows.append(_metric_row(cell, a, b, metric, level, method))
    out = pd.DataFrame(rows)
    if not out.empty:
        if primary not in set(out["metric"]) and "max_sustainable_rate" in set(out["metric"]):
            primary = "max_sustainable_rate"
        out["role"] = np.where(out["metric"] == primary, "primary", "secondary")
        for role in ("primary", "secondary"):
            sel = out["role"] == role
            out.loc[sel, "q_value"] = stats.holm(out.loc[sel, "p_value"], alpha)
            # what this design detects with 80 % power at Holm's strictest step (alpha / tests in the family)
            m = max(int(sel.sum()), 1)
            out.loc[sel, "min_detectable"] = [stats.min_detectable_ratio(sd, na, nb, alpha / m) for sd, na, nb in
                                              zip(out.loc[sel, "noise_cv"], out.loc[sel, "n_baseline"], out.loc[sel, "n_tuned"])]
        out["verdict"] = [_verdict(r, alpha) for r in out.itertuples()]
    out.attrs.update(alpha=alpha, level=level, primary=primary, repeats=reps)
    return out


def _metric_row(cell: str, a: pd.DataFrame, b: pd.DataFrame, metric: str, level: float, method: str) -> dict:
    """One cell x metric: interval, p-value, noise and A/A spread (role, q and verdict are set by
    :func:`compare_repeats`, which sees the whole family)."""
    va, vb = a[metric].dropna().to_numpy(float), b[metric].dropna().to_numpy(float)
    iv = stats.ratio_interval(va, vb, level=level, method=method)
    # pooled between-repeat log-SD (~ CV): the noise the A/A spread and detectable effect refer to
    sd = float(np.sqrt(np.nanmean([stats.log_sd(va) ** 2, stats.log_sd(vb) ** 2]))) if min(len(va), len(vb)) >= 2 else np.nan
    note = iv.note
    if metric in QUANTILES and (len(va) < len(a) or len(vb) < len(b)):
        need = min_requests(QUANTILES[metric])
        note = f"a repeat has < {need} window requests for {metric.split('_')[1]}"
    return {"cell": cell, "payload": a["payload"].iloc[0], "vus": a["vus"].iloc[0], "metric": metric,
            "n_baseline": len(va), "n_tuned": len(vb),
            "requests_baseline": int(a["window_requests"].sum()), "requests_tuned": int(b["window_requests"].sum()),
            "error_rate_baseline": float(a["errors"].sum() / max(a["requests"].sum(), 1)),
            "error_rate_tuned": float(b["errors"].sum() / max(b["requests"].sum(), 1)),
            "baseline": stats.geometric_mean(va), "tuned": stats.geometric_mean(vb), "ratio": iv.ratio, "ci_low": iv.low, "ci_high": iv.high,
            "p_value": iv.p_value, "q_value": np.nan, "noise_cv": sd,
            "aa_spread": stats.aa_halfwidth(sd, len(va), len(vb), level),
            "zero_tuned": bool((vb <= 0).any()), "zero_baseline": bool((va <= 0).any()),
            "min_detectable": np.nan, "method": iv.method, "note": note}


def _verdict(r, alpha: float) -> str:
    if r.metric in ("throughput", "goodput", "max_sustainable_rate") and r.zero_tuned and not r.zero_baseline:
        return "worse: a tuned repeat served no successful request"
    if not np.isfinite(r.q_value):
        return "no verdict: " + (r.note or "no test")
    if min(r.n_baseline, r.n_tuned) < MIN_VERDICT_REPEATS:
        return f"no verdict: {min(r.n_baseline, r.n_tuned)} repeats on a side (a verdict needs {MIN_VERDICT_REPEATS})"
    call = stats.verdict(r.q_value, r.ratio, LOWER_IS_BETTER[r.metric], alpha)
    if call == "better" and r.metric in FAILURE_SENSITIVE and r.error_rate_tuned > r.error_rate_baseline:
        return "not better: tuned failed more requests"
    return call


def verdict_table(res: pd.DataFrame) -> pd.DataFrame:
    """Readable: one line per cell x metric with ratio [CI], q, the A/A spread and the verdict."""
    cols = ["cell", "metric", "role", "repeats", "baseline", "tuned", "ratio [95% CI]", "q", "A/A spread", "verdict"]
    if res.empty:
        return pd.DataFrame(columns=cols)
    t = res.copy()
    t["repeats"] = [f"{a}+{b}" for a, b in zip(t["n_baseline"], t["n_tuned"])]
    t["ratio [95% CI]"] = [f"{r:.2f}x [{lo:.2f}, {hi:.2f}]" if np.isfinite(lo) else f"{r:.2f}x"
                           for r, lo, hi in zip(t["ratio"], t["ci_low"], t["ci_high"])]
    t["q"] = t["q_value"].map(lambda q: "" if not np.isfinite(q) else f"{q:.2g}")
    t["A/A spread"] = t["aa_spread"].map(lambda s: "" if not np.isfinite(s) else f"±{(s - 1) * 100:.1f}%")
    if "aa_ratio" in t.columns:  # a recorded A/A of the same cells, beside the effect
        cols.insert(cols.index("A/A spread") + 1, "A/A measured")
        t["A/A measured"] = [f"{r:.2f}x [{lo:.2f}, {hi:.2f}]" if np.isfinite(lo) else "" for r, lo, hi in
                             zip(t["aa_ratio"].astype(float), t["aa_ci_low"].astype(float), t["aa_ci_high"].astype(float))]
    return t[cols].round(3)


def headline(res: pd.DataFrame) -> str:
    """One sentence per payload on the primary metric: the largest-VU cell, and how many cells
    differ after Holm's correction."""
    if res.empty:
        return "No matching cells between the two sides."
    prim = res[res["role"] == "primary"]
    lines = []
    for payload, g in prim.groupby("payload", sort=False):
        top = g.loc[g["vus"].idxmax()]
        ci = (f"95% CI {top['ci_low']:.2f}-{top['ci_high']:.2f}, " if np.isfinite(top["ci_low"]) else "")
        aa = f"; A/A spread ±{(top['aa_spread'] - 1) * 100:.0f}%" if np.isfinite(top["aa_spread"]) else ""
        sig = g[g["verdict"].isin(["better", "worse"])]
        lines.append(f"{payload}: at {top['vus']} VUs tuned/baseline {top['metric']} = {top['ratio']:.2f}x "
                     f"({ci}{top['verdict']}{aa}; {top['n_baseline']}+{top['n_tuned']} repeats); "
                     f"{len(sig)} of {len(g)} cells differ after Holm's correction.")
    return "\n".join(lines)


def primary_of(comparison: str = "") -> str:
    """The primary metric a comparison record declares (throughput when none is given)."""
    from ..runs.comparison import load_comparison

    return load_comparison(comparison).primary if comparison else PRIMARY


def sides(baseline_run: str = "", tuned_run: str = "", comparison: str = "") -> tuple[list[Run], list[Run], str]:
    """The two sides of a comparison record, or of a pair of runs; and a one-line description."""
    from ..runs.comparison import load_comparison
    from ..runs.reader import load_run

    if comparison:
        c = load_comparison(comparison)
        order = " ".join("A" if r.side == "baseline" else "B" for r in c.repeats)
        return ([load_run(r) for r in c.run_ids("baseline")], [load_run(r) for r in c.run_ids("tuned")],
                f"comparison {c.comparison_id}: {len(c.repeats)} repeats in the order {order} ({c.order}), "
                f"status {c.status}" + "".join(f"; {n}" for n in c.notes))
    if not (baseline_run and tuned_run):
        raise ValueError("give a comparison id, or both baseline_run and tuned_run")
    return [load_run(baseline_run)], [load_run(tuned_run)], f"runs {baseline_run} (baseline) vs {tuned_run} (tuned)"


def compare_with_aa(baseline: Sequence[Run], tuned: Sequence[Run], aa_comparison: str = "", **kw) -> pd.DataFrame:
    """:func:`compare_sides`, plus the measured A/A interval of the same cells and metrics beside
    every effect when a recorded A/A comparison is given (``aa_ratio``, ``aa_ci_low``, ``aa_ci_high``)."""
    res = compare_sides(baseline, tuned, **kw)
    if aa_comparison and not res.empty:
        a, b, _ = sides(comparison=aa_comparison)
        aa = compare_sides(a, b, **kw)[["cell", "metric", "ratio", "ci_low", "ci_high", "verdict"]]
        aa = aa.rename(columns={"ratio": "aa_ratio", "ci_low": "aa_ci_low", "ci_high": "aa_ci_high", "verdict": "aa_verdict"})
        attrs, res.attrs, aa.attrs = res.attrs, {}, {}  # attrs hold a frame: pandas cannot compare them in a merge
        res = res.merge(aa, on=["cell", "metric"], how="left")
        res.attrs.update(attrs, aa_comparison=aa_comparison)
    return res
