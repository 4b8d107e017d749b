"""Per-request timing in a report: what a notebook cell calls after ``joined = request_timing.joined(run)``.

Tables come back as pandas Stylers (``sections.show``), figures as matplotlib Figures, and a
sentence instead where there is nothing to show; the functions filter and label but compute
nothing that analysis.requests does not.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown

from ..analysis import requests as rq
from ..runs.reader import Run
from .plots import _done, use_theme
from .sections import show

_COMPONENT_COLORS = {"client": "#9e9e9e", "edge": "#bdbdbd", "api_server": "#8c6d31", "queue": "#d62728",
                     "prefill": "#1f77b4", "decode": "#2ca02c", "remainder": "#ff7f0e"}


def joined(run: Run) -> pd.DataFrame:
    """Every measured k6 request of the run with its server span and edge line (analysis.requests)."""
    return rq.join_requests(run.requests, run.spans, run.edge)


def percentile_table(joined: pd.DataFrame):
    """TTFT, TPOT, e2e, queue (server) and k6 duration: p50/p90/p95/p99 per cell, ms."""
    wide = rq.percentile_table(rq.request_percentiles(joined))
    return show(wide.drop(columns=["metric"]).rename(columns={"label": "metric"}), precision=1)


def join_rate_table(run: Run, joined: pd.DataFrame):
    """rq.join_summary, shares as percentages."""
    s = rq.join_summary(joined, run.spans, run.edge)
    fmt = {c: "{:.1%}" for c in s.columns if c.startswith("share_")}
    return s.style.hide(axis="index").format(precision=0, na_rep="-").format(fmt, na_rep="-")


def join_md(joined: pd.DataFrame) -> Markdown:
    """One line: how many measured requests joined a span (and an edge line), against the 99 % bar."""
    n = len(joined)
    if not n:
        return Markdown("No measured k6 request in this run.")
    if joined["request_id"].isna().all():
        return Markdown(f"The {n} measured k6 requests carry no X-Request-Id (recorded before request ids): "
                        "nothing to join, no per-request server timing.")
    if not joined["joined_server"].any():
        return Markdown(f"None of the {n} measured requests has a server span: the run holds none (spans are "
                        "collected from the local engine, with `observe.traces`), so the tables below are empty.")
    server = joined["joined_server"].mean()
    line = f"**{joined['joined_server'].sum()} of {n}** measured requests ({server:.1%}) joined to a server span"
    if joined["joined_edge"].notna().any():
        line += f", **{int(joined['joined_edge'].sum())}** ({joined['joined_edge'].astype(float).mean():.1%}) to an edge log line"
    worst = min(server, joined["joined_edge"].astype(float).mean()) if joined["joined_edge"].notna().any() else server
    return Markdown(line + (". " if worst >= 0.99 else ". **Below 99 %:** the per-request tables describe "
                            "only the joined rows; see the join table for what is missing."))


def breakdown_table(joined: pd.DataFrame):
    """Mean ms and share of k6's duration per component and cell; the remainder the engine does
    not attribute is its own column."""
    b = rq.time_breakdown(joined)
    if b.empty:
        return "no successful request joined to a server span: no breakdown"
    keys = [c for c in b.columns if c not in ("component", "mean_ms", "share", "n", "description")]
    wide = b.pivot(index=[*keys, "n"], columns="component", values=["mean_ms", "share"])
    cols = [c for c in rq.COMPONENTS if c in b["component"].unique()]
    out = pd.concat({"ms": wide["mean_ms"][cols], "share": wide["share"][cols]}, axis=1).reset_index()
    out.columns = [" ".join(c).strip() if isinstance(c, tuple) else c for c in out.columns]
    fmt = {c: "{:.1%}" for c in out.columns if c.startswith("share ")}
    return out.style.hide(axis="index").format(precision=1, na_rep="-").format(fmt)


def breakdown_bars(joined: pd.DataFrame):
    """One stacked bar per cell: the mean request's time by component (ms), the remainder hatched
    and labelled with its share."""
    b = rq.time_breakdown(joined)
    if b.empty:
        return "no successful request joined to a server span: no breakdown"
    use_theme()
    cells = list(dict.fromkeys(b["cell_id"]))
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(cells) + 1.8))
    left = np.zeros(len(cells))
    for comp in [c for c in rq.COMPONENTS if c in set(b["component"])]:
        part = b[b["component"] == comp].set_index("cell_id").reindex(cells)
        width = part["mean_ms"].clip(lower=0).fillna(0).to_numpy()
        bars = ax.barh(cells, width, left=left, color=_COMPONENT_COLORS[comp], label=comp,
                       hatch="//" if comp == "remainder" else None, edgecolor="white")
        if comp == "remainder":
            ax.bar_label(bars, labels=[f"remainder {m:.0f} ms ({s:.1%})" for m, s in zip(part["mean_ms"], part["share"])],
                         label_type="edge", padding=4, fontsize=8)
        left += width
    ax.invert_yaxis()
    ax.set_xlim(0, left.max() * 1.25)  # room for the remainder's label
    ax.set(xlabel="mean time per request (ms)", ylabel="")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _done(fig, "Where a request's time went (hatched: the engine's unattributed remainder)")


def ttft_tpot_distributions(joined: pd.DataFrame):
    """ECDFs of the server's TTFT and TPOT per cell, successful joined requests."""
    ok = joined[joined["joined_server"] & joined["ok"].fillna(False).astype(bool)]
    if ok.empty:
        return "no successful request joined to a server span"
    use_theme()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    for ax, col, title in ((axes[0], "ttft_ms", "TTFT (ms)"), (axes[1], "tpot_ms", "TPOT (ms)")):
        sns.ecdfplot(data=ok, x=col, hue="cell_id", ax=ax, legend=ax is axes[1])
        ax.set(xlabel=title, ylabel="fraction of requests")
    if axes[1].get_legend():
        sns.move_legend(axes[1], "lower right", fontsize=7, title=None)
    return _done(fig, "Server TTFT and TPOT of every measured request (vLLM spans)")


def queue_vs_load_plot(joined: pd.DataFrame):
    """Left: each request's queue time against the requests in flight at the server when it
    arrived. Right: per cell, mean and p95 queue time against the cell's measured arrival rate."""
    ok = joined[joined["joined_server"]]
    if ok.empty:
        return "no request joined to a server span"
    use_theme()
    per = rq.queue_vs_load(joined)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    sns.stripplot(data=ok, x="server_in_flight", y="queue_ms", hue="cell_id", ax=axes[0], size=3, alpha=0.6,
                  native_scale=True, legend=False)
    axes[0].set(xlabel="requests in flight at arrival (server)", ylabel="queue time (ms)")
    long = per.melt(id_vars=["cell_id", "arrival_rate_rps"], value_vars=["queue_mean_ms", "queue_p95_ms"],
                    var_name="statistic", value_name="ms")
    sns.scatterplot(data=long, x="arrival_rate_rps", y="ms", hue="statistic", style="statistic", ax=axes[1], s=50)
    axes[1].set(xlabel="measured arrival rate (requests/s)", ylabel="queue time (ms)")
    return _done(fig, "Queue time against load")


def token_table(run: Run, joined: pd.DataFrame):
    """Generated tokens per cell: k6's usage counter vs the server spans' completion_tokens."""
    return show(rq.token_crosscheck(joined, run.spans, run.points), precision=0)


def queue_table(joined: pd.DataFrame):
    """rq.queue_vs_load: per cell, load offered and carried against queue time."""
    return show(rq.queue_vs_load(joined), precision=2)


def probe_check_table(run: Run):
    """Per probe request: its own streaming TTFT/e2e beside the server span's, and the gap."""
    check = rq.probe_vs_server(run.probe, run.spans)
    if check.empty:
        return "no probe request joined to a server span (probe without X-Request-Id, or traces off)"
    return show(check, precision=1)
