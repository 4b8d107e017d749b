"""Figures from tidy frames, by column name; one look everywhere. Functions never reshape
their input beyond filtering; each returns the matplotlib Figure (notebooks display it)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ..analysis.knee import RampAnalysis

PALETTE = "colorblind"
#: One colour per part of a request's time (analysis.requests.COMPONENTS, analysis.attribution.PARTS):
#: the request-timing breakdown and the compare report's attribution draw them alike.
COMPONENT_COLORS = {"client": "#9e9e9e", "edge": "#bdbdbd", "api_server": "#8c6d31", "queue": "#d62728",
                    "prefill": "#1f77b4", "decode": "#2ca02c", "remainder": "#ff7f0e"}


def use_theme() -> None:
    sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE, rc={"figure.dpi": 90, "savefig.dpi": 90})


def _done(fig, title: str):
    fig.suptitle(title, fontsize=12, fontweight="bold")
    fig.tight_layout()
    plt.close(fig)  # the returned Figure is displayed once by the notebook, not again by pyplot
    return fig


def _vs_concurrency(long: pd.DataFrame, y: str, ylabel: str, title: str, **facets):
    """Line plot of a long table against VUs (log x), one panel per payload; a run without
    closed-loop cells (open-loop workload, arrival-rate cells) gets a sentence instead."""
    long = long[pd.to_numeric(long["vus"], errors="coerce").notna()]
    if long.empty:
        from IPython.display import Markdown

        return Markdown("No closed-loop cells (fixed VUs) in this run: nothing to plot against concurrency.")
    long = long.assign(vus=pd.to_numeric(long["vus"]))
    use_theme()
    g = sns.relplot(data=long, x="vus", y=y, col="payload", kind="line", marker="o",
                    facet_kws={"sharey": False}, **facets)
    g.set(xscale="log")
    g.set_axis_labels("concurrent VUs", ylabel)
    return _done(g.figure, title)


def throughput_vs_concurrency(cells: pd.DataFrame, hue: str | None = None):
    """RPS and tokens/s vs VUs, one panel per payload (and per config with ``hue``)."""
    long = cells.melt(id_vars=["payload", "vus", *([hue] if hue else [])], value_vars=["rps", "tokens_per_s"],
                      var_name="measure", value_name="value")
    return _vs_concurrency(long, "value", "", "Throughput vs concurrency (requests/s, generated tokens/s)",
                           hue=hue, row="measure", height=2.8, aspect=1.5)


def latency_vs_concurrency(cells: pd.DataFrame):
    long = cells.melt(id_vars=["payload", "vus"], value_vars=["latency_p50_ms", "latency_p95_ms", "latency_p99_ms"],
                      var_name="percentile", value_name="latency_ms")
    long["percentile"] = long["percentile"].str.extract(r"_(p\d+)_")[0]
    return _vs_concurrency(long, "latency_ms", "end-to-end latency (ms)", "Latency percentiles vs concurrency",
                           hue="percentile", height=3, aspect=1.4)


def latency_cdf(requests: pd.DataFrame):
    use_theme()
    df = requests[requests["ok"]]
    # workload cells have no payload or fixed VUs: one panel per cell then
    has = {c: c in df.columns and df[c].notna().any() for c in ("payload", "vus")}
    g = sns.displot(data=df, x="duration_ms", hue="vus" if has["vus"] else "cell_id",
                    col="payload" if has["payload"] else "cell_id", kind="ecdf", height=3, aspect=1.4,
                    palette="viridis", facet_kws={"sharex": False})
    g.set_axis_labels("end-to-end latency (ms)", "fraction of requests")
    return _done(g.figure, "Latency CDF per concurrency")


def timeline(ts: pd.DataFrame, util: pd.DataFrame | None, util_label: str):
    """RPS, p95 latency and utilization on one shared time axis."""
    use_theme()
    fig, axes = plt.subplots(3, 1, figsize=(10, 6.5), sharex=True)
    sns.lineplot(data=ts, x="ts", y="rps", hue="cell_id", ax=axes[0], legend=False, drawstyle="steps-post")
    axes[0].set_ylabel("completed RPS")
    sns.lineplot(data=ts, x="ts", y="latency_p95_ms", hue="cell_id", ax=axes[1], legend=False)
    axes[1].set_ylabel("p95 latency (ms)")
    if util is not None and not util.empty:
        sns.lineplot(data=util, x="ts", y="value", hue="series", ax=axes[2])
        axes[2].legend(fontsize=7, loc="upper right")
    axes[2].set_ylabel(util_label)
    axes[2].set_xlabel("time (UTC)")
    return _done(fig, "Time series: load, latency and utilization")


def probe_distributions(probe: pd.DataFrame, gaps: pd.DataFrame):
    use_theme()
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    ok = probe[probe["ok"]]
    sns.boxplot(data=ok, x="ttft_ms", y="cell_id", ax=axes[0], color="C0")
    axes[0].set_title("TTFT (ms)")
    sns.boxplot(data=ok, x="headers_ms", y="cell_id", ax=axes[1], color="C1")
    axes[1].set_title("TTFB: headers (ms) - not TTFT")
    if not gaps.empty:
        sns.histplot(data=gaps, x="itl_ms", hue="cell_id", ax=axes[2], element="step", stat="density",
                     common_norm=False, log_scale=True, legend=False)
    axes[2].set_title("inter-token gaps (ms)")
    return _done(fig, "Streaming probe: TTFT, TTFB and inter-token latency")


def ramp_knee(ramp: RampAnalysis):
    """Target vs achieved rate and p50/p95 per window, the knee marked; None without a ramp cell."""
    if ramp.cell_id is None:
        return None
    windows, knee = ramp.windows, ramp.knee
    use_theme()
    fig, (a, b) = plt.subplots(2, 1, figsize=(10, 5.5), sharex=True)
    a.plot(windows["t_start_s"], windows["target_rps"], "--", label="target rate")
    a.plot(windows["t_start_s"], windows["achieved_rps"], "o-", label="achieved")
    if not np.isnan(knee.get("knee_rps", np.nan)):
        a.axhline(knee["knee_rps"], color="C3", lw=1, label=f"knee ~ {knee['knee_rps']:.0f} RPS")
    a.set_ylabel("requests/s")
    a.legend()
    b.plot(windows["t_start_s"], windows["latency_p50_ms"], "o-", label="p50")
    b.plot(windows["t_start_s"], windows["latency_p95_ms"], "o-", label="p95")
    b.set_ylabel("latency (ms)")
    b.set_xlabel("seconds into the ramp (window start)")
    b.legend()
    return _done(fig, "Arrival-rate ramp: where the server stops keeping up")


def closed_loop_stress(cells: pd.DataFrame):
    if cells.empty:
        return "no closed-loop cells in this run"
    use_theme()
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.2))
    long = cells.melt(id_vars=["vus"], value_vars=["latency_p50_ms", "latency_p99_ms"], var_name="p", value_name="ms")
    # a window too small for a quantile leaves NaN: plot what exists, say where nothing does
    for a, data, y, kw in ((ax[0], cells, "rps", {}), (ax[1], long, "ms", {"hue": "p"})):
        data = data.dropna(subset=[y])
        if data.empty:
            a.text(0.5, 0.5, "too few requests in the steady windows", ha="center", va="center", transform=a.transAxes)
            continue
        sns.lineplot(data=data, x="vus", y=y, marker="o", ax=a, **kw)
        a.set(xscale="log")
    ax[0].set(xlabel="VUs", ylabel="RPS")
    ax[1].set(xlabel="VUs", ylabel="latency (ms)")
    return _done(fig, "Closed loop at high concurrency")


def errors_over_time(ts: pd.DataFrame):
    use_theme()
    fig, ax = plt.subplots(figsize=(10, 2.5))
    sns.lineplot(data=ts, x="ts", y="errors_per_s", hue="cell_id", ax=ax, drawstyle="steps-post")
    ax.set(ylabel="failed requests/s", xlabel="time (UTC)")
    return _done(fig, "Errors over time")


def compare_ratios(res: pd.DataFrame):
    """Ratio tuned/baseline with 95 % CI per cell and metric (1 = no change)."""
    use_theme()
    df = res[res["metric"].isin(["throughput", "latency_p50", "latency_p95"]) & res["ci_low"].notna()].copy()
    if df.empty:
        return "no intervals to plot: a side has fewer than 2 repeats (run `inferlab ab` for an interleaved comparison)"
    metrics = list(dict.fromkeys(df["metric"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 0.28 * df["cell"].nunique() + 1.5), sharey=True)
    for ax, m in zip(np.atleast_1d(axes), metrics):
        d = df[df["metric"] == m]
        y = np.arange(len(d))
        colors = d["verdict"].map({"better": "C2", "worse": "C3"}).fillna("grey")
        ax.errorbar(d["ratio"], y, xerr=[d["ratio"] - d["ci_low"], d["ci_high"] - d["ratio"]], fmt="none", ecolor="grey")
        ax.scatter(d["ratio"], y, c=list(colors), zorder=3)
        ax.axvline(1, color="black", lw=0.8)
        ax.set_xscale("log")
        ax.set_yticks(y, d["cell"])
        ax.set_title(f"{m}: tuned / baseline")
    return _done(fig, "Tuned vs baseline (95 % interval over repeats; green better, red worse, grey no significant "
                      "difference after Holm's correction)")
