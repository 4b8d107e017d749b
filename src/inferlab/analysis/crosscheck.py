"""Measurement truth: what the client measured vs the server's own counters.

Per cell with /metrics snapshots (and per run for run-level snapshots): k6 requests that
succeeded (warm-up included) + probe requests vs the delta of vLLM's request-success counter;
generated tokens (k6's ``completion_tokens`` counter from each response's usage, or
``max_tokens`` x requests when the payload used ignore_eos and the script did not record
usage) vs the delta of ``vllm:generation_tokens_total``; probe TTFT median vs the server's
TTFT histogram median. Differences beyond ``tolerance`` are flagged, never hidden.

A cell that cannot be checked is never silently absent: it gets one row, check ``not checked``,
with the reason in ``note`` (the cell is not complete: its manifest status and reason, e.g. the
target died during it; or a /metrics scrape before or after it is missing). Where a run has
only run-level scrapes (imported runs), its cells are checked together in the ``run`` rows.
"""

from __future__ import annotations

import math

import pandas as pd

from ..ingest import counter_delta, histogram_delta, histogram_quantile
from ..runs.reader import Run

TOLERANCE = 0.03
COLUMNS = ["run_id", "scope", "check", "client", "server", "diff_pct", "agrees", "note"]
NOT_CHECKED = "not checked"


def _row(run: Run, scope: str, check: str, client: float, server: float, note: str = "",
         tolerance: float = TOLERANCE) -> dict:
    diff = (client - server) / server * 100 if server else (0.0 if client == server else math.inf)
    agrees = bool(abs(diff) <= tolerance * 100) if not math.isnan(server) else False
    return {"run_id": run.run_id, "scope": scope, "check": check, "client": client, "server": server,
            "diff_pct": round(diff, 2), "agrees": agrees, "note": note}


def _not_checked(run: Run, scope: str, why: str) -> dict:
    return {"run_id": run.run_id, "scope": scope, "check": NOT_CHECKED, "client": math.nan, "server": math.nan,
            "diff_pct": math.nan, "agrees": None, "note": why}


def _why_not_checked(cell, before: pd.DataFrame, after: pd.DataFrame) -> str:
    """Why a scope cannot be checked ("" when it can): an incomplete cell, or a missing scrape."""
    if cell is not None and cell.status != "complete":
        return f"cell {cell.status}" + (f": {cell.reason}" if cell.reason else "")
    missing = [w for w, df in (("before", before), ("after", after)) if df.empty]
    return f"no /metrics scrape {' or '.join(missing)} it" if missing else ""


def _client_tokens(run: Run, cells: list[str]) -> tuple[float, str]:
    pts = run.points
    if not pts.empty and "completion_tokens" in set(pts["metric"]):
        sel = pts[(pts["metric"] == "completion_tokens") & pts["cell_id"].isin(cells)]
        return float(sel["value"].sum()), "k6 completion_tokens (server usage per response)"
    spec_payloads = run.manifest.spec.get("payloads", {})
    req = run.requests[run.requests["cell_id"].isin(cells) & run.requests["ok"]]
    total = 0.0
    for payload, n in req.groupby("payload").size().items():
        total += n * float(spec_payloads.get(payload, {}).get("max_tokens", math.nan))
    return total, "ok requests x max_tokens (ignore_eos)"


def scrapes(srv: pd.DataFrame, scope: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Before/after samples of one scope. Where every pod was scraped directly, their sum is
    the server's count: a scrape through a Service reaches one replica only."""
    rows = srv[srv["cell_id"] == scope]
    if "pod" in rows.columns and (rows["pod"] != "").any():
        rows = rows[rows["pod"] != ""]
    return rows[rows["when"] == "before"], rows[rows["when"] == "after"]


def per_pod(run: Run) -> pd.DataFrame:
    """Per cell and vLLM pod: requests and generated tokens (server counter deltas) and each
    pod's share of the cell's requests. Empty unless pods were scraped (k8s targets)."""
    srv = run.server
    cols = ["cell_id", "pod", "requests", "generated_tokens", "share_pct"]
    if srv.empty or "pod" not in srv.columns or not (srv["pod"] != "").any():
        return pd.DataFrame(columns=cols)
    rows = []
    for (cell, pod), g in srv[srv["pod"] != ""].groupby(["cell_id", "pod"], sort=True):
        before, after = g[g["when"] == "before"], g[g["when"] == "after"]
        rows.append({"cell_id": cell, "pod": pod, "requests": counter_delta(before, after, "request_success"),
                     "generated_tokens": counter_delta(before, after, "generation_tokens")})
    df = pd.DataFrame(rows, columns=cols[:-1])
    df["share_pct"] = 100 * df["requests"] / df.groupby("cell_id")["requests"].transform("sum")
    return df


def crosscheck(run: Run, tolerance: float = TOLERANCE) -> pd.DataFrame:
    srv = run.server
    records = {c.cell_id: c for c in run.manifest.cells}
    scopes = list(srv["cell_id"].unique()) if not srv.empty else []
    if "run" not in scopes:  # every cell gets rows: checked, or "not checked" with the reason
        scopes += [c for c in records if c not in scopes]
    rows = []
    probe = run.probe
    for scope in scopes:
        before, after = scrapes(srv, scope) if not srv.empty else (srv, srv)
        why = _why_not_checked(records.get(scope), before, after)
        if why:
            rows.append(_not_checked(run, scope, why))
            continue
        cells = [c.cell_id for c in run.manifest.cells] if scope == "run" else [scope]
        req = run.requests[run.requests["cell_id"].isin(cells)] if not run.requests.empty else run.requests
        n_ok = int(req["ok"].sum()) if not req.empty else 0
        n_warm = int((req["phase"] == "warmup").sum()) if not req.empty else 0
        pr = probe[probe["cell_id"].isin(cells)] if not probe.empty else probe
        n_probe = int(pr["ok"].sum()) if not pr.empty else 0
        note = f"{n_ok - n_warm} measured + {n_warm} warm-up + {n_probe} probe"
        rows.append(_row(run, scope, "requests", n_ok + n_probe, counter_delta(before, after, "request_success"), note, tolerance))
        tokens, how = _client_tokens(run, cells)
        probe_tokens = float(pr["completion_tokens"].fillna(pr["chunks"]).sum()) if not pr.empty else 0.0
        rows.append(_row(run, scope, "generated_tokens", tokens + probe_tokens,
                         counter_delta(before, after, "generation_tokens"), f"{how}; + {probe_tokens:.0f} probe", tolerance))
        if not pr.empty and pr["ttft_ms"].notna().any():
            server_ttft = histogram_quantile(histogram_delta(before, after, "ttft_seconds"), 0.5) * 1000
            rows.append(_row(run, scope, "ttft_median_ms", float(pr["ttft_ms"].median()), server_ttft,
                             "probe median vs server histogram median ("
                             + ("only the probe's requests in the window: like for like" if scope == "idle"
                                else "all requests in the window, k6's queued ones too") + "; bucketed)", tolerance=0.5))
    return pd.DataFrame(rows, columns=COLUMNS)
