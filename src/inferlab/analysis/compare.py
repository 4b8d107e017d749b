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
  measured between-repeat noise, and the smallest detectable ratio (80 % power);
- the interval shown beside a verdict agrees with it: drawn at Holm's level for its rank
  (``ci_low_adj``/``ci_high_adj`` at ``ci_level_adj``, stats.holm_alphas), it excludes 1 exactly
  when Holm rejects; a comparison that peeked after every pair (``--until-width``) is judged on
  repeated p-values (``p_sequential``, stats.Sequential) and its interval is the one matching them;
- validity (analysis/validity.py): every repeat of every cell is checked; a row with an INVALID
  repeat gets no verdict ("no verdict: INVALID data ...", with the reasons), its numbers still shown;
- a repeat that died: cells a partial or failed run never ran (``pending``, or cut ``running``,
  after an engine death) count as repeats that served nothing, against that side;
- capacity runs compare their max sustainable rate read as its search bracket [highest passing,
  lowest failing rate]: tied repeats on a grid are tested with the brackets' reading variance.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace

import numpy as np
import pandas as pd

from ..runs.layout import base_cell
from ..runs.reader import Run
from . import stats
from .energy import LOWER_IS_BETTER as ENERGY_LOWER_IS_BETTER, energy_cell_metrics
from .summary import measured
from .token_slo import e2e_bound_ms
from .validity import check_run
from .window import QUANTILES, min_requests, repeat_metrics

LOWER_IS_BETTER = {"throughput": False, "goodput": False, **{k: True for k in QUANTILES}, "max_sustainable_rate": False,
                   **ENERGY_LOWER_IS_BETTER}  # J per output token / per good request (analysis/energy.py), secondary
FAILURE_SENSITIVE = ("throughput", "goodput", *QUANTILES)  # a side that failed more is never better on these
MIN_VERDICT_REPEATS = 3  # per side: the design's minimum for a verdict (2 give an interval, no verdict)
PRIMARY = "throughput"
NOT_COMPARED = ("ramping-arrival-rate",)  # a ramp has no steady state


def as_runs(x: Run | Sequence[Run]) -> list[Run]:
    """A side given as one run or as a list of runs (its repeats): the list."""
    return [x] if isinstance(x, Run) else list(x)


NEVER_RAN = ("pending", "running")  # cells a partial/failed run left: they count as serving nothing


def compared_cells(run: Run, count_never_ran: bool = True):
    """The cells of ``run`` a comparison takes, in order, as ``(cell, never_ran)``: every cell but
    a ramp (:data:`NOT_COMPARED`) and those that did not run (pending, skipped, cut running).
    ``count_never_ran``: a cell a dead run never ran (``pending`` or cut ``running`` of a partial
    or failed run whose target was lost) is yielded with ``never_ran`` True, a repeat that served
    nothing (:func:`repeat_table`); a run the user (or a time limit's SIGTERM) interrupted lost
    nothing, so its unrun cells are left out. False: unrun cells are always left out."""
    died = count_never_ran and run.status in ("partial", "failed") and not run.manifest.cut_by_user()
    for cell in run.manifest.cells:
        never_ran = died and cell.status in NEVER_RAN
        if cell.executor in NOT_COMPARED or (cell.status in ("pending", "skipped", "running") and not never_ran):
            continue
        yield cell, never_ran


def paired_cells(reps: pd.DataFrame) -> list[str]:
    """The cells of a repeat table (column ``cell``, ``side`` baseline | tuned) both sides ran,
    in the table's order."""
    sides: dict = {}
    for cell, side in zip(reps["cell"].tolist(), reps["side"].tolist()) if not reps.empty else ():
        sides.setdefault(cell, set()).add(side)
    return [c for c, s in sides.items() if s == {"baseline", "tuned"} and c == c]  # c == c: a missing cell is no cell


def _msr_bracket(cap: dict) -> tuple[float, float]:
    """A capacity search's result as its bracket: (reading, log width). The reading is the
    geometric middle of [highest passing, lowest failing] rate, the width log(high / low); a
    search with no failing rate, or none passing, is read at its MSR (or 0) with no width."""
    msr = cap.get("msr") if cap else None
    lo, hi = (cap.get("interval_low"), cap.get("interval_high")) if cap else (None, None)
    if msr is None:
        return 0.0, np.nan
    if lo is not None and hi is not None and 0 < float(lo) < float(hi):
        return float(np.sqrt(float(lo) * float(hi))), float(np.log(float(hi) / float(lo)))
    return float(msr), np.nan


def _validity(run: Run) -> dict[str, tuple[str, str]]:
    """cell_id -> (VALID | INVALID, reasons) from analysis/validity.check_run."""
    return {v.cell_id: (v.verdict, "; ".join(v.reasons)) for v in check_run(run)}


def repeat_table(runs: Run | Sequence[Run], side: str, slo_e2e_ms: float) -> pd.DataFrame:
    """One row per (run, cell): the repeat's metrics (window.repeat_metrics) and keys, and its
    ``validity`` (VALID | INVALID) with ``validity_reasons`` (analysis/validity.py).

    A run is one repeat: ``-r<n>`` cells inside one run (same engine, back to back, not
    interleaved) are folded into one value per metric (geometric mean; counts summed), so they
    never pose as independent repeats. A failed cell stays in: its requests count as failures and
    a cell that served nothing has throughput 0. So does a cell the run never ran because it died
    (a ``pending`` or cut ``running`` cell of a partial or failed run: the engine died): it
    counts against its side (``never_ran``); a ``skipped`` cell was left out on purpose and
    does not. A capacity run contributes its max sustainable rate (metric
    ``max_sustainable_rate``), read as its bracket (``msr_log_width``; _msr_bracket); it is
    INVALID when any of its steps is."""
    rows = []
    for run in as_runs(runs):
        validity = _validity(run)
        if run.manifest.kind == "capacity":
            payload = run.manifest.spec.get("capacity", {}).get("payload", "")
            reading, width = _msr_bracket(run.capacity)
            bad = {c: r for c, (v, r) in validity.items() if v == "INVALID"}
            rows.append({"side": side, "run_id": run.run_id, "cell_id": f"{payload}-capacity",
                         "cell": f"{payload}-capacity", "payload": payload, "vus": 0, "executor": "capacity",
                         "requests": 0, "errors": 0, "window_requests": 0,
                         "max_sustainable_rate": reading, "msr_log_width": width,
                         "validity": "INVALID" if bad else "VALID",
                         "validity_reasons": "; ".join(f"step {c}: {r}" for c, r in bad.items()), "never_ran": 0})
            continue
        req = measured(run)
        energy = energy_cell_metrics(run)  # {} without GPU energy or power records
        for cell, never_ran in compared_cells(run):
            g = req[req["cell_id"] == cell.cell_id] if not req.empty else req
            if never_ran:
                g = g.iloc[:0]  # a cut cell's partial rows aside: the repeat served nothing we can judge
            v, why = validity.get(cell.cell_id, ("VALID", ""))
            rows.append({"side": side, "run_id": run.run_id, "cell_id": cell.cell_id, "cell": base_cell(cell.cell_id),
                         "payload": cell.payload, "vus": cell.vus, "executor": cell.executor,
                         **repeat_metrics(g, slo_e2e_ms, cell.executor, cell.vus),
                         **({} if never_ran else energy.get(cell.cell_id, {})),
                         "validity": v, "validity_reasons": f"{run.run_id} {cell.cell_id}: {why}" if why else "",
                         "never_ran": int(never_ran)})
    return _fold_within_run(pd.DataFrame(rows))


COUNTS = ("requests", "errors", "window_requests", "never_ran")


def _fold_mean(values: pd.Series) -> float:
    """A run's ``-r<n>`` values folded: their geometric mean, and 0 when one of them is 0 (a cell
    that served nothing stays a zero, which the verdict rules look for, not a 1e-9 floor)."""
    x = values.dropna()
    return 0.0 if len(x) and bool((x <= 0).any()) else stats.geometric_mean(x)


def _fold_within_run(reps: pd.DataFrame) -> pd.DataFrame:
    """One row per (side, run, cell): geometric mean of a run's ``-r<n>`` values, counts summed,
    INVALID when any of them is."""
    if reps.empty:
        return reps
    keys = ["side", "run_id", "cell"]
    metrics = [c for c in reps.columns if c in LOWER_IS_BETTER or c == "window_s"]
    agg = {c: _fold_mean for c in metrics}
    agg.update({c: "sum" for c in COUNTS if c in reps.columns})
    agg.update({c: "first" for c in ("payload", "vus", "executor") if c in reps.columns})
    if "msr_log_width" in reps.columns:
        agg["msr_log_width"] = "max"
    if "validity" in reps.columns:
        agg["validity"] = lambda v: "INVALID" if (v == "INVALID").any() else "VALID"
        agg["validity_reasons"] = lambda v: "; ".join(x for x in v if x)
    agg["cell_id"] = lambda v: ",".join(v)
    out = reps.groupby(keys, sort=False).agg(agg).reset_index()
    out["error_rate"] = out["errors"] / out["requests"].where(out["requests"] > 0)
    return out


def _slo(runs: list[Run], slo_e2e_ms: float | None) -> float:
    return slo_e2e_ms or e2e_bound_ms(runs[0].manifest.spec.get("slo"), 10000.0)


def compare_sides(baseline: Run | Sequence[Run], tuned: Run | Sequence[Run], slo_e2e_ms: float | None = None,
                  primary: str = PRIMARY, alpha: float = 0.05, level: float = 0.95,
                  method: str = "auto", looks: tuple[int, int] | None = None) -> pd.DataFrame:
    """Long table: one row per matching cell x metric (ratio = tuned / baseline). Capacity runs
    compare their max sustainable rate, which is then the primary metric. ``looks``: (first,
    last) pair count of a comparison that may stop after any pair (``--until-width``;
    :func:`design_of`), judged on repeated p-values."""
    base_runs, tuned_runs = as_runs(baseline), as_runs(tuned)
    slo = _slo(tuned_runs, slo_e2e_ms)
    reps = pd.concat([repeat_table(base_runs, "baseline", slo), repeat_table(tuned_runs, "tuned", slo)],
                     ignore_index=True)
    out = compare_repeats(reps, primary, alpha, level, method, looks)
    out.attrs.update(baseline=[r.run_id for r in base_runs], tuned=[r.run_id for r in tuned_runs], slo_e2e_ms=slo)
    return out


def compare_repeats(reps: pd.DataFrame, primary: str = PRIMARY, alpha: float = 0.05, level: float = 0.95,
                    method: str = "auto", looks: tuple[int, int] | None = None) -> pd.DataFrame:
    """The verdict table from a repeat table (one row per side x repeat x cell with the metrics of
    ``window.repeat_metrics``, plus ``payload`` and ``vus``; optional ``validity``,
    ``validity_reasons``, ``never_ran``, ``msr_log_width``): intervals, Holm q-values per family,
    the intervals that agree with them, the A/A spread and the detectable effect, verdicts.
    ``looks``: see :func:`compare_sides` (Welch only: the calibration is Welch's)."""
    rows, values = [], []
    seq = stats.Sequential(max(looks[0], stats.MIN_REPEATS), looks[1]) if looks else None
    if seq is not None:
        method = "welch"
    if not reps.empty:
        groups = {key: g for key, g in reps.groupby(["cell", "side"], sort=False)}  # one pass, not two masks a cell
        for cell in paired_cells(reps):
            a, b = groups[(cell, "baseline")], groups[(cell, "tuned")]
            per_cell = _cell_parts(cell, a, b)  # what every metric's row of this cell shares
            for metric in [m for m in LOWER_IS_BETTER if m in reps.columns and reps[m].notna().any()]:
                row, vals = _metric_row(per_cell, a, b, metric, level, method)
                rows.append(row)
                values.append(vals)
    out = pd.DataFrame(rows)
    if not out.empty:
        if primary not in set(out["metric"]) and "max_sustainable_rate" in set(out["metric"]):
            primary = "max_sustainable_rate"
        out["role"] = np.where(out["metric"] == primary, "primary", "secondary")
        out["p_sequential"] = seq.p_value(out["p_value"]) if seq is not None else np.nan
        tested = (out["p_sequential"] if seq is not None else out["p_value"]).to_numpy(float)
        q, level_adj, detectable = (np.full(len(out), np.nan) for _ in range(3))  # filled role by role
        noise, n_a, n_b = out["noise_cv"].to_numpy(float), out["n_baseline"].to_numpy(), out["n_tuned"].to_numpy()
        for role in ("primary", "secondary"):
            sel = (out["role"] == role).to_numpy()
            q[sel] = stats.holm(tested[sel], alpha)
            a_j = stats.holm_alphas(tested[sel], alpha)  # the level each interval is drawn at
            level_adj[sel] = 1 - (seq.nominal(a_j) if seq is not None else a_j)
            # what this design detects with 80 % power at Holm's strictest step (alpha / tests in the family)
            m = max(int(sel.sum()), 1)
            detectable[sel] = [stats.min_detectable_ratio(sd, na, nb, alpha / m) for sd, na, nb in
                               zip(noise[sel].tolist(), n_a[sel].tolist(), n_b[sel].tolist())]
        out["q_value"], out["ci_level_adj"], out["min_detectable"] = q, level_adj, detectable
        adj = [stats.ratio_interval(va, vb, level=lv, method=method, widths=w) if np.isfinite(lv) else None
               for (va, vb, w), lv in zip(values, out["ci_level_adj"])]
        out["ci_low_adj"] = [iv.low if iv else np.nan for iv in adj]
        out["ci_high_adj"] = [iv.high if iv else np.nan for iv in adj]
        cols = out.columns.tolist()  # rows as namespaces (itertuples makes a class a call; to_dict is slower still)
        verdicts = [_verdict(SimpleNamespace(**dict(zip(cols, r))), alpha) for r in zip(*(out[c].tolist() for c in cols))]
        out["verdict_kind"] = [kind for kind, _ in verdicts]  # the verdict without its reason (a report's first page)
        out["verdict"] = [kind + reason for kind, reason in verdicts]
    out.attrs.update(alpha=alpha, level=level, primary=primary, repeats=reps, looks=looks)
    return out


def _cell_parts(cell: str, a: pd.DataFrame, b: pd.DataFrame) -> tuple[dict, dict, dict]:
    """The parts of a row that are the same for every metric of one cell: its keys, its request
    and error counts, its validity (computed once a cell, not once a metric)."""
    return ({"cell": cell, "payload": a["payload"].iloc[0], "vus": a["vus"].iloc[0]},
            {"requests_baseline": int(a["window_requests"].sum()), "requests_tuned": int(b["window_requests"].sum()),
             "error_rate_baseline": float(a["errors"].sum() / max(a["requests"].sum(), 1)),
             "error_rate_tuned": float(b["errors"].sum() / max(b["requests"].sum(), 1))},
            _row_validity(a, b))


def _metric_row(per_cell: tuple[dict, dict, dict], a: pd.DataFrame, b: pd.DataFrame, metric: str, level: float,
                method: str) -> tuple[dict, tuple]:
    """One cell x metric: interval, p-value, noise and A/A spread (role, q and verdict are set by
    :func:`compare_repeats`, which sees the whole family); and (values a, values b, bracket
    widths) to draw the interval again at the level Holm gives it. ``per_cell``: :func:`_cell_parts`."""
    keys, counts, validity = per_cell
    va, vb = a[metric].dropna().to_numpy(float), b[metric].dropna().to_numpy(float)
    widths = None
    if metric == "max_sustainable_rate" and "msr_log_width" in a.columns:
        widths = (a.loc[a[metric].notna(), "msr_log_width"].to_numpy(float),
                  b.loc[b[metric].notna(), "msr_log_width"].to_numpy(float))
    iv = stats.ratio_interval(va, vb, level=level, method=method, widths=widths)
    # pooled between-repeat log-SD (~ CV): the noise the A/A spread and detectable effect refer to
    sd = float(np.sqrt(np.nanmean([stats.log_sd(va) ** 2, stats.log_sd(vb) ** 2]))) if min(len(va), len(vb)) >= 2 else np.nan
    note = iv.note
    if metric in QUANTILES and (len(va) < len(a) or len(vb) < len(b)):
        need = min_requests(QUANTILES[metric])
        note = f"a repeat has < {need} window requests for {metric.split('_')[1]}"
    return {**keys, "metric": metric, "n_baseline": len(va), "n_tuned": len(vb), **counts,
            "baseline": stats.geometric_mean(va), "tuned": stats.geometric_mean(vb), "ratio": iv.ratio, "ci_low": iv.low, "ci_high": iv.high,
            "p_value": iv.p_value, "q_value": np.nan, "noise_cv": sd,
            "aa_spread": stats.aa_halfwidth(sd, len(va), len(vb), level),
            "zero_tuned": bool((vb <= 0).any()), "zero_baseline": bool((va <= 0).any()),
            "min_detectable": np.nan, "method": iv.method, "note": note,
            **validity}, (va, vb, widths)


def _row_validity(a: pd.DataFrame, b: pd.DataFrame) -> dict:
    """validity (INVALID when any repeat of either side is), how many repeats are, their reasons;
    and how many repeats never ran (their runs died before the cell)."""
    both = pd.concat([a, b])
    bad = both[both["validity"] == "INVALID"] if "validity" in both.columns else both.iloc[:0]
    reasons = "; ".join(r for r in bad.get("validity_reasons", pd.Series(dtype=str)) if r)
    def never(x: pd.DataFrame) -> int:
        return int(x["never_ran"].sum()) if "never_ran" in x.columns else 0

    return {"validity": "INVALID" if len(bad) else "VALID", "invalid_repeats": len(bad),
            "validity_reasons": reasons, "never_ran_baseline": never(a), "never_ran_tuned": never(b)}


def _verdict(r, alpha: float) -> tuple[str, str]:
    """(kind, reason): the verdict is ``kind + reason``; ``reason`` ("" or starting with its
    separator, ``: ...`` or `` (...)``) is why a verdict is withheld, which the body's table shows
    and a first page leaves out."""
    if r.validity == "INVALID":  # refused, not guessed: docs/verdicts.md "Validity"
        return "no verdict: INVALID data", f" ({r.invalid_repeats} repeat(s): {r.validity_reasons})"
    if r.metric in ("throughput", "goodput", "max_sustainable_rate") and r.zero_tuned and not r.zero_baseline:
        return "worse: a tuned repeat served no successful request", ""
    if not np.isfinite(r.q_value):
        head, sep, rest = (r.note or "no test").partition(": ")  # e.g. "1 repeat(s) on a side: no ... interval"
        return "no verdict: " + head, sep + rest
    if min(r.n_baseline, r.n_tuned) < MIN_VERDICT_REPEATS:
        return f"no verdict: {min(r.n_baseline, r.n_tuned)} repeats on a side", f" (a verdict needs {MIN_VERDICT_REPEATS})"
    call = stats.verdict(r.q_value, r.ratio, LOWER_IS_BETTER[r.metric], alpha)
    if call == "better" and r.metric in FAILURE_SENSITIVE and r.error_rate_tuned > r.error_rate_baseline:
        return "not better: tuned failed more requests", ""
    return call, ""


RATIO = "ratio [Holm CI]"  # the interval beside the verdict: agrees with it (ci_low_adj, ci_high_adj)


def _level(lv: float) -> str:
    return (f"{lv * 100:.2f}".rstrip("0").rstrip(".") + "%") if np.isfinite(lv) else ""


def verdict_table(res: pd.DataFrame) -> pd.DataFrame:
    """Readable: one line per cell x metric with the ratio and the interval that agrees with the
    Holm-adjusted verdict (``ratio [Holm CI]``, drawn at ``CI level``), q, the A/A spread,
    validity and the verdict."""
    cols = ["cell", "metric", "role", "repeats", "baseline", "tuned", RATIO, "CI level", "q", "A/A spread",
            "validity", "verdict"]
    if res.empty:
        return pd.DataFrame(columns=cols)
    t = res.copy()
    t["repeats"] = [f"{a}+{b}" for a, b in zip(t["n_baseline"], t["n_tuned"])]
    t[RATIO] = [f"{r:.2f}x [{lo:.2f}, {hi:.2f}]" if np.isfinite(lo) else f"{r:.2f}x"
                for r, lo, hi in zip(t["ratio"], t["ci_low_adj"], t["ci_high_adj"])]
    t["CI level"] = t["ci_level_adj"].map(_level)
    t["q"] = t["q_value"].map(lambda q: "" if not np.isfinite(q) else f"{q:.2g}")
    t["A/A spread"] = t["aa_spread"].map(lambda s: "" if not np.isfinite(s) else f"±{(s - 1) * 100:.1f}%")
    if "aa_ratio" in t.columns:  # a recorded A/A of the same cells, beside the effect
        cols.insert(cols.index("A/A spread") + 1, "A/A measured")
        t["A/A measured"] = [f"{r:.2f}x [{lo:.2f}, {hi:.2f}]" if np.isfinite(lo) else "" for r, lo, hi in
                             zip(t["aa_ratio"].astype(float), t["aa_ci_low"].astype(float), t["aa_ci_high"].astype(float))]
    return t[cols].round(3)


def headline(res: pd.DataFrame) -> str:
    """One sentence per payload on the primary metric: the largest-VU cell, and how many cells
    differ after Holm's correction; the interval is the one that agrees with the verdict
    (``ci_low_adj``/``ci_high_adj``, its level named). A line that says how many rows are INVALID
    comes first when any is."""
    if res.empty:
        return "No matching cells between the two sides."
    prim = res[res["role"] == "primary"]
    lines = []
    bad = res[res["validity"] == "INVALID"] if "validity" in res.columns else res.iloc[:0]
    if len(bad):
        lines.append(f"INVALID data: {len(bad)} of {len(res)} rows have an INVALID repeat and get no verdict "
                     f"({', '.join(dict.fromkeys(bad['cell']))}).")
    never = prim[(prim["never_ran_baseline"] > 0) | (prim["never_ran_tuned"] > 0)] if "never_ran_tuned" in prim else prim.iloc[:0]
    for r in never.itertuples():
        lines.append(f"{r.cell}: {r.never_ran_baseline} baseline and {r.never_ran_tuned} tuned repeat(s) never ran "
                     "(the run died first): counted as serving nothing.")
    for payload, g in prim.groupby("payload", sort=False):
        top = g.loc[g["vus"].idxmax()]
        ci = (f"{_level(top['ci_level_adj'])} CI {top['ci_low_adj']:.2f}-{top['ci_high_adj']:.2f}, "
              if np.isfinite(top["ci_low_adj"]) else "")
        aa = f"; A/A spread ±{(top['aa_spread'] - 1) * 100:.0f}%" if np.isfinite(top["aa_spread"]) else ""
        sig = g[g["verdict"].isin(["better", "worse"])]
        lines.append(f"{payload}: at {top['vus']} VUs tuned/baseline {top['metric']} = {top['ratio']:.2f}x "
                     f"({ci}{top['verdict']}{aa}; {top['n_baseline']}+{top['n_tuned']} repeats); "
                     f"{len(sig)} of {len(g)} cells differ after Holm's correction.")
    return "\n".join(lines)


def design_of(comparison: str) -> tuple[int, int] | None:
    """The looks of a comparison record that could stop after any pair (``--until-width``):
    (first, last) pair count, last = its ``max_pairs`` (8, the default, where an older record
    did not keep it); None for a fixed design, or for no comparison (``""``: a pair of runs)."""
    from ..runs.comparison import load_comparison

    if not comparison:
        return None
    c = load_comparison(comparison)
    if c.until_width is None:
        return None
    last = c.max_pairs or 8
    return max(c.pairs or stats.MIN_REPEATS, stats.MIN_REPEATS), max(last, c.pairs or 0, stats.MIN_REPEATS)


def compare_comparison(comparison: str, aa_comparison: str = "", **kw) -> tuple[pd.DataFrame, str]:
    """A comparison record judged by its own design (:func:`design_of`): the result table
    (:func:`compare_with_aa`) and the one-line description of :func:`sides`."""
    base, tuned, what = sides(comparison=comparison)
    return compare_with_aa(base, tuned, aa_comparison=aa_comparison, looks=design_of(comparison), **kw), what


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
        if c.until_width is not None:
            c.notes = [*c.notes, f"stopped by --until-width {c.until_width:g} (max {c.max_pairs or 8} pairs): judged on "
                                 "repeated p-values valid at any look"]
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
        aa = compare_sides(a, b, **{**kw, "looks": design_of(aa_comparison)})[["cell", "metric", "ratio", "ci_low",
                                                                               "ci_high", "verdict"]]
        aa = aa.rename(columns={"ratio": "aa_ratio", "ci_low": "aa_ci_low", "ci_high": "aa_ci_high", "verdict": "aa_verdict"})
        attrs, res.attrs, aa.attrs = res.attrs, {}, {}  # attrs hold a frame: pandas cannot compare them in a merge
        res = res.merge(aa, on=["cell", "metric"], how="left")
        res.attrs.update(attrs, aa_comparison=aa_comparison)
    return res
