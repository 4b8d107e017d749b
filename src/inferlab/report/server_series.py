"""The server's time series beside k6's, on one time axis, and the alert timeline.

``server_panels(series, requests, window_s)`` builds the long table the figure plots (panel,
measure, ts, value): k6 requests/s and latency p50/p95 per window (from the requests' end_ts
and duration_ms), vLLM running/waiting requests, KV-cache use (%), prompt and generation
tokens/s, and the server's latency quantiles (e2e and TTFT). Label sets are combined per
measure: counts and rates summed (several pods or engines), KV-cache use averaged, quantiles
kept per label set only where there is one (else the first label set, named in the measure).
``server_series_figure(panels, timeline, title)`` draws it; ``timeline`` is
:func:`inferlab.analysis.alerts.alert_timeline`'s table (pending and firing bars).
``alerts_md(timeline, metas)`` says where the series came from, under which rule profile the
alerts were evaluated (the test profile is always named) and which alerts fired.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown

from ..ingest.prometheus import VLLM_METRICS
from .plots import _done, use_theme
from .sections import Section

PANEL_COLUMNS = ["panel", "measure", "ts", "value"]
STATE_COLORS = {"pending": "#f0ad4e", "firing": "#d9534f"}


def _families(canonical: str) -> list[str]:
    return VLLM_METRICS[canonical]


def _pick(series: pd.DataFrame, canonical: str, kind: str) -> pd.DataFrame:
    """Rows of the first family name (newest release first) this run has for ``canonical``."""
    for fam in _families(canonical):
        s = series[(series["family"] == fam) & (series["kind"] == kind)]
        if not s.empty:
            return s
    return series.iloc[0:0]


def _combined(rows: pd.DataFrame, how: str) -> pd.Series:
    return rows.groupby("ts")["value"].agg(how)


def server_panels(series: pd.DataFrame, requests: pd.DataFrame | None = None, window_s: float = 5.0) -> pd.DataFrame:
    """The long table :func:`server_series_figure` plots (see the module doc)."""
    parts: list[tuple[str, str, pd.Series]] = []
    if requests is not None and not requests.empty:
        req = requests[requests["phase"] == "measure"] if "phase" in requests.columns else requests
        end = pd.to_datetime(req["end_ts"], utc=True).dt.floor(f"{window_s:g}s") + pd.Timedelta(seconds=window_s)
        parts.append(("k6 requests/s", "completed (k6)", req.groupby(end).size() / window_s))
        ok = req[req["ok"]] if "ok" in req.columns else req
        lat = ok.groupby(end[ok.index])["duration_ms"]
        parts += [("latency (s)", "k6 e2e p50", lat.quantile(0.5) / 1000), ("latency (s)", "k6 e2e p95", lat.quantile(0.95) / 1000)]
    if series is not None and not series.empty:
        parts += [("requests in the server", "running", _combined(_pick(series, "requests_running", "gauge"), "sum")),
                  ("requests in the server", "waiting", _combined(_pick(series, "requests_waiting", "gauge"), "sum")),
                  ("KV-cache use (%)", "KV cache", _combined(_pick(series, "kv_cache_usage", "gauge"), "mean") * 100),
                  ("tokens/s", "prompt", _combined(_pick(series, "prompt_tokens", "rate"), "sum")),
                  ("tokens/s", "generation", _combined(_pick(series, "generation_tokens", "rate"), "sum")),
                  ("k6 requests/s", "finished (server)", _combined(_pick(series, "e2e_seconds", "rate"), "sum"))]
        for canonical, short in (("e2e_seconds", "server e2e"), ("ttft_seconds", "server TTFT")):
            for q in ("p50", "p95") if canonical == "e2e_seconds" else ("p95",):
                rows = _pick(series, canonical, q)
                if rows["labels"].nunique() > 1:  # a quantile cannot be summed: one label set, named
                    first = sorted(rows["labels"].unique())[0]
                    rows, short = rows[rows["labels"] == first], f"{short} {first}"
                parts.append(("latency (s)", f"{short} {q}", rows.set_index("ts")["value"]))
    frames = [pd.DataFrame({"panel": p, "measure": m, "ts": s.index, "value": s.to_numpy()}) for p, m, s in parts if len(s)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=PANEL_COLUMNS)


def server_series_figure(panels: pd.DataFrame, timeline: pd.DataFrame | None = None,
                         title: str = "Server time series beside k6 (one time axis)"):
    """One row per panel, shared time axis; the alert timeline as the last row."""
    use_theme()
    names = list(dict.fromkeys(panels["panel"]))
    show_alerts = timeline is not None
    n = len(names) + int(show_alerts)
    fig, axes = plt.subplots(max(n, 1), 1, figsize=(10, 1.9 * max(n, 1) + 0.6), sharex=True, squeeze=False)
    axes = axes[:, 0]
    for ax, name in zip(axes, names, strict=False):
        for measure, d in panels[panels["panel"] == name].groupby("measure", sort=False):
            ax.plot(d["ts"], d["value"], marker="." if len(d) < 40 else None, label=measure)
        ax.set_ylabel(name, fontsize=8)
        ax.legend(fontsize=7, loc="upper left", ncols=3)
    if show_alerts:
        ax = axes[-1]
        if timeline.empty:
            ax.text(0.5, 0.5, "no alert pending or firing", transform=ax.transAxes, ha="center", va="center")
            ax.set_yticks([])
        else:
            names_a = sorted(timeline["alertname"].unique())
            for _, r in timeline.iterrows():
                y = names_a.index(r["alertname"])
                width = r["end"] - r["start"] + pd.Timedelta(seconds=1)  # a sample stands for its query step (1 s)
                ax.barh(y, width, left=r["start"], height=0.6, color=STATE_COLORS.get(r["state"], "grey"))
            ax.set_yticks(range(len(names_a)), names_a, fontsize=8)
            handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in STATE_COLORS.values()]
            ax.legend(handles, list(STATE_COLORS), fontsize=7, loc="upper left")
        ax.set_ylabel("alerts", fontsize=8)
    axes[-1].set_xlabel("time (UTC)")
    return _done(fig, title)


def alerts_md(timeline: pd.DataFrame, metas: list[dict], has_series: bool = True) -> Markdown:
    """Source, rule profile and outcome of the alert rules, for the report (``metas``: the run's
    Prometheus ``meta.json`` documents, ``Run.prometheus_meta``)."""
    if not metas:
        src = "the 1 s /metrics sampler (no Prometheus: alert rules not evaluated)" if has_series else "none recorded"
        return Markdown(f"Server series: {src}.")
    lines = []
    for m in metas:
        where = "a local Prometheus (1 s scrapes)" if m.get("source") == "local" else f"the cluster Prometheus {m.get('prometheus_url')}"
        lines.append(f"Server series: {where}, {m.get('start')} to {m.get('end')}, step {m.get('step_s')} s.")
        prof = m.get("rule_profile") or {}
        if prof.get("name") == "test":
            lines.append(f"**Alert rules under the test profile**: every `for:` capped at {prof.get('for_s')} s and every "
                         f"range window set to {prof.get('range_s')} s, so alerts show within a short run; thresholds "
                         "are the platform's, unchanged.")
        elif prof:
            lines.append("Alert rules as the platform ships them (`platform/components/monitoring/vllm-prometheusrule.yaml`).")
        if m.get("errors"):
            lines.append(f"Queries that failed: {', '.join(sorted(m['errors']))}.")
    firing = sorted(set(timeline.loc[timeline["state"] == "firing", "alertname"]))
    pending = sorted(set(timeline.loc[timeline["state"] == "pending", "alertname"]) - set(firing))
    lines.append(f"Firing: {', '.join(firing) or 'none'}." + (f" Pending only: {', '.join(pending)}." if pending else ""))
    return Markdown("\n\n".join(lines))


def section(run, requests: pd.DataFrame) -> Section:
    """The whole server-series section, in order: the alert summary, then the panels on k6's
    time axis (``requests``: the measured k6 rows) with the alert timeline where a Prometheus
    evaluated the rules."""
    from ..analysis.alerts import alert_timeline

    series = run.series
    timeline = alert_timeline(series)
    out = Section(alerts_md(timeline, run.prometheus_meta, has_series=not series.empty))
    if not series.empty:
        out.add(server_series_figure(server_panels(series, requests), timeline if run.prometheus_meta else None))
    return out
