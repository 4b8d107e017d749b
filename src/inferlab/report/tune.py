"""The tune report's building blocks (notebooks/40-tune-report.ipynb): the search path, every
candidate with its interval, the confirmation, the capacity plan and where the autoscaling
trigger came from. Each returns something a notebook displays; nothing here runs an engine.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown

from ..analysis.plan import ASSUMPTION, autoscale_trigger, plan_from_result
from ..runs.reader import load_run
from ..runs.tune_record import TuneRecord, load_tune


def load(tune_id: str) -> TuneRecord:
    return load_tune(tune_id)


def judge_of(run_id: str | None) -> str:
    """``certified`` or ``legacy bracket`` (a capacity record before issue 19), from the trial's run."""
    from ..analysis.capacity import is_certified

    if not run_id:
        return ""
    try:
        return "certified" if is_certified(load_run(run_id).capacity) else "legacy bracket"
    except (FileNotFoundError, ValueError):
        return "run not found"


def judges(rec: TuneRecord) -> dict[int, str]:
    """Trial number -> :func:`judge_of` its run, for every complete trial (each run read once):
    what :func:`trials_table` and :func:`headline` take, so a caller showing both reads them once.
    An energy tune's trials are fixed-rate runs with NVML readings, no capacity record: "energy"."""
    if rec.objective_kind == "energy":
        return {t.number: "energy" for t in rec.trials if t.state == "complete"}
    return {t.number: judge_of(t.run_id) for t in rec.trials if t.state == "complete"}


def trials_table(rec: TuneRecord, judged: dict[int, str] | None = None) -> pd.DataFrame:
    """One row per trial in the order it ran: the flags it changed, its objective (the certified
    lower bound; a legacy record's highest passing rate), its interval (the boundary interval; a
    legacy record's bracket) and which judge made them, run id. ``judged``: :func:`judges` of
    ``rec`` (made here when not given)."""
    judged = judges(rec) if judged is None else judged
    rows = []
    for t in rec.trials:
        judge = judged.get(t.number, "")
        rows.append({"trial": t.number, "seed": t.seed or "-", "changed flags": " ".join(t.changed) or "(defaults)",
                     "state": t.state, f"objective ({rec.unit})": rec.score(t), "judge": judge,
                     "interval": _interval(t.interval_low, t.interval_high, judge),
                     "steps": t.n_steps, "best": "*" if t.number == rec.best else "",
                     "run_id": t.run_id or "", "note": t.reason})
    return pd.DataFrame(rows)


def _interval(low: float | None, high: float | None, judge: str = "") -> str:
    if judge == "certified":
        return "" if low is None or high is None else f"boundary interval [{low:.3g}, {high:.3g}]"
    if low is None:
        return "" if high is None else f"none passed (lowest tried {high:g} failed)"
    return f"bracket [{low:g}, {'open' if high is None else f'{high:g}'}]"


def headline(rec: TuneRecord, judged: dict[int, str] | None = None) -> Markdown:
    """The tune in a few lines: status, objective, baseline, the best trial (``judged``: as in
    :func:`trials_table`), the confirmation."""
    best = rec.trial(rec.best) if rec.best is not None else None
    base = next((t for t in rec.trials if t.args == rec.baseline_args and t.state == "complete"), None)
    c = rec.confirmation
    lines = [f"Tune `{rec.tune_id}` on target {rec.target}, status **{rec.status}**"
             + (f": {rec.reason}" if rec.reason else "") + f"; {len(rec.trials)} trials.",
             f"Objective: {rec.objective}.",
             f"Baseline arguments: `{' '.join(rec.baseline_args) or '(none)'}`."]
    if best and rec.objective_kind == "energy":
        lines.append(f"Best: trial {best.number} (`{' '.join(best.changed) or 'vLLM defaults'}`), "
                     f"**{rec.result_text(best)}**" + (f"; baseline {rec.result_text(base)}" if base else "") + ".")
    elif best:
        flags = " ".join(best.changed) or "vLLM defaults"
        judge = judged[best.number] if best.number in (judged or {}) else judge_of(best.run_id)
        what = "certified at least" if judge == "certified" else "MSR (legacy bracket judge, not certified)"
        lines.append(f"Best: trial {best.number} (`{flags}`), {what} **{best.msr:g}/s** "
                     f"{_interval(best.interval_low, best.interval_high, judge)}"
                     + (f"; baseline {base.msr:g}/s" if base else "") + ".")
    lines.append(f"Confirmation: **{c.outcome}**" + (f" ({c.reason})" if c.reason else "")
                 + (f", comparison `{c.comparison_id}`" if c.comparison_id else "") + ".")
    if rec.component:
        lines.append(f"Component written: `{rec.component}`.")
    lines += [f"- {n}" for n in rec.notes]
    return Markdown("\n\n".join(lines))


def search_path(rec: TuneRecord):
    """Each trial's MSR with its interval, in the order the trials ran, and the best so far."""
    fig, ax = plt.subplots(figsize=(8, 3.6))
    done = [t for t in rec.trials if t.state == "complete"]
    x = [t.number for t in done]
    y = [rec.score(t) or 0.0 for t in done]
    energy = rec.objective_kind == "energy"  # no interval: one figure per trial, lower is better
    hi = [0.0 if energy else max((t.interval_high if t.interval_high is not None else (t.msr or 0.0)) - (t.msr or 0.0),
                                 0.0) for t in done]
    ax.errorbar(x, y, yerr=[[0] * len(y), hi], fmt="o", capsize=4,
                label=f"objective ({rec.unit}, lower is better)" if rec.direction == "minimize" else
                "objective (certified bound; legacy: MSR), bar to the interval's top")
    failed = [t.number for t in rec.trials if t.state == "failed"]
    ax.scatter(failed, [0] * len(failed), marker="x", color="red", label="failed (engine did not start / no result)")
    best: list[float] = []
    for t in rec.trials:
        v = rec.score(t) if t.state == "complete" else None
        prev = best[-1] if best else float("nan")
        if v is not None and (prev != prev or rec.better(v, prev)):  # prev != prev: nothing yet (NaN)
            prev = v
        best.append(prev)
    ax.step([t.number for t in rec.trials], best, where="post", color="grey", alpha=0.6, label="best so far")
    for t in rec.trials:
        if t.seed:
            ax.annotate(t.seed, (t.number, rec.score(t) or 0.0), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("trial (order run)")
    ax.set_ylabel(f"objective ({rec.unit})")
    ax.set_title("Search path")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    plt.close(fig)
    return fig if rec.trials else None


def confirmation_table(rec: TuneRecord) -> pd.DataFrame:
    rows = rec.confirmation.rows
    if not rows:
        return pd.DataFrame({"outcome": [rec.confirmation.outcome], "reason": [rec.confirmation.reason]})
    df = pd.DataFrame(rows)
    df["ratio [95% CI]"] = [f"{r:.2f}x [{lo:.2f}, {hi:.2f}]"
                            for r, lo, hi in zip(df["ratio"], df["ci_low"], df["ci_high"])]
    return df[["cell", "metric", "ratio [95% CI]", "q_value", "verdict"]]


def plan_run(rec: TuneRecord, capacity_run: str = "") -> str:
    """The single-replica measurement to plan from: ``capacity_run`` when given, else that of the
    configuration one would deploy: the confirmed winner's trial, otherwise the baseline's."""
    if capacity_run:
        return capacity_run
    if rec.objective_kind == "energy":
        raise ValueError(f"tune {rec.tune_id} ranks by energy: its trials are fixed-rate sweeps, not capacity searches; "
                         "pass capacity_run (a capacity run of the configuration to deploy) to plan from")
    if rec.confirmation.outcome == "winner confirmed" and rec.best is not None:
        t = rec.trial(rec.best)
    else:
        t = next((t for t in rec.trials if t.args == rec.baseline_args and t.state == "complete"), None)
    if t is None or not t.run_id:
        raise ValueError(f"tune {rec.tune_id}: no completed trial of the deployed configuration; pass capacity_run")
    return t.run_id


def capacity_plan(run_id: str, target_rate: float, headroom: float, gpus_per_replica: int = 1) -> pd.DataFrame:
    p = plan_from_result(load_run(run_id).capacity, target_rate, headroom, gpus_per_replica, where=f"run {run_id}")
    return p.table()


def plan_md(run_id: str) -> Markdown:
    return Markdown(f"Single-replica measurement: run `{run_id}`. Assumption: {ASSUMPTION}; checked by a "
                    "two-replica run (docs/capacity.md: \"Linear scaling, checked on real GPUs\").")


def trigger_md(run_id: str, headroom: float = 0.2) -> Markdown:
    t, _ = autoscale_trigger(load_run(run_id), headroom=headroom)
    return Markdown("**Autoscaling trigger.** " + " ".join(t.origin_lines())
                    + (f"\n\nKEDA query: `{t.query}`" + (f" (metricType {t.metric_type})" if t.metric_type else "")
                       if t.signal else ""))


def trigger_steps(run_id: str, headroom: float = 0.2) -> pd.DataFrame:
    """Per capacity step, each signal's value (the evidence the trigger was chosen from)."""
    _, table = autoscale_trigger(load_run(run_id), headroom=headroom)
    if table.empty:
        return table
    wide = table.pivot_table(index=["cell_id", "rate", "passed"], columns="signal", values="value", sort=False)
    return wide.reset_index().round(3)
