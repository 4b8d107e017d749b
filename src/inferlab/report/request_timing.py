"""Per-request timing in a report: what a notebook cell calls after ``joined = request_timing.joined(run)``.

Tables come back as pandas Stylers (``sections.show``), figures as matplotlib Figures, and a
sentence instead where there is nothing to show; the functions filter and label but compute
nothing that analysis.requests and analysis.token_slo do not.

Every TTFT/TPOT shown says where it came from: ``server span`` (the engine's OTLP span of the
request) or ``client stream`` (the stream clock that k6's streamed requests passed through);
the token-SLO tables take the span where a request has one and the clock otherwise
(analysis.token_slo.request_timings) and name the source per cell, with shares when mixed.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown

from ..analysis import requests as rq
from ..analysis import token_slo as ts
from ..runs.reader import Run
from .plots import COMPONENT_COLORS, _done, use_theme
from .sections import show

#: The cell keys a per-cell SLO or goodput table leads with (those the run has).
SHOWN_KEYS = ("cell_id", "payload", "vus", "rate")


def joined(run: Run) -> pd.DataFrame:
    """Every measured k6 request of the run with its server span, edge line and stream clock
    record (analysis.requests.join_run)."""
    return rq.join_run(run)


def percentile_table(joined: pd.DataFrame):
    """TTFT and TPOT (server span, client stream: each source its own row), e2e and queue
    (server span) and k6 duration: p50/p90/p95/p99 per cell, ms."""
    wide = rq.percentile_table(rq.request_percentiles(joined))
    return show(wide.drop(columns=["metric"]).rename(columns={"label": "metric"}), precision=1)


def join_rate_table(run: Run, joined: pd.DataFrame):
    """rq.join_summary, shares as percentages."""
    s = rq.join_summary(joined, run.spans, run.edge)
    fmt = {c: "{:.1%}" for c in s.columns if c.startswith("share_")}
    return show(s, precision=0).format(fmt, na_rep="-")


def _clock_part(joined: pd.DataFrame) -> str:
    """`, K (x %) to a stream clock record` where the run has a clock, else ''."""
    if "joined_clock" not in joined.columns or not joined["joined_clock"].notna().any():
        return ""
    k = int(joined["joined_clock"].sum())
    return f", **{k}** ({joined['joined_clock'].astype(float).mean():.1%}) to a stream clock record"


def join_md(joined: pd.DataFrame) -> Markdown:
    """One line: how many measured requests joined a span (and an edge line, and a stream clock
    record), against the 99 % bar."""
    n = len(joined)
    if not n:
        return Markdown("No measured k6 request in this run.")
    if joined["request_id"].isna().all():
        return Markdown(f"The {n} measured k6 requests carry no X-Request-Id (recorded before request ids): "
                        "nothing to join, no per-request server timing.")
    if not joined["joined_server"].any():
        clock = _clock_part(joined)
        return Markdown(f"None of the {n} measured requests has a server span: the run holds none (spans are "
                        "collected from the local engine, or on Kubernetes from the tracing component's Collector, "
                        "with `observe.traces`), so the server-side tables below "
                        "are empty" + (f"; TTFT and TPOT come from the client stream clock{clock}." if clock else "."))
    server = joined["joined_server"].mean()
    line = f"**{joined['joined_server'].sum()} of {n}** measured requests ({server:.1%}) joined to a server span"
    if joined["joined_edge"].notna().any():
        line += f", **{int(joined['joined_edge'].sum())}** ({joined['joined_edge'].astype(float).mean():.1%}) to an edge log line"
    line += _clock_part(joined)
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
    return show(out, precision=1).format(fmt)


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
        bars = ax.barh(cells, width, left=left, color=COMPONENT_COLORS[comp], label=comp,
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


def _source_names(t: pd.DataFrame, metric: str) -> str:
    """The sources of ``metric`` over ``t``'s rows: one name, or each with its share."""
    counts = t[f"{metric}_source"].dropna().value_counts()
    if len(counts) == 1:
        return str(counts.index[0])
    return ", ".join(f"{name} {n / counts.sum():.0%}" for name, n in counts.items())


def ttft_tpot_distributions(joined: pd.DataFrame):
    """ECDFs of TTFT and TPOT per cell over the successful requests that have them: from the
    server span where a request has one, else from the client stream clock (the title says which)."""
    t = ts.request_timings(joined)
    ok = t[t["ok"] & (t["ttft_ms"].notna() | t["tpot_ms"].notna())]
    if ok.empty:
        return "no successful request has a TTFT or TPOT (no server span, no stream clock record)"
    use_theme()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    for ax, col, title in ((axes[0], "ttft_ms", "TTFT (ms)"), (axes[1], "tpot_ms", "TPOT (ms)")):
        data = ok[ok[col].notna()]
        if data.empty:
            ax.set_axis_off()
            continue
        sns.ecdfplot(data=data, x=col, hue="cell_id", ax=ax, legend=ax is axes[1])
        ax.set(xlabel=f"{title}, {_source_names(data, col)}", ylabel="fraction of requests")
    if axes[1].get_legend():
        sns.move_legend(axes[1], "lower right", fontsize=7, title=None)
    return _done(fig, "TTFT and TPOT of every measured request (server span where there is one, else client stream)")


def _bounds(run: Run):
    """The run's SLO bounds (analysis.token_slo.slo_bounds of the recorded spec's ``slo``)."""
    return ts.slo_bounds(run.manifest.spec["slo"])


def sources_md(joined: pd.DataFrame) -> Markdown:
    """One line per token metric: how many measured requests took it from a server span, how
    many from the client stream clock, how many have none."""
    t = ts.request_timings(joined)
    if t.empty:
        return Markdown("No measured k6 request in this run.")
    lines = []
    for metric in ("ttft_ms", "tpot_ms"):
        counts = t[f"{metric}_source"].fillna("none").value_counts()
        parts = ", ".join(f"{name}: {counts.get(name, 0)}" for name in (ts.SERVER, ts.CLIENT_STREAM, "none"))
        lines.append(f"- **{ts.LABELS[metric]}** of {len(t)} measured requests: {parts}")
    return Markdown("Where each request's TTFT and TPOT came from (a server span wins where both exist; "
                    "e2e is always k6's duration):\n\n" + "\n".join(lines))


def slo_table(run: Run, joined: pd.DataFrame):
    """Per cell and SLO bound (TTFT, TPOT, e2e at the spec's percentiles): the value at that
    percentile, whether it is within the bound, the requests with a value, the violations
    (failed and missing count), the allowed share, the requests that percentile needs to be
    shown met at 95 % confidence, and the source of the values."""
    if not run.manifest.spec.get("slo"):
        return "the run recorded no SLO (imported): no SLO table"
    table = ts.slo_percentile_table(ts.request_timings(joined), _bounds(run))
    if table.empty:
        return "no measured request: no SLO table"
    keys = [c for c in table.columns if c in SHOWN_KEYS]
    out = table[[*keys, "label", "bound", "value", "met", "n", "violations", "violating_share", "allowed_share",
                 "needed", "source"]]
    fmt = {c: "{:.1%}" for c in ("violating_share", "allowed_share")}
    return show(out, precision=1).format(fmt, na_rep="-")


def goodput_table(run: Run, joined: pd.DataFrame):
    """Per cell: requests, successful, good (within every measured SLO bound at once), the good
    share, the bounds no request could be judged on, and the TTFT/TPOT sources."""
    if not run.manifest.spec.get("slo"):
        return "the run recorded no SLO (imported): no goodput"
    t, bounds = ts.request_timings(joined), _bounds(run)
    g = ts.goodput_table(t, bounds)
    if g.empty:
        return "no measured request: no goodput"
    if "cell_id" in g.columns:  # the per-cell TTFT/TPOT sources (the cell summary's column)
        g = g.merge(ts.cell_goodput(t, bounds)[["cell_id", "slo_sources"]], on="cell_id", how="left")
    keys = [c for c in g.columns if c in SHOWN_KEYS]
    g = g[[*keys, "requests", "ok", "good", "good_share", "unmeasured", *(["slo_sources"] if "slo_sources" in g else [])]]
    return show(g, precision=0).format({"good_share": "{:.1%}"}, na_rep="-")


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
