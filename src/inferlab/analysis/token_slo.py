"""Token-level SLOs: per-request TTFT, TPOT and e2e, each bound held at its own percentile.

A spec's SLO (specs.models.Slo) names ``ttft_ms`` at ``ttft_p``, ``tpot_ms`` at ``tpot_p``
(both p99 by default, as MLPerf's server scenario) and ``e2e_ms`` at ``e2e_p`` (p95 by default,
as before); :func:`slo_bounds` turns it into step_decision's :class:`SloBound` list, which the
step decisions and the certified search judge.

Where each number comes from (:func:`request_timings`, column ``<metric>_source``):

- ``server span``: the engine's OTLP span of the request (analysis.requests.join_requests:
  ``ttft_ms``, ``tpot_ms`` = decode / (completion_tokens - 1)), where one joined;
- ``client stream``: the stream clock (load/stream_clock.py) that every streamed cell's k6
  sends through (sweep/cell.py; the cell file ``stream-clock.jsonl``, ``Run.stream_clock``,
  joined by analysis.requests.join_run), where no span has the value (a URL target without
  traces, a local engine with traces off). Stock k6 cannot time a stream's first token: its
  ``http_req_waiting`` ends at the response headers, which vLLM sends before any token;
- e2e is always k6's ``duration_ms`` (``client (k6)``): the whole answer as the client saw it.

Goodput (:func:`meets_slo`, :func:`goodput_table`): a request counts only when it succeeded and
meets every bound; a failed request meets none. A bound whose metric no request of a cell has
(neither span nor stream) is *unmeasured* for that cell: it is left out of the goodput and
shown as unmeasured in :func:`slo_percentile_table`, never counted as met.

How many requests a percentile needs: a q-quantile exists from ``n (1 - q) >= 1``
(analysis.window.min_requests: p99 from 100), but *showing* that at most ``1 - q`` violate,
with no violation at all, takes ``n`` with ``q ** n <= 1 - confidence``
(:func:`requests_needed`: p99 at 95 % needs 299, at 99 % 459). :func:`sample_plan` /
:func:`sample_plan_line` state it per step or cell for a dry run (with the seconds at a rate,
and whether the planned requests fall short).

Entry points by what the caller holds: a joined table -> :func:`request_timings`; a Run ->
:func:`run_request_timings`; one cell's or step's raw tables -> :func:`cell_request_timings`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..specs.models import Slo
from .requests import join_requests, join_run
from .step_decision import SloBound, requests_needed
from .window import min_requests

SERVER, CLIENT_STREAM, CLIENT_K6 = "server span", "client stream", "client (k6)"
# metric -> (server column of the joined table, stream clock column)
TOKEN_METRICS = {"ttft_ms": ("ttft_ms", "client_ttft_ms"), "tpot_ms": ("tpot_ms", "client_tpot_ms"),
                 "output_tokens": ("completion_tokens", "client_completion_tokens")}
LABELS = {"ttft_ms": "TTFT", "tpot_ms": "TPOT", "e2e_ms": "e2e"}
CELL_KEYS = ("run_id", "cell_id", "payload", "vus", "rate", "executor")
__all__ = ["SloBound", "requests_needed", "slo_bounds", "e2e_bound_ms", "request_timings",
           "cell_request_timings", "run_request_timings", "measured_bounds", "meets_slo", "goodput_table",
           "cell_goodput", "slo_percentile_table", "requests_for", "sample_plan", "sample_plan_line"]


def slo_bounds(slo) -> tuple[SloBound, ...]:
    """The SLO's per-request bounds: TTFT, TPOT and e2e at their percentiles. ``slo``: a
    specs.models.Slo, or a recorded spec's ``slo`` mapping (read through the model, so a
    record with the legacy ``e2e_p95_ms`` key reads as e2e at p95)."""
    if isinstance(slo, dict):
        slo = Slo.model_validate(slo)
    return (SloBound("ttft_ms", float(slo.ttft_ms), slo.ttft_p / 100),
            SloBound("tpot_ms", float(slo.tpot_ms), slo.tpot_p / 100),
            SloBound("e2e_ms", float(slo.e2e_ms), slo.e2e_p / 100))


def e2e_bound_ms(slo: dict | None, default: float) -> float:
    """The e2e bound of a recorded spec's ``slo`` mapping (``e2e_ms``, or the legacy
    ``e2e_p95_ms`` of records made before token-level SLOs); ``default`` where the record has
    none (imported runs). The one reader of that bound from a record."""
    if not slo:
        return default
    value = slo.get("e2e_ms", slo.get("e2e_p95_ms"))
    return float(value) if value is not None else default


def cell_request_timings(k6_rows: pd.DataFrame, spans: pd.DataFrame | None = None,
                         clock: pd.DataFrame | None = None) -> pd.DataFrame:
    """:func:`request_timings` of one cell (or step) from its raw tables: k6's rows
    (ingest.read_k6; warm-up rows dropped), its spans (ingest.read_spans; None without) and its
    stream clock (ingest.stream_clock.read_stream_clock of the cell's ``stream-clock.jsonl``,
    runs.layout.CELL_FILES["stream_clock"]; None without)."""
    return request_timings(join_requests(k6_rows, spans, None, clock))


def run_request_timings(run) -> pd.DataFrame:
    """:func:`request_timings` of every measured request of a ``runs.reader.Run`` (its k6 rows
    joined to its spans, edge lines and stream clock: analysis.requests.join_run)."""
    return request_timings(join_run(run))


def request_timings(joined: pd.DataFrame) -> pd.DataFrame:
    """One row per request of ``joined``, in its order and index: its cell keys (those of
    ``run_id, cell_id, payload, vus, rate, executor`` present), ``request_id``, ``start_ts`` and
    ``end_ts`` (k6's, UTC; where ``joined`` has them), ``ok``, and for ``ttft_ms``, ``tpot_ms``
    and ``output_tokens`` the value (float, NaN where no source has it) and its
    ``<metric>_source`` (string: ``server span`` where a span has it, else ``client stream``
    (for tokens: the stream's usage chunk), else <NA>), and ``e2e_ms`` = k6's duration with
    ``e2e_ms_source`` ``client (k6)``."""
    keys = [k for k in CELL_KEYS if k in joined.columns]
    out = joined[[*keys, *(c for c in ("request_id", "start_ts", "end_ts") if c in joined.columns)]].copy()
    out["ok"] = joined["ok"].fillna(False).astype(bool) if "ok" in joined.columns else True
    for metric, (server_col, client_col) in TOKEN_METRICS.items():
        server = pd.to_numeric(joined[server_col], errors="coerce") if server_col in joined.columns else None
        client = pd.to_numeric(joined[client_col], errors="coerce") if client_col in joined.columns else None
        value = pd.Series(np.nan, index=joined.index)
        source = pd.Series(pd.NA, index=joined.index, dtype="string")
        for col, name in ((client, CLIENT_STREAM), (server, SERVER)):  # the span wins where both exist
            if col is not None:
                value = col.where(col.notna(), value)
                source = source.mask(col.notna(), name)
        out[metric], out[f"{metric}_source"] = value.astype(float), source
    out["e2e_ms"] = pd.to_numeric(joined["duration_ms"], errors="coerce") if "duration_ms" in joined.columns else np.nan
    out["e2e_ms_source"] = pd.array([CLIENT_K6] * len(out), dtype="string")
    return out


def measured_bounds(timings: pd.DataFrame, bounds) -> list[SloBound]:
    """The bounds whose metric at least one request of ``timings`` has (the others are
    unmeasured: never counted as met; analysis.capacity.judged_bounds for a step)."""
    return [b for b in bounds if b.metric in timings.columns and timings[b.metric].notna().any()]


def meets_slo(timings: pd.DataFrame, bounds) -> pd.Series:
    """Per request: succeeded and within every *measured* bound (a missing value on a measured
    metric is a violation; a failed request meets nothing)."""
    good = timings["ok"].astype(bool).copy()
    for b in measured_bounds(timings, bounds):
        good &= timings[b.metric].le(b.bound)
    return good


def _cells(timings: pd.DataFrame) -> tuple[list[str], list[tuple[tuple, pd.DataFrame]]]:
    """The cell keys present and (key values, rows) per cell; one group of all rows without keys."""
    keys = [k for k in CELL_KEYS if k in timings.columns]
    if not keys:
        return [], [((), timings)]
    return keys, [(k if isinstance(k, tuple) else (k,), g) for k, g in timings.groupby(keys, sort=False, dropna=False)]


def goodput_table(timings: pd.DataFrame, bounds) -> pd.DataFrame:
    """Per cell: requests, ok, good (meets every measured bound), ``good_share`` = good /
    requests, and the bounds it could not judge (``unmeasured``). Goodput per second =
    ``good_share`` x the cell's completion rate from the steady-window estimator
    (analysis.window), which this table does not re-derive."""
    keys, cells = _cells(timings)
    rows = []
    for key, g in cells:
        good = meets_slo(g, bounds)
        measured = measured_bounds(g, bounds)
        rows.append({**dict(zip(keys, key)), "requests": len(g), "ok": int(g["ok"].sum()), "good": int(good.sum()),
                     "good_share": float(good.mean()) if len(g) else np.nan,
                     "unmeasured": ", ".join(b.metric for b in bounds if b not in measured)})
    return pd.DataFrame(rows, columns=[*keys, "requests", "ok", "good", "good_share", "unmeasured"])


def cell_goodput(timings: pd.DataFrame, bounds) -> pd.DataFrame:
    """Per cell (``cell_id``): the token-level goodput columns the cell summary shows beside
    its throughput: ``slo_good`` and ``slo_good_share`` (:func:`goodput_table` over every
    measured request of the cell), ``slo_unmeasured`` (bounds no request could be judged on)
    and ``slo_sources`` (where TTFT / TPOT came from, e.g. ``TTFT: server span; TPOT: client
    stream``). Goodput per second is ``slo_good_share`` x the cell's steady-window rate."""
    cols = ["cell_id", "slo_good", "slo_good_share", "slo_unmeasured", "slo_sources"]
    if timings.empty or "cell_id" not in timings.columns:
        return pd.DataFrame(columns=cols)
    g = goodput_table(timings, bounds)
    src = {cell: "; ".join(f"{LABELS[m]}: {_sources(rows, m)}" for m in ("ttft_ms", "tpot_ms"))
           for cell, rows in timings.groupby("cell_id", sort=False)}
    per = g.groupby("cell_id", sort=False).agg(slo_good=("good", "sum"), requests=("requests", "sum"),
                                               slo_unmeasured=("unmeasured", "first")).reset_index()
    per["slo_good_share"] = per["slo_good"] / per["requests"].where(per["requests"] > 0)
    per["slo_sources"] = per["cell_id"].map(src)
    return per[cols]


def _sources(g: pd.DataFrame, metric: str) -> str:
    """Where a cell's values of ``metric`` came from: one source, or each with its share."""
    col = f"{metric}_source"
    counts = g[col].dropna().value_counts() if col in g.columns else pd.Series(dtype=int)
    if counts.empty:
        return "none"
    if len(counts) == 1:
        return str(counts.index[0])
    return ", ".join(f"{name} {n / counts.sum():.0%}" for name, n in counts.items())


def slo_percentile_table(timings: pd.DataFrame, bounds, confidence: float = 0.95) -> pd.DataFrame:
    """Per cell x bound: the metric, its percentile ``p``, the ``bound``, the ``value`` at that
    percentile over the successful requests (NaN below analysis.window.min_requests),
    ``met`` (value <= bound; <NA> when too few requests or unmeasured), ``n`` requests with a
    value, ``violations`` among all requests (failed and missing count), ``violating_share``
    beside the ``allowed_share`` 1 - q, ``needed`` = :func:`requests_needed` at
    ``confidence``, and ``source`` (server span / client stream / client (k6), with shares
    when mixed; ``none`` when unmeasured)."""
    keys, cells = _cells(timings)
    rows = []
    for key, g in cells:
        for b in bounds:
            x = g.loc[g["ok"].astype(bool), b.metric].dropna().to_numpy(float) if b.metric in g.columns else np.array([])
            value = float(np.quantile(x, b.q)) if len(x) >= min_requests(b.q) else np.nan
            measured = b in measured_bounds(g, bounds)
            violations = int((~(g["ok"].astype(bool) & g[b.metric].le(b.bound))).sum()) if measured else 0
            rows.append({**dict(zip(keys, key)), "metric": b.metric, "label": f"p{b.q * 100:g} {LABELS.get(b.metric, b.metric)}",
                         "p": b.q * 100, "bound": b.bound, "value": value,
                         "met": pd.NA if np.isnan(value) else bool(value <= b.bound),
                         "n": len(x), "violations": violations if measured else pd.NA,
                         "violating_share": violations / len(g) if measured and len(g) else np.nan,
                         "allowed_share": 1 - b.q, "needed": requests_needed(b.q, confidence),
                         "source": _sources(g, b.metric)})
    cols = [*keys, "metric", "label", "p", "bound", "value", "met", "n", "violations", "violating_share",
            "allowed_share", "needed", "source"]
    out = pd.DataFrame(rows, columns=cols)
    out["met"] = out["met"].astype("boolean")
    out["violations"] = out["violations"].astype("Int64")
    return out


def requests_for(bounds, confidence: float = 0.95) -> dict[str, int]:
    """Requests each bound needs to be shown met with no violation (what a dry run prints per
    step), and ``"step"``: the most of them."""
    need = {b.metric: requests_needed(b.q, confidence) for b in bounds}
    return {**need, "step": max(need.values(), default=0)}


def sample_plan(slo, confidence: float = 0.95, rate: float | None = None,
                planned: int | None = None) -> dict:
    """What a dry run states per step or cell: the requests each bound of ``slo`` (a
    specs.models.Slo or a recorded ``slo`` mapping) needs to be shown met at ``confidence`` with
    no violation at all (:func:`requests_needed`: ``n`` with ``q ** n <= 1 - confidence``),
    and what that means for this step or cell. Keys: ``bounds`` (``[{metric, label, p, needed}]``,
    in TTFT, TPOT, e2e order), ``needed`` (the most of them), ``confidence``; with ``rate``
    (requests/s of a constant-rate step) ``seconds`` = needed / rate, the steady window that
    many requests take; with ``planned`` (the step's or cell's measured requests)
    ``planned`` and ``short`` (True when planned < needed: the step cannot pass by its
    percentile bound however good the server is; a closed-loop cell's percentiles are then
    estimates, not shown)."""
    bounds = slo_bounds(slo)
    rows = [{"metric": b.metric, "label": f"p{b.q * 100:g} {LABELS[b.metric]}", "p": b.q * 100,
             "needed": requests_needed(b.q, confidence)} for b in bounds]
    out: dict = {"bounds": rows, "needed": max(r["needed"] for r in rows), "confidence": confidence}
    if rate is not None and rate > 0:
        out["seconds"] = out["needed"] / rate
    if planned is not None:
        out["planned"], out["short"] = int(planned), int(planned) < out["needed"]
    return out


def sample_plan_line(slo, confidence: float = 0.95, rate: float | None = None, planned: int | None = None) -> str:
    """:func:`sample_plan` as one line for a dry run, e.g. ``needs 299 requests (p99 TTFT 299,
    p99 TPOT 299, p95 e2e 59; 95 % confidence, no violation) = 150 s at 2 req/s; planned 120:
    too few to pass on the percentiles``."""
    plan = sample_plan(slo, confidence, rate, planned)
    parts = ", ".join(f"{r['label']} {r['needed']}" for r in plan["bounds"])
    line = f"needs {plan['needed']} requests ({parts}; {confidence * 100:g} % confidence, no violation)"
    if "seconds" in plan:
        line += f" = {plan['seconds']:.0f} s at {rate:g} req/s"
    if "planned" in plan:
        line += f"; planned {plan['planned']}" + (": too few to pass on the percentiles" if plan["short"] else "")
    return line
