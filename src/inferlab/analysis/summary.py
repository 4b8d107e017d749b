"""Per-cell results and time series from a Run's tidy tables (measured requests only).

Contract: inputs are ``Run`` tables; outputs are tidy frames with one row per cell (or per
cell x time bucket) and explicit units. Warm-up requests (phase=warmup) never count.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..runs.reader import Run
from .token_slo import cell_goodput, e2e_bound_ms, run_request_timings, slo_bounds
from .validity import check_run
from .window import repeat_metrics

PCTS = {"p50": 0.50, "p95": 0.95, "p99": 0.99}


def measured(run: Run) -> pd.DataFrame:
    req = run.requests
    return req[req["phase"] == "measure"] if not req.empty else req


def _span_s(g: pd.DataFrame) -> float:
    return max((g["end_ts"].max() - g["start_ts"].min()).total_seconds(), 1e-9)


def cell_summary(run: Run) -> pd.DataFrame:
    """One row per cell: requests, errors, RPS, latency percentiles (ms), tokens/s, probe TTFT/TPOT,
    and CPU or GPU utilization while the cell ran. Closed-loop and constant-rate cells report RPS
    and latency inside their steady-state window (``window_s``, ``window_requests``; ramp-up and
    drain cut: analysis/window.py); a ramp over its whole span (it has no steady state). Every
    cell carries ``validity`` (VALID | INVALID) and ``validity_reasons`` (the failed checks,
    "; "-joined) from :func:`inferlab.analysis.validity.check_run`."""
    req = measured(run)
    if req.empty:
        return pd.DataFrame()
    validity = {v.cell_id: v for v in check_run(run)}
    tokens = _tokens_by_cell(run)
    probe = run.probe
    slo_ms = e2e_bound_ms(run.manifest.spec.get("slo"), 10000.0)
    rows = []
    for cell in run.manifest.cells:
        g = req[req["cell_id"] == cell.cell_id]
        if g.empty:
            continue
        span = _span_s(g)
        row = {"run_id": run.run_id, "cell_id": cell.cell_id, "payload": cell.payload, "vus": cell.vus,
               "executor": cell.executor, "status": cell.status, "requests": len(g), "errors": int((~g["ok"]).sum()),
               "error_rate": float((~g["ok"]).mean()), "duration_s": span, "rps": np.nan,
               **{f"latency_{name}_ms": np.nan for name in PCTS}}  # column order; filled below
        if cell.executor == "ramping-arrival-rate":  # no steady state: the whole span
            ok = g.loc[g["ok"], "duration_ms"]
            row["rps"] = len(ok) / span
            row.update({f"latency_{name}_ms": float(ok.quantile(q)) if len(ok) else np.nan for name, q in PCTS.items()})
        else:  # the steady-state window, measured as the comparison measures it (window.repeat_metrics)
            m = repeat_metrics(g, slo_ms, cell.executor, cell.vus)
            row.update(window_s=m["window_s"], window_requests=m["window_requests"], rps=m["throughput"],
                       little_ratio=m["little_ratio"],
                       **{f"latency_{n}_ms": m[f"latency_{n}"] for n in PCTS})
        if cell.executor == "ramping-arrival-rate":
            row["tokens_per_s"] = tokens.get(cell.cell_id, np.nan) / span
        else:  # the window's rate x tokens per successful request: req/s and tokens/s from one window
            row["tokens_per_s"] = row["rps"] * tokens.get(cell.cell_id, np.nan) / max(int(g["ok"].sum()), 1)
        pr = probe[(probe["cell_id"] == cell.cell_id) & probe["ok"]] if not probe.empty else probe
        row["probe_ttft_p50_ms"] = float(pr["ttft_ms"].median()) if len(pr) else np.nan
        row["probe_tpot_p50_ms"] = float(pr["tpot_ms"].median()) if len(pr) else np.nan
        row.update(_utilization(run, g["start_ts"].min(), g["end_ts"].max()))
        v = validity.get(cell.cell_id)
        row["validity"] = v.verdict if v is not None else "VALID"
        row["validity_reasons"] = "; ".join(v.reasons) if v is not None else ""
        rows.append(row)
    return _with_token_goodput(pd.DataFrame(rows), run)


def _with_token_goodput(cells: pd.DataFrame, run: Run) -> pd.DataFrame:
    """The token-level goodput (analysis.token_slo.cell_goodput: every measured request within
    the spec's TTFT, TPOT and e2e bounds at once) beside each cell's rate: ``slo_good_share``,
    ``slo_goodput`` = rps x that share (requests/s), ``slo_unmeasured``, ``slo_sources``. A run
    that recorded no SLO (imported) has no goodput (NaN; ``slo_unmeasured`` says so), never
    one judged against the model's defaults."""
    slo = run.manifest.spec.get("slo")
    good = cell_goodput(run_request_timings(run), slo_bounds(slo or {}))
    if not slo:
        good = good.assign(slo_good_share=np.nan, slo_unmeasured="no SLO recorded")
    cells = cells.merge(good.drop(columns=["slo_good"]), on="cell_id", how="left")
    cells.insert(cells.columns.get_loc("slo_good_share") + 1, "slo_goodput", cells["rps"] * cells["slo_good_share"])
    return cells


def _tokens_by_cell(run: Run) -> dict[str, float]:
    """Generated tokens of measured requests: k6's completion_tokens counter when recorded,
    else ok requests x max_tokens (fixed-length payloads, ignore_eos)."""
    pts = run.points
    if not pts.empty and "completion_tokens" in set(pts["metric"]):
        sel = pts[(pts["metric"] == "completion_tokens") & (pts.get("phase", "measure") == "measure")]
        return sel.groupby("cell_id")["value"].sum().to_dict()
    payloads = run.manifest.spec.get("payloads", {})
    ok = measured(run)
    ok = ok[ok["ok"]]
    return {c: len(g) * float(payloads.get(g["payload"].iloc[0], {}).get("max_tokens", np.nan))
            for c, g in ok.groupby("cell_id")}


def _utilization(run: Run, start: pd.Timestamp, end: pd.Timestamp) -> dict[str, float]:
    gpu = run.gpu
    if not gpu.empty:
        w = gpu[(gpu["ts"] >= start) & (gpu["ts"] <= end) & (gpu["source"] == gpu["source"].iloc[0])]
        out = {}
        for metric, col in (("utilization_gpu_pct", "gpu_util"), ("memory_used_mib", "gpu_mem_mib"), ("power_draw_w", "gpu_power_w")):
            v = w.loc[w["metric"] == metric, "value"]
            out[f"{col}_mean"], out[f"{col}_max"] = (float(v.mean()), float(v.max())) if len(v) else (np.nan, np.nan)
        return out
    host = run.host
    if host.empty:
        return {}
    w = host[(host["ts"] >= start) & (host["ts"] <= end) & (host["metric"] == "cpu_pct")]
    out = {}
    for proc in ("engine", "k6", "system"):
        v = w.loc[w["process"] == proc, "value"]
        out[f"cpu_{proc}_pct_mean"], out[f"cpu_{proc}_pct_max"] = (float(v.mean()), float(v.max())) if len(v) else (np.nan, np.nan)
    return out


def error_breakdown(run: Run) -> pd.DataFrame:
    """Failed measured requests by cell, status and k6 error code."""
    req = measured(run)
    bad = req[~req["ok"]] if not req.empty else req
    cols = ["cell_id", "status", "error_code", "error"]
    if bad.empty:
        return pd.DataFrame(columns=[*cols, "count"])
    return bad.fillna({"error_code": "", "error": ""}).groupby(cols, dropna=False).size().rename("count").reset_index()


def bucket_for(requests: pd.DataFrame) -> str:
    """A time bucket that means something for throughput: at least 1 s and 4 median latencies,
    so a bucket holds several completions per VU (16 concurrent 10 s answers that finish in the
    same second are 1.6 RPS over 10 s, not "16 RPS" in that second)."""
    # the slowest cell's median decides: a bucket that suits short answers would alias long ones
    med = float(requests.groupby("cell_id")["duration_ms"].median().max()) / 1000 if len(requests) else 0.0
    return f"{max(1, int(np.ceil(4 * med)))}s"


def timeseries(run: Run, freq: str = "auto", cells: list[str] | None = None) -> pd.DataFrame:
    """Per time bucket (by request end): completed RPS, p50/p95 latency (ms), errors/s; long per
    cell. ``freq="auto"``: :func:`bucket_for` of the requests shown (``attrs["freq"]`` says which)."""
    req = measured(run)
    if cells:
        req = req[req["cell_id"].isin(cells)]
    if req.empty:
        return pd.DataFrame(columns=["ts", "cell_id", "rps", "latency_p50_ms", "latency_p95_ms", "errors_per_s"])
    freq = bucket_for(req) if freq == "auto" else freq
    secs = pd.Timedelta(freq).total_seconds()
    g = req.groupby(["cell_id", pd.Grouper(key="end_ts", freq=freq)])
    out = pd.DataFrame({
        "rps": g["ok"].sum() / secs,  # successful completions: a failed request is no throughput
        "latency_p50_ms": g["duration_ms"].median(),
        "latency_p95_ms": g["duration_ms"].quantile(0.95),
        "errors_per_s": g["ok"].apply(lambda s: (~s).sum()) / secs,
    }).reset_index().rename(columns={"end_ts": "ts"})
    out.attrs["freq"] = freq
    return out


def probe_summary(run: Run) -> pd.DataFrame:
    """Probe TTFT/TPOT/ITL/e2e percentiles per cell (idle first). TTFB shown beside TTFT on purpose."""
    pr = run.probe
    if pr.empty:
        return pd.DataFrame()
    gaps = run.probe_gaps
    rows = []
    for cell, g in pr.groupby("cell_id", sort=False):
        ok = g[g["ok"]]
        itl = gaps.loc[gaps["cell_id"] == cell, "itl_ms"]
        rows.append({"cell_id": cell, "requests": len(g), "ok": len(ok),
                     "ttfb_p50_ms": ok["headers_ms"].median(), "ttft_p50_ms": ok["ttft_ms"].median(),
                     "ttft_p95_ms": ok["ttft_ms"].quantile(0.95), "tpot_p50_ms": ok["tpot_ms"].median(),
                     "itl_p50_ms": itl.median(), "itl_p99_ms": itl.quantile(0.99), "e2e_p50_ms": ok["e2e_ms"].median()})
    return pd.DataFrame(rows)


def combine(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Stack tidy frames (e.g. two runs' cell summaries with a ``config`` column)."""
    return pd.concat(frames, ignore_index=True)
