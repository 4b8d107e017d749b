"""What a workload actually sent: per-request workload columns, arrival timing, token accuracy.

Input: k6's request rows (``Run.requests``, or the joined table of analysis.requests, which
adds the server's TTFT/TPOT) and k6's other Points (``Run.points``). For every workload request
chat.js writes one ``workload_requests`` Point whose metadata (``meta_<key>`` columns) says
what it sent: session, turn, prefix_group, the planned input_tokens/output_tokens,
expected_prompt_tokens (from the token calibration), sent_ms (epoch ms, taken right before
sending) and, in an open loop, scheduled_ms (offset from the scenario start) and send_lag_ms
(actual send - scheduled time). The server's usage (prompt_tokens, completion_tokens) arrives
as k6 Counter Points; all of them carry the request's request_id.

Contracts:
- :func:`workload_requests`: one row per measured workload request, typed columns above,
  ``prompt_tokens``/``completion_tokens`` (the server's span where a joined table has them,
  else the response's usage), ``prompt_error`` = prompt_tokens / expected - 1.
- :func:`arrival_summary`: per cell, sessions sent / planned / dropped, the inter-arrival CV of
  the sent first turns (and of their schedule), send lag p50/p99/max and late sends.
- :func:`token_accuracy`, :func:`latency_by_turn`: per cell (and turn) tables for the report.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..specs.workload import load_workload
from .window import min_requests

META = {"session": "Int64", "turn": "Int64", "prefix_group": "Int64", "input_tokens": "Int64",
        "output_tokens": "Int64", "expected_prompt_tokens": "Int64", "scheduled_ms": "Int64",
        "sent_ms": "Int64", "send_lag_ms": "Float64"}
KEYS = ["run_id", "cell_id"]
USAGE = {"prompt_tokens": "usage_prompt_tokens", "completion_tokens": "usage_completion_tokens"}


def _id_column(df: pd.DataFrame) -> str | None:
    return next((c for c in ("request_id", "meta_request_id") if c in df.columns), None)


def usage_table(points: pd.DataFrame) -> pd.DataFrame:
    """The response usage per request: keys, request_id, usage_prompt_tokens, usage_completion_tokens."""
    rid = _id_column(points) if points is not None else None
    keys = [k for k in KEYS if points is not None and k in points.columns]
    if rid is None or points.empty:
        return pd.DataFrame(columns=[*keys, "request_id", *USAGE.values()])
    u = points[points["metric"].isin(list(USAGE)) & points[rid].notna()]
    wide = u.pivot_table(index=[*keys, rid], columns="metric", values="value", aggfunc="sum").reset_index()
    wide = wide.rename(columns={rid: "request_id", **USAGE})
    for c in USAGE.values():
        if c not in wide.columns:
            wide[c] = np.nan
    wide.columns.name = None
    return wide[[*keys, "request_id", *USAGE.values()]]


def sent_table(points: pd.DataFrame) -> pd.DataFrame:
    """What chat.js says it sent: one row per workload request (its ``workload_requests`` Point),
    keys, request_id and the typed columns of :data:`META`."""
    rid = _id_column(points) if points is not None else None
    keys = [k for k in KEYS if points is not None and k in points.columns]
    if rid is None or points.empty or "workload_requests" not in set(points["metric"]):
        return pd.DataFrame(columns=[*keys, "request_id", *META])
    d = points[points["metric"] == "workload_requests"].rename(columns={rid: "request_id"})
    out = d[[*keys, "request_id"]].copy()
    for name, dtype in META.items():
        col = f"meta_{name}"
        out[name] = (pd.to_numeric(d[col], errors="coerce").astype(dtype) if col in d.columns
                     else pd.array([pd.NA] * len(d), dtype=dtype))
    return out.drop_duplicates([*keys, "request_id"])


def workload_requests(requests: pd.DataFrame, points: pd.DataFrame) -> pd.DataFrame:
    """Measured workload requests: k6's request rows (or the joined table of analysis.requests)
    with what chat.js sent and the response usage (module docstring). Rows without a
    ``workload_requests`` Point (payload cells, warm-up) are left out."""
    sent = sent_table(points)
    if requests.empty or sent.empty or "request_id" not in requests.columns:
        return pd.DataFrame(columns=[*KEYS, "request_id", *META, "sent_ts", "prompt_tokens", "completion_tokens",
                                     "prompt_error"])
    keys = [k for k in KEYS if k in requests.columns and k in sent.columns]
    drop = [c for c in META if c in requests.columns]
    df = requests.drop(columns=drop).merge(sent, on=[*keys, "request_id"], how="inner")
    df["sent_ts"] = pd.to_datetime(df["sent_ms"].astype("float64"), unit="ms", utc=True)
    df = df.merge(usage_table(points), on=[*keys, "request_id"], how="left")
    for col, usage in USAGE.items():  # the server's span where joined, else the response's usage
        base = pd.to_numeric(df[col], errors="coerce") if col in df.columns else pd.Series(np.nan, index=df.index)
        df[col] = base.fillna(pd.to_numeric(df[usage], errors="coerce"))
    df["prompt_error"] = df["prompt_tokens"] / df["expected_prompt_tokens"].astype("float64") - 1
    return df.sort_values([*keys, "sent_ms"]).reset_index(drop=True)


def _cv(x: np.ndarray) -> float:
    return float(np.std(x, ddof=1) / np.mean(x)) if len(x) >= 3 and np.mean(x) > 0 else np.nan


def _quantile(x: np.ndarray, q: float) -> float:
    return float(np.quantile(x, q)) if len(x) >= min_requests(q) else np.nan


def cell_arrivals(workload: str | None, cell_ids) -> dict[str, str]:
    """{cell_id: arrival kind (closed, constant, poisson, trace)} of a run's workload cells (the
    spec's ``workload``; every cell of a workload spec has the workload's arrivals)."""
    if not workload:
        return {}
    kind = load_workload(workload).arrival.kind
    return {c: kind for c in cell_ids}


def arrival_summary(wr: pd.DataFrame, planned: dict[str, int] | None = None, late_ms: float = 50.0,
                    arrivals: dict[str, str] | None = None) -> pd.DataFrame:
    """Per cell: ``arrival`` (from ``arrivals``, see :func:`cell_arrivals`), ``sessions`` sent
    (first turns), ``planned`` and ``dropped`` (planned - sent, when ``planned`` {cell_id:
    sessions} is given; the manifest's cell ``iterations``), ``open_loop``, ``interarrival_cv`` of the sent first
    turns and ``scheduled_cv`` of their schedule, ``lag_p50_ms``/``lag_p99_ms``/``lag_max_ms`` (NaN
    where too few sends for the quantile) and ``late`` (lag > ``late_ms``)."""
    rows = []
    keys = [k for k in KEYS if k in wr.columns]
    for key, g in wr[wr["turn"] == 0].groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        sent = np.sort(g["sent_ms"].to_numpy("float64"))
        sched = np.sort(g["scheduled_ms"].dropna().to_numpy("float64"))
        lag = g["send_lag_ms"].dropna().to_numpy("float64")
        cell = dict(zip(keys, key, strict=True))
        n_planned = (planned or {}).get(cell.get("cell_id", ""))
        rows.append({**cell, "arrival": (arrivals or {}).get(cell.get("cell_id", ""), ""), "sessions": len(g), "planned": n_planned,
                     "dropped": (n_planned - len(g)) if n_planned is not None else None,
                     "open_loop": bool(len(sched)), "interarrival_cv": _cv(np.diff(sent)),
                     "scheduled_cv": _cv(np.diff(sched)) if len(sched) else np.nan,
                     "rate_per_s": (len(sent) - 1) / ((sent[-1] - sent[0]) / 1000) if len(sent) > 1 and sent[-1] > sent[0]
                     else np.nan,
                     "lag_p50_ms": _quantile(lag, 0.5) if len(lag) else np.nan,
                     "lag_p99_ms": _quantile(lag, 0.99) if len(lag) else np.nan,
                     "lag_max_ms": float(lag.max()) if len(lag) else np.nan,
                     "late": int((lag > late_ms).sum())})
    return pd.DataFrame(rows)


def token_accuracy(wr: pd.DataFrame) -> pd.DataFrame:
    """Per cell and turn kind (first / later): how close the server's prompt_tokens came to the
    calibrated expectation (median and p95 of the relative error) and whether answers held
    their planned length (share of completion_tokens == output_tokens)."""
    d = wr.dropna(subset=["prompt_tokens"]).assign(turns=lambda x: np.where(x["turn"] == 0, "first", "later"))
    keys = [k for k in KEYS if k in d.columns]
    out = d.groupby([*keys, "turns"]).agg(
        requests=("request_id", "size"),
        prompt_error_median=("prompt_error", "median"),
        prompt_error_abs_p95=("prompt_error", lambda e: float(np.quantile(np.abs(e), 0.95))),
        answers_at_length=("completion_tokens", lambda c: float(
            (c.to_numpy("float64") == d.loc[c.index, "output_tokens"].to_numpy("float64")).mean())),
    )
    return out.reset_index()


def latency_by_turn(wr: pd.DataFrame) -> pd.DataFrame:
    """Per cell and turn: requests, e2e (k6 duration) p50/p95 and, where joined, TTFT p50."""
    keys = [k for k in KEYS if k in wr.columns]
    ok = wr[wr["ok"].fillna(False).astype(bool)] if "ok" in wr.columns else wr
    agg = {"requests": ("request_id", "size"), "prompt_tokens_median": ("prompt_tokens", "median"),
           "duration_p50_ms": ("duration_ms", "median"),
           "duration_p95_ms": ("duration_ms", lambda x: _quantile(x.to_numpy("float64"), 0.95))}
    if "ttft_ms" in ok.columns:
        agg["ttft_p50_ms"] = ("ttft_ms", "median")
    return ok.groupby([*keys, "turn"]).agg(**agg).reset_index()


def lengths_long(wr: pd.DataFrame) -> pd.DataFrame:
    """Tidy lengths for histograms: one row per request and measure (planned input/output,
    served prompt/completion tokens)."""
    keys = [k for k in KEYS if k in wr.columns]
    cols = {"input_tokens": "planned input", "prompt_tokens": "served prompt", "output_tokens": "planned output",
            "completion_tokens": "served completion"}
    long = wr[[*keys, "request_id", "turn", *cols]].melt(id_vars=[*keys, "request_id", "turn"], var_name="measure",
                                                         value_name="tokens")
    long["measure"] = long["measure"].map(cols)
    long["side"] = np.where(long["measure"].str.endswith(("input", "prompt")), "input", "output")
    return long.dropna(subset=["tokens"])


PREFIX_CACHE = {"prompt_tokens": "vllm:prompt_tokens_total", "cache_queries": "vllm:prefix_cache_queries_total",
                "cache_hits": "vllm:prefix_cache_hits_total"}


def prefix_cache_table(server: pd.DataFrame) -> pd.DataFrame:
    """Per cell, the prefix cache as the server counted it (``Run.server``: /metrics before and
    after each cell, scraped through the target's URL): prompt_tokens, cache_queries and
    cache_hits (after - before) and ``hit_rate`` = hits / queries. Caching off shows as 0 hits;
    a workload whose requests share no block shows 0 hits with caching on (the A/B control)."""
    cols = [*KEYS, *PREFIX_CACHE, "hit_rate"]
    if server.empty:
        return pd.DataFrame(columns=cols)
    s = server[server["sample"].isin(list(PREFIX_CACHE.values())) & (server.get("pod", "") == "")]
    s = s[~s["cell_id"].isin(["idle", "run"])]
    keys = [k for k in KEYS if k in s.columns]
    wide = s.pivot_table(index=[*keys, "sample"], columns="when", values="value", aggfunc="sum")
    if wide.empty or not {"before", "after"} <= set(wide.columns):
        return pd.DataFrame(columns=cols)
    delta = (wide["after"] - wide["before"]).rename("delta").reset_index()
    out = delta.pivot_table(index=keys, columns="sample", values="delta").rename(
        columns={v: k for k, v in PREFIX_CACHE.items()}).reset_index()
    out.columns.name = None
    for c in PREFIX_CACHE:
        if c not in out.columns:
            out[c] = np.nan
    out["hit_rate"] = out["cache_hits"] / out["cache_queries"].where(out["cache_queries"] > 0)
    return out[cols]
