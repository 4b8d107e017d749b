"""The edge section of a report: what nginx added to each request, TLS, and the rate limit.

Inputs are the tidy tables (k6 requests, :func:`inferlab.ingest.edge_log.read_edge_log`) and
the edge note the target leaves in the manifest (``target.deployment["edge"]``); each function
returns something a notebook cell displays (a table, a Figure, Markdown).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from IPython.display import Markdown

from ..analysis import edge as ae
from .plots import _done, use_theme
from .sections import Section, show


def edge_md(note: dict | None) -> Markdown:
    """One sentence on how the edge was set up (or that the run had none)."""
    if not note:
        return Markdown("This run did not go through the local edge.")
    limit = (f"`limit_req` {note['rate_limit_rps']} r/s per client, burst {note['burst']}, nodelay, "
             f"rejected with {note['limit_status']}" if note.get("rate_limit_rps") else "no rate limit")
    tls = f"TLS from the project CA (sha256 `{note['ca_sha256'][:16]}...`)" if note.get("tls") else "plain HTTP"
    return Markdown(f"Requests went through the local edge (nginx {note.get('nginx') or '?'}) to "
                    f"`{note['upstream']}`: {tls}; {limit}; {note.get('timeout_s')} s timeouts; its access log "
                    f"is `{note.get('access_log')}` in the run record.")


def edge_table(k6: pd.DataFrame, edge: pd.DataFrame, limit_status: int = 503):
    """Per cell: joined share, overhead p50/p95 (client - edge, edge - upstream), TLS handshakes,
    rejected share and when rejection began."""
    cells = ae.edge_cells(k6, edge, limit_status)
    return show(cells, precision=2) if not cells.empty else "no measured requests in this run"


def offered_load(k6: pd.DataFrame) -> pd.DataFrame:
    """Per cell, the offered rate and duration of an open-loop cell as k6 sent it: n requests
    started over a span s at constant spacing s/(n-1), so duration = s*n/(n-1) and
    offered = n/duration. Meaningful for constant-arrival-rate cells only."""
    cell = "cell_id" if "cell_id" in k6.columns else "cell"
    m = k6[k6["phase"] == "measure"] if "phase" in k6.columns else k6
    rows = []
    for cell_id, g in m.groupby(cell, sort=True):
        n, span = len(g), (g["start_ts"].max() - g["start_ts"].min()).total_seconds()
        duration = span * n / (n - 1) if n > 1 and span > 0 else np.nan
        rows.append({"cell_id": cell_id, "offered_rps": n / duration if duration else np.nan, "duration_s": duration})
    return pd.DataFrame(rows)


def rejection_table(k6: pd.DataFrame, edge: pd.DataFrame, rate_limit_rps: float, burst: float,
                    limit_status: int = 503):
    """Measured rejected share beside ``1 - (rate*T + burst)/(offered*T)`` for every open-loop
    cell (offered rate and T from :func:`offered_load`; for a ramp the prediction assumes a
    constant rate, as in ``edge-ratelimit-local``), and the onset beside burst/(offered-rate)."""
    cells = ae.edge_cells(k6, edge, limit_status)
    load = offered_load(k6)
    open_loop = load[load["cell_id"].str.contains(r"-(?:at|rate)\d", regex=True)]  # constant rate, or a ramp
    rows = [ae.rejected_vs_prediction(cells[cells["cell_id"] == r.cell_id], rate_limit_rps, burst, r.offered_rps,
                                      r.duration_s).assign(offered_rps=r.offered_rps, duration_s=r.duration_s)
            for r in open_loop.itertuples() if r.cell_id in set(cells["cell_id"])]
    if not rows:
        return "no open-loop (constant arrival rate) cell in this run: the prediction needs one"
    return show(pd.concat(rows, ignore_index=True), precision=3)


def rejections_plot(k6: pd.DataFrame, edge: pd.DataFrame, limit_status: int = 503):
    """Cumulative admitted and rejected requests against seconds into each cell (rejected: the
    edge's own ``limit_status`` answers, :func:`inferlab.analysis.edge.edge_rejected`; an
    upstream's 503 passed through is admitted)."""
    ids = ae.split_request_id(edge["request_id"])
    lines = edge.assign(cell_id=ids["cell_id"])[ids["measured"]]
    if lines.empty:
        return "no measured requests in the edge log"
    cell = "cell_id" if "cell_id" in k6.columns else "cell"
    starts = k6.groupby(cell)["start_ts"].min()
    lines = lines[lines["cell_id"].isin(starts.index)].sort_values("ts")
    lines = lines.assign(t_s=(lines["ts"] - lines["cell_id"].map(starts)).dt.total_seconds(),
                         outcome=np.where(ae.edge_rejected(lines, limit_status), "rejected", "admitted"))
    lines["count"] = lines.groupby(["cell_id", "outcome"]).cumcount() + 1
    use_theme()
    g = sns.relplot(data=lines, x="t_s", y="count", hue="outcome", col="cell_id", kind="line", drawstyle="steps-post",
                    height=3, aspect=1.4, facet_kws={"sharex": False, "sharey": False})
    g.set_axis_labels("seconds into the cell", "requests (cumulative)")
    return _done(g.figure, f"Rate limit: admitted vs rejected ({limit_status}) requests over time")


def overhead_plot(k6: pd.DataFrame, edge: pd.DataFrame):
    """ECDFs of the two overheads per cell: client - edge, edge - upstream (ms)."""
    j = ae.join_edge(k6[k6["phase"] == "measure"] if "phase" in k6.columns else k6, edge)
    cell = "cell_id" if "cell_id" in j.columns else "cell"
    long = j.melt(id_vars=[cell], value_vars=["client_minus_edge_ms", "edge_minus_upstream_ms"],
                  var_name="overhead", value_name="ms").dropna()
    if long.empty:
        return "no request joined to an edge line with an upstream"
    use_theme()
    g = sns.displot(data=long, x="ms", hue=cell, col="overhead", kind="ecdf", height=3, aspect=1.4,
                    facet_kws={"sharex": False})
    g.set_axis_labels("ms", "fraction of requests")
    return _done(g.figure, "Edge overhead per request: client - edge, edge (nginx) - upstream")


# One call per notebook cell, from the run itself: a run without an edge (or without a limit)
# gets a sentence instead, so the load-test notebook stays a straight list of calls.

def _note(run) -> dict:
    return run.manifest.target.deployment.get("edge") or {}


def summary(run) -> Markdown:
    """How the run's edge was set up, or that it had none (k8s: the ingress controller's log)."""
    if not _note(run) and not run.edge.empty:
        return Markdown("Requests went through the cluster's ingress-nginx; its access log for the run's window "
                        "(`edge/ingress-access.log`) is joined to k6's rows by request id.")
    return edge_md(_note(run))


def cells(run):
    """:func:`edge_table` of the run, or why there is none."""
    if run.edge.empty:
        return "no edge access log in this run"
    return edge_table(run.requests, run.edge, _note(run).get("limit_status", 503))


def rate_limit(run):
    """:func:`rejection_table` of the run (prediction beside measurement), or why there is none."""
    note = _note(run)
    if run.edge.empty or not note.get("rate_limit_rps"):
        return "no rate-limited edge in this run"
    return rejection_table(run.requests, run.edge, note["rate_limit_rps"], note["burst"], note["limit_status"])


def rate_limit_plot(run):
    note = _note(run)
    if run.edge.empty or not note.get("rate_limit_rps"):
        return "no rate-limited edge in this run"
    return rejections_plot(run.requests, run.edge, note["limit_status"])


def overhead(run):
    if run.edge.empty:
        return "no edge access log in this run"
    return overhead_plot(run.requests, run.edge)


def section(run) -> Section:
    """The whole edge section, in order; one sentence for a run without an edge."""
    out = Section(summary(run))
    if run.edge.empty:
        return out
    out.add(cells(run))
    if _note(run).get("rate_limit_rps"):
        out.add(rate_limit(run), rate_limit_plot(run))
    return out.add(overhead(run))
