"""Figures and tables of what a workload sent and how latency followed it.

Inputs are the tidy tables of analysis.workload (:func:`workload_requests`, one row per request;
:func:`arrival_summary`, one row per cell). Functions filter, never reshape, and return a
matplotlib Figure or an IPython Markdown block; :func:`section` returns the whole section (a
:class:`~inferlab.report.sections.Section`). Nothing here displays: the notebooks do.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown

from ..analysis.workload import lengths_long
from .plots import _done, use_theme
from .sections import Section, show

POISSON_CV_TOLERANCE = 0.1  # the bar: a Poisson workload's inter-arrival CV is 1 +- 0.1
LAG_P99_LIMIT_MS = 50.0  # and a replayed trace's p99 send lag stays under 50 ms
MIN_CV_GAPS = 200  # below this the CV's own sampling SD (~1/sqrt(n)) exceeds half the tolerance


def length_histograms(wr: pd.DataFrame):
    """Input and output lengths: what the workload planned beside what the server counted."""
    use_theme()
    long = lengths_long(wr)
    g = sns.displot(data=long, x="tokens", hue="measure", col="side", kind="hist", element="step",
                    common_bins=False, facet_kws={"sharex": False, "sharey": False}, height=3.2, aspect=1.3)
    g.set_axis_labels("tokens", "requests")
    return _done(g.figure, "Request lengths: planned vs served")


def arrival_gaps(wr: pd.DataFrame):
    """Gaps between the sent first turns of each open-loop cell, with the exponential density of
    the same mean (what a Poisson process gives) and the measured CV in the panel title."""
    use_theme()
    first = wr[(wr["turn"] == 0) & wr["scheduled_ms"].notna()]
    cells = list(dict.fromkeys(first["cell_id"]))
    fig, axes = plt.subplots(1, max(1, len(cells)), figsize=(4.2 * max(1, len(cells)), 3.2), squeeze=False)
    for ax, cell in zip(axes[0], cells, strict=False):
        gaps = np.diff(np.sort(first.loc[first["cell_id"] == cell, "sent_ms"].to_numpy("float64"))) / 1000
        if len(gaps) < 2:
            continue
        ax.hist(gaps, bins=30, density=True, alpha=0.6, label="sent")
        x = np.linspace(0, gaps.max(), 200)
        ax.plot(x, np.exp(-x / gaps.mean()) / gaps.mean(), color="k", lw=1, label="exponential, same mean")
        ax.set(title=f"{cell}: CV {gaps.std(ddof=1) / gaps.mean():.2f}", xlabel="gap between sends (s)",
               ylabel="density")
        ax.legend(fontsize=8)
    if not cells:
        axes[0][0].text(0.5, 0.5, "no open-loop cells", ha="center", va="center")
    return _done(fig, "Arrival gaps (open loop)")


def send_lag_cdf(wr: pd.DataFrame, limit_ms: float = LAG_P99_LIMIT_MS):
    """ECDF of send lag (actual send - scheduled time) per open-loop cell."""
    use_theme()
    d = wr[wr["send_lag_ms"].notna()].assign(send_lag_ms=lambda x: x["send_lag_ms"].astype(float))
    fig, ax = plt.subplots(figsize=(6, 3.4))
    if not d.empty:
        sns.ecdfplot(data=d, x="send_lag_ms", hue="cell_id", ax=ax)
    ax.axvline(limit_ms, color="k", ls="--", lw=1)
    ax.axhline(0.99, color="grey", ls=":", lw=1)
    ax.set(xlabel="send lag (ms): actual send - scheduled", ylabel="share of sends")
    return _done(fig, "Send lag")


def latency_vs_length(wr: pd.DataFrame):
    """e2e (k6 duration) against prompt and completion tokens; TTFT against prompt tokens where
    the server's spans are joined ([M])."""
    use_theme()
    ok = wr[wr["ok"].fillna(False).astype(bool)] if "ok" in wr.columns else wr
    panels = [("prompt_tokens", "duration_ms", "e2e (ms)"), ("completion_tokens", "duration_ms", "e2e (ms)")]
    if "ttft_ms" in ok.columns and ok["ttft_ms"].notna().any():
        panels.append(("prompt_tokens", "ttft_ms", "TTFT, server (ms)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.4), squeeze=False)
    for ax, (x, y, label) in zip(axes[0], panels, strict=True):
        sns.scatterplot(data=ok, x=x, y=y, hue="cell_id", s=14, ax=ax, legend=ax is axes[0][0])
        ax.set(xlabel=x.replace("_", " "), ylabel=label)
    return _done(fig, "Latency against request length")


def latency_per_turn(wr: pd.DataFrame):
    """e2e per turn of multi-turn sessions (and TTFT where joined): later turns carry longer prompts."""
    use_theme()
    ok = wr[wr["ok"].fillna(False).astype(bool)] if "ok" in wr.columns else wr
    ys = [("duration_ms", "e2e (ms)")] + ([("ttft_ms", "TTFT, server (ms)")]
                                           if "ttft_ms" in ok.columns and ok["ttft_ms"].notna().any() else [])
    fig, axes = plt.subplots(1, len(ys), figsize=(5 * len(ys), 3.4), squeeze=False)
    for ax, (y, label) in zip(axes[0], ys, strict=True):
        sns.boxplot(data=ok.assign(turn=ok["turn"].astype(int)), x="turn", y=y, hue="cell_id", ax=ax)
        ax.set(xlabel="turn", ylabel=label)
    return _done(fig, "Latency per turn")


def timing_md(summary: pd.DataFrame, cv_tolerance: float = POISSON_CV_TOLERANCE,
              lag_limit_ms: float = LAG_P99_LIMIT_MS) -> Markdown:
    """The open-loop timing checks per cell: Poisson cells' inter-arrival CV within 1 +- tolerance,
    every open-loop cell's p99 send lag under the limit, sends late and dropped."""
    lines = ["| cell | arrival | sessions sent / planned | inter-arrival CV (schedule) | send lag p50 / p99 / max (ms) "
             "| late | check |", "|---|---|---|---|---|---|---|"]
    for r in summary[summary["open_loop"]].itertuples():
        arrival = getattr(r, "arrival", "") or ""
        checks = []
        if arrival == "poisson" and r.sessions - 1 >= MIN_CV_GAPS:
            checks.append(("CV " + ("ok" if abs(r.interarrival_cv - 1) <= cv_tolerance else "FAIL")))
        elif arrival == "poisson":  # the CV of n exponential gaps has SD ~1/sqrt(n): 1 +- 0.1 needs ~400
            checks.append(f"CV n/a (< {MIN_CV_GAPS} gaps)")
        checks.append("p99 lag " + ("ok" if r.lag_p99_ms < lag_limit_ms else
                                    "FAIL" if r.lag_p99_ms == r.lag_p99_ms else "n/a (< 100 sends)"))
        planned = "?" if r.planned is None or r.planned != r.planned else int(r.planned)
        lines.append(f"| {r.cell_id} | {arrival} | {r.sessions} / {planned} | {r.interarrival_cv:.3f} "
                     f"({r.scheduled_cv:.3f}) | {r.lag_p50_ms:.1f} / {r.lag_p99_ms:.1f} / {r.lag_max_ms:.0f} | "
                     f"{r.late} | {', '.join(checks)} |")
    if len(lines) == 2:
        return Markdown("No open-loop cells: every session was sent by a closed loop (no schedule to keep).")
    return Markdown("\n".join(lines) + f"\n\nBars: a Poisson cell's CV within 1 +- {cv_tolerance} (judged from "
                    f"{MIN_CV_GAPS} gaps on; the schedule's own CV beside it); p99 send lag < {lag_limit_ms:g} ms "
                    "(a p99 needs >= 100 sends).")


# One call per notebook cell, from the run (and the joined request table): a payload run gets a
# sentence instead of a figure, so the load-test notebook stays a straight list of calls.
NO_WORKLOAD = "This run sent the spec's fixed payloads, not a workload file."


def requests_of(run, joined: pd.DataFrame) -> pd.DataFrame:
    """The run's workload requests (:func:`analysis.workload.workload_requests` on the joined
    table, so server span tokens are used where they exist); empty for a payload run."""
    from ..analysis.workload import workload_requests

    return workload_requests(joined, run.points)


def summary(run) -> Markdown:
    """Which workload the run sent (files and sha256 as recorded) and how prompts were sized."""
    rec = run.workload
    if not rec:
        return Markdown(NO_WORKLOAD)
    files = ", ".join(f"`{p.rsplit('/', 1)[-1]}` sha256 `{h[:12]}`" for p, h in rec["sha256"].items())
    cal = rec["calibration"]
    return Markdown(f"Workload **{rec['spec']['name']}** ({files}), arrivals `{rec['spec']['arrival']['kind']}`; "
                    f"prompts sized with `{cal['method']}` calibration ({cal['tokens_per_word']:.2f} tokens/word)."
                    + (f" {cal['note'].rstrip('.')}." if cal.get("note") else "") + trace_replay_md(rec))


def trace_replay_md(rec: dict) -> str:
    """A replayed trace's sentence (empty otherwise): format, speedup, the fit rule with its factor
    and the share of requests whose lengths it changed, and for Mooncake the planned prefix reuse
    (prompt tokens in blocks an earlier request sent). Older records without these keys: ""."""
    arrival, sched = rec["spec"]["arrival"], rec.get("schedule", {})
    if arrival.get("kind") != "trace":
        return ""
    out = f" Trace `{arrival.get('format', 'azure')}` replayed at {arrival['speedup']:g}x."
    fit = sched.get("fit")
    if fit:
        rule = (f"scaled by {fit['factor']:.3f} (lengths and block size)" if fit["rule"] == "scale"
                else "clipped (answer to what fits, then the prompt)")
        out += (f" Lengths over {fit['limit_tokens']:,} tokens {rule}; with the usual floors (min_input_tokens, "
                f"1 answer token), **{fit['changed']} of {fit['requests']} requests changed "
                f"({fit['share_changed']:.1%})**.")
    reuse = sched.get("prefix_reuse")
    if reuse:
        out += (f" Shared prompt blocks of {reuse['block_tokens']} tokens: {reuse['share']:.1%} of first-turn prompt "
                "tokens lie in blocks an earlier request sent (the prefix cache's best case; its measured hits are "
                "in the prefix-cache table).")
    return out


def timing(run, wr: pd.DataFrame):
    """:func:`timing_md` of the run's cells: Poisson CV and p99 send lag against their bars."""
    from ..analysis.workload import arrival_summary, cell_arrivals

    if wr.empty:
        return Markdown(NO_WORKLOAD)
    planned = {c.cell_id: c.iterations for c in run.manifest.cells if getattr(c, "workload", None)}
    arrivals = cell_arrivals(run.manifest.spec.get("workload"), planned)
    return timing_md(arrival_summary(wr, planned, arrivals=arrivals))


def figure(name: str, wr: pd.DataFrame):
    """One of this module's figures by name (length_histograms, arrival_gaps, send_lag_cdf,
    latency_vs_length, latency_per_turn), or the sentence when there is no workload."""
    return Markdown(NO_WORKLOAD) if wr.empty else globals()[name](wr)


def token_table(wr: pd.DataFrame):
    """How close the served prompt lengths came to the planned ones, per cell and turn kind."""
    from ..analysis.workload import token_accuracy

    return Markdown(NO_WORKLOAD) if wr.empty else show(token_accuracy(wr), precision=3)


def turn_table(wr: pd.DataFrame):
    """Latency per turn of multi-turn sessions (prompts grow with the conversation)."""
    from ..analysis.workload import latency_by_turn

    return Markdown(NO_WORKLOAD) if wr.empty else show(latency_by_turn(wr), precision=1)


def prefix_cache(run):
    """Prefix-cache queries and hits per cell from the server's own counters (shown, not assumed)."""
    from ..analysis.workload import prefix_cache_table

    return show(prefix_cache_table(run.server), precision=3)


def section(run, joined: pd.DataFrame) -> Section:
    """The whole workload section, in order; one sentence for a payload run."""
    wr = requests_of(run, joined)
    if wr.empty:
        return Section(Markdown(NO_WORKLOAD))
    figures = [figure(name, wr) for name in ("length_histograms", "arrival_gaps", "send_lag_cdf",
                                             "latency_vs_length", "latency_per_turn")]
    return Section(summary(run), timing(run, wr), *figures, token_table(wr), turn_table(wr), prefix_cache(run))
