"""Where an A/B's change in mean latency went: the delta of mean e2e split into its parts.

Every measured request has three witnesses joined by X-Request-Id (analysis/requests.py): k6's
duration, the edge's access-log line (optional) and the engine's ``llm_request`` span. Each
request's duration splits exactly into :data:`PARTS` (ms):

- ``client``: client and network: k6's duration - nginx's request time (with an edge line), or
  - the span's e2e (without one: then it also holds the API server's HTTP work outside the span);
- ``edge``: nginx's request time - its upstream response time (only when every request of the
  comparison has an edge line, else folded into ``client``);
- ``api_server``: the API server, the unattributed remainder: the span's e2e - queue - prefill -
  decode (tokenization, the hop to EngineCore, output processing), plus, with an edge, the
  upstream response time - the span's e2e (HTTP parsing before arrival, writing after);
- ``queue``, ``prefill``, ``decode``: the span's queued -> scheduled -> first token -> last token.

Contract of :func:`attribute` (and :func:`attribute_requests`, which it calls):

- requests: the successful requests of each repeat's cells that complete inside the cell's
  steady-state window (closed loop; open loop: start inside it; analysis/window.py, the same
  requests the latency verdicts use) and joined to a span. A repeat x cell counts only when at
  least ``MIN_JOIN_SHARE`` of those requests joined (a partial join would bias its means);
  the others are listed in ``Attribution.missing`` with the reason;
- per repeat and cell (a run is a repeat: ``-r<n>`` cells of one run are pooled), the mean of
  each part over its requests: the parts add up to the repeat's mean duration exactly;
- per cell and part, the delta of the side means (tuned - baseline, each side the plain mean of
  its repeats' means: the repeat is the unit), so the parts' deltas add up to the delta of mean
  e2e exactly, with a ``level`` Welch t-interval on the per-repeat means (difference in ms) and
  its two-sided p-value; Holm's correction across every part of every cell of the comparison
  (one family); an effect is called only with q < alpha and ``MIN_VERDICT_REPEATS`` repeats a
  side (as the verdicts); intervals are unadjusted (a called effect's interval excludes 0);
- percentiles of the parts (p50, p95 over a side's pooled requests) are shown beside, never
  summed: percentiles do not add;
- :func:`sentences`: one per cell, the called parts largest first, e.g. "mean e2e 0.71x:
  decode -250 ms [-280, -220], queue -40 ms [-55, -25], the rest within noise".

This is accounting, not cause: it says in which part the time changed, not why. In a closed
loop queue time follows service time (a slower server keeps the same users waiting longer), so a
queue delta is often a consequence of a decode or prefill delta, not a separate effect.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as sps

from ..runs.reader import Run
from . import requests as rq
from . import stats
from .compare import MIN_VERDICT_REPEATS, as_runs, base_cell, compared_cells
from .window import min_requests, window_requests

PARTS = {"client": "client and network", "edge": "edge", "api_server": "API server (remainder)",
         "queue": "queue", "prefill": "prefill", "decode": "decode"}
# per request, before the comparison decides whether the edge split applies (see _fold)
FINE = ("client", "edge", "api_outside", "api_remainder", "queue", "prefill", "decode")
NO_SPANS = "the run holds no server spans (recorded without traces)"
MIN_JOIN_SHARE = 0.95  # of a repeat x cell's successful window requests joined to a span
PERCENTILES = {"p50": 0.50, "p95": 0.95}
ACCOUNTING = ("This is accounting, not cause: it says in which part of a request the time changed, not why. "
              "In a closed loop queue time follows service time (the same users wait behind a slower or "
              "faster server), so a queue delta is often the consequence of a prefill or decode delta.")
REQUEST_KEYS = ["side", "run_id", "cell", "payload", "vus"]


@dataclass
class Attribution:
    """What :func:`attribute_requests` found (empty frames where nothing had spans).

    ``parts``: one row per cell x part (cell, payload, vus, part, label, baseline_ms, tuned_ms,
    delta_ms, ci_low, ci_high, p_value, q_value, called, n_baseline, n_tuned, baseline_share and
    tuned_share: the part's share of the repeat's mean e2e averaged over the side's repeats, note);
    ``totals``: one row per cell (mean e2e per side, ratio, delta_ms with its interval and p);
    ``repeats``: one row per side x repeat x cell (requests, mean_ms of the total and each part);
    ``percentiles``: side x cell x part x percentile (value, n) over each side's pooled requests;
    ``missing``: side, run_id, cell, window_ok, joined, reason of each repeat x cell left out;
    ``notes``: decisions a reader should know (edge folded into client, ...)."""

    parts: pd.DataFrame
    totals: pd.DataFrame
    repeats: pd.DataFrame
    percentiles: pd.DataFrame
    missing: pd.DataFrame
    alpha: float = 0.05
    level: float = 0.95
    has_edge: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.totals.empty


# ---------------------------------------------------------------------------------------------
# per request, from a run


def _fine_parts(j: pd.DataFrame) -> pd.DataFrame:
    """The fine parts of joined rows (rq.join_requests columns); edge parts NaN without an edge
    line. client + edge + api_outside + api_remainder + queue + prefill + decode = duration."""
    e2e = j["e2e_ms"]
    with_edge = (j["joined_edge"].fillna(False).astype(bool) if "edge_request_time_ms" in j.columns
                 else pd.Series(False, index=j.index))
    edge_rt = j["edge_request_time_ms"] if with_edge.any() else pd.Series(np.nan, index=j.index)
    upstream = j["upstream_response_ms"] if with_edge.any() else pd.Series(np.nan, index=j.index)
    out = pd.DataFrame(index=j.index)
    out["client"] = (j["duration_ms"] - edge_rt).where(with_edge, j["duration_ms"] - e2e)
    out["edge"] = (edge_rt - upstream).where(with_edge)
    out["api_outside"] = (upstream - e2e).where(with_edge)
    out["api_remainder"] = e2e - j["queue_ms"] - j["prefill_ms"] - j["decode_ms"]
    out["queue"], out["prefill"], out["decode"] = j["queue_ms"], j["prefill_ms"], j["decode_ms"]
    return out


def run_requests(run: Run, side: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(requests, coverage) of one repeat. ``requests``: one row per successful window request
    joined to a span (REQUEST_KEYS, cell_id, request_id, duration_ms and the :data:`FINE` parts);
    ``coverage``: one row per base cell (side, run_id, cell, window_ok, joined, run_spans: the
    run's request spans, 0 when it was recorded without traces)."""
    joined = rq.join_run(run) if not run.requests.empty else pd.DataFrame()
    n_spans = len(rq.request_spans(run.spans))
    frames, cover = [], {}
    for cell, _ in compared_cells(run, count_never_ran=False):
        name = base_cell(cell.cell_id)
        cover.setdefault(name, {"side": side, "run_id": run.run_id, "cell": name, "window_ok": 0, "joined": 0,
                                "run_spans": n_spans})
        g = joined[joined["cell_id"] == cell.cell_id] if not joined.empty else joined
        if g.empty:
            continue
        win = window_requests(g, cell.executor, cell.vus)
        win = win[win["ok"].fillna(False).astype(bool)]
        ok = win[win["joined_server"] & win["e2e_ms"].notna()]
        cover[name]["window_ok"] += len(win)
        cover[name]["joined"] += len(ok)
        if ok.empty:
            continue
        parts = _fine_parts(ok)
        frames.append(pd.concat([ok[["cell_id", "request_id", "duration_ms"]].assign(
            side=side, run_id=run.run_id, cell=name, payload=cell.payload, vus=cell.vus), parts], axis=1))
    cols = [*REQUEST_KEYS, "cell_id", "request_id", "duration_ms", *FINE]
    reqs = pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)
    cover_cols = ["side", "run_id", "cell", "window_ok", "joined", "run_spans"]
    return reqs, pd.DataFrame(list(cover.values()), columns=cover_cols)


def attribute(baseline: Run | Sequence[Run], tuned: Run | Sequence[Run], alpha: float = 0.05,
              level: float = 0.95) -> Attribution:
    """The attribution of a comparison's two sides (lists of runs, one per repeat); see the module
    docstring."""
    reqs, cover = [], []
    for side, runs in (("baseline", baseline), ("tuned", tuned)):
        for run in as_runs(runs):
            r, c = run_requests(run, side)
            reqs.append(r)
            cover.append(c)
    return attribute_requests(pd.concat(reqs, ignore_index=True), pd.concat(cover, ignore_index=True),
                              alpha=alpha, level=level)


# ---------------------------------------------------------------------------------------------
# from per-request parts to the attribution


def _coverage(requests: pd.DataFrame, coverage: pd.DataFrame | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(kept, missing): the repeat x cell keys with enough requests joined, and the ones left out."""
    if coverage is None:  # synthetic tables: every request given is a joined window request
        return (requests[["side", "run_id", "cell"]].drop_duplicates(),
                pd.DataFrame(columns=["side", "run_id", "cell", "window_ok", "joined", "reason"]))
    cov = coverage.copy()
    share = cov["joined"] / cov["window_ok"].where(cov["window_ok"] > 0)
    no_spans = cov["run_spans"] == 0 if "run_spans" in cov.columns else pd.Series(False, index=cov.index)
    cov["reason"] = np.select(
        [no_spans, cov["window_ok"] == 0, cov["joined"] == 0, share < MIN_JOIN_SHARE],
        [NO_SPANS, "no successful request in the steady-state window",
         "no window request joined to a server span",
         "only " + (share.fillna(0) * 100).round(1).astype(str) + f" % joined to a span (< {MIN_JOIN_SHARE:.0%})"],
        default="")
    keep = cov[cov["reason"] == ""]
    missing = cov[cov["reason"] != ""][["side", "run_id", "cell", "window_ok", "joined", "reason"]]
    return keep[["side", "run_id", "cell"]], missing


def _fold(requests: pd.DataFrame) -> tuple[pd.DataFrame, bool]:
    """The :data:`PARTS` per request. The edge split applies only when every request has an edge
    line; otherwise edge and the API server's time outside the span fold into ``client`` (what
    k6's duration - the span's e2e holds), for every request alike, so both sides share one
    definition."""
    has_edge = bool(len(requests)) and requests["edge"].notna().all() and requests["api_outside"].notna().all()
    out = requests[[c for c in requests.columns if c not in FINE]].copy()
    if has_edge:
        out["client"], out["edge"] = requests["client"], requests["edge"]
        out["api_server"] = requests["api_outside"] + requests["api_remainder"]
    else:
        out["client"] = requests["client"] + requests["edge"].fillna(0) + requests["api_outside"].fillna(0)
        out["api_server"] = requests["api_remainder"]
    for p in ("queue", "prefill", "decode"):
        out[p] = requests[p]
    return out, has_edge


def welch(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(low, high, p) of the Welch t-interval for mean(b) - mean(a), column by column (rows are
    repeats; 1-D arrays are one column): the interval and two-sided p-value of
    ``scipy.stats.ttest_ind(b, a, equal_var=False)`` (tested equal), vectorized because a
    simulation calls it thousands of times. NaN where a side has < 2 repeats or no column varies."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.ndim == 1:
        return tuple(x[0] for x in welch(a[:, None], b[:, None], level))
    na, nb = len(a), len(b)
    nan = np.full(a.shape[1], np.nan)
    if min(na, nb) < stats.MIN_REPEATS:
        return nan, nan.copy(), nan.copy()
    va, vb = a.var(axis=0, ddof=1) / na, b.var(axis=0, ddof=1) / nb
    se, df = stats.welch_se_df(va, vb, na, nb)
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = b.mean(axis=0) - a.mean(axis=0)
        t = diff / se
        half = sps.t.ppf(0.5 + level / 2, df) * se
        p = 2 * sps.t.sf(np.abs(t), df)
    bad = ~(se > 0)
    return (np.where(bad, np.nan, diff - half), np.where(bad, np.nan, diff + half), np.where(bad, np.nan, p))


def _note(na: int, nb: int, low: float) -> str:
    if min(na, nb) < stats.MIN_REPEATS:
        return f"{min(na, nb)} repeat(s) on a side: no interval"
    return "" if np.isfinite(low) else "no variation between repeats: noise unknown"


def attribute_requests(requests: pd.DataFrame, coverage: pd.DataFrame | None = None, alpha: float = 0.05,
                       level: float = 0.95, percentiles: bool = True) -> Attribution:
    """The attribution from per-request parts: ``requests`` has REQUEST_KEYS (``side`` baseline |
    tuned; payload and vus may be absent), ``duration_ms`` and the :data:`FINE` parts (edge and
    api_outside may be NaN or absent); ``coverage`` (side, run_id, cell, window_ok, joined,
    optionally run_spans) decides which repeat x cell counts (None: all of them). ``percentiles``:
    False leaves ``Attribution.percentiles`` empty (simulations, which test the means). See the
    module docstring."""
    requests = requests.copy()
    for c in FINE:
        if c not in requests.columns:
            requests[c] = np.nan if c in ("edge", "api_outside") else 0.0
    for c, default in (("payload", ""), ("vus", 0)):
        if c not in requests.columns:
            requests[c] = default
    keep, missing = _coverage(requests, coverage)
    requests = requests.merge(keep, on=["side", "run_id", "cell"], how="inner")
    folded, has_edge = _fold(requests)
    names = [p for p in PARTS if has_edge or p != "edge"]
    if folded.empty:
        none = pd.DataFrame()
        return Attribution(none, none, none, none, missing, alpha, level, has_edge)
    keys = ["side", "run_id", "cell"]
    grouped = folded.rename(columns={"duration_ms": "total"}).groupby(keys, sort=False)
    reps = grouped[["total", *names]].mean()
    reps.insert(0, "requests", grouped.size())
    reps = grouped[["payload", "vus"]].first().join(reps).reset_index()
    cols = ["total", *names]
    parts, totals = [], []
    for cell, g in reps.groupby("cell", sort=False):
        a, b = g[g["side"] == "baseline"], g[g["side"] == "tuned"]
        if a.empty or b.empty:
            continue
        va, vb = a[cols].to_numpy(float), b[cols].to_numpy(float)
        low, high, p = welch(va, vb, level)
        ma, mb = va.mean(axis=0), vb.mean(axis=0)
        # each part's share of its repeat's mean e2e, averaged over the side's repeats: descriptive,
        # steadier than ms when a shared machine slows every part of a repeat alike
        sa, sb = (va / va[:, :1]).mean(axis=0), (vb / vb[:, :1]).mean(axis=0)
        info = {"cell": cell, "payload": a["payload"].iloc[0], "vus": a["vus"].iloc[0],
                "n_baseline": len(a), "n_tuned": len(b)}
        for i, part in enumerate(cols):
            row = {**info, "part": part, "label": PARTS.get(part, "mean e2e"), "baseline_ms": ma[i],
                   "tuned_ms": mb[i], "delta_ms": mb[i] - ma[i], "ci_low": low[i], "ci_high": high[i],
                   "p_value": p[i], "baseline_share": sa[i], "tuned_share": sb[i],
                   "note": _note(len(a), len(b), low[i])}
            if part == "total":
                totals.append({**row, "ratio": mb[i] / ma[i] if ma[i] > 0 else np.nan})
            else:
                parts.append(row)
    if not parts:
        return Attribution(pd.DataFrame(), pd.DataFrame(), reps, pd.DataFrame(), missing, alpha, level, has_edge,
                           ["no cell has repeats on both sides"])
    parts, totals = pd.DataFrame(parts), pd.DataFrame(totals)
    parts["q_value"] = stats.holm(parts["p_value"], alpha)  # one family: every part of every cell
    totals["q_value"] = stats.holm(totals["p_value"], alpha)  # the totals: their own family, across cells
    for t in (parts, totals):
        t["called"] = (t[["n_baseline", "n_tuned"]].min(axis=1) >= MIN_VERDICT_REPEATS) & (t["q_value"] < alpha)
    notes = []
    if not has_edge and requests["edge"].notna().any():
        notes.append("some requests have no edge line: edge time is folded into client and network for all")
    if (parts[["n_baseline", "n_tuned"]].min(axis=1) < MIN_VERDICT_REPEATS).any():
        notes.append(f"a side has fewer than {MIN_VERDICT_REPEATS} repeats: intervals only, no effect called")
    pct = _percentiles(folded, names) if percentiles else pd.DataFrame()
    return Attribution(parts, totals, reps, pct, missing, alpha, level, has_edge, notes)


def _percentiles(folded: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Per side x cell x part (and the total): p50, p95 over the side's pooled requests; NaN where
    too few requests for the quantile (window.min_requests)."""
    g = folded.rename(columns={"duration_ms": "total"}).groupby(["side", "cell"], sort=False)[["total", *names]]
    q = g.quantile(list(PERCENTILES.values())).rename_axis(["side", "cell", "q"])
    long = q.stack().rename("value").reset_index().rename(columns={"level_3": "part"})
    n = g.count().stack().rename("n").reset_index().rename(columns={"level_2": "part"})
    long = long.merge(n, on=["side", "cell", "part"])
    long["percentile"] = long["q"].map({v: k for k, v in PERCENTILES.items()})
    need = long["q"].map(min_requests)
    long["value"] = long["value"].where(long["n"] >= need)
    return long[["side", "cell", "part", "percentile", "value", "n"]]


# ---------------------------------------------------------------------------------------------
# words


def _ms(x: float) -> str:
    return f"{x:+.0f}" if abs(x) >= 10 else f"{x:+.1f}"


def _bound(x: float) -> str:
    return f"{x:.0f}" if abs(x) >= 10 else f"{x:.1f}"


def sentence(att: Attribution, cell: str) -> str:
    """One cell's sentence: the mean e2e ratio and delta [interval], then each called part (largest
    |delta| first) with its interval, then "the rest within noise" (or why nothing is called)."""
    t = att.totals[att.totals["cell"] == cell].iloc[0]
    p = att.parts[att.parts["cell"] == cell]
    total_ci = f" [{_bound(t['ci_low'])}, {_bound(t['ci_high'])}]" if np.isfinite(t["ci_low"]) else ""
    head = (f"{cell}: mean e2e {t['ratio']:.2f}x ({t['baseline_ms']:.0f} -> {t['tuned_ms']:.0f} ms, "
            f"{_ms(t['delta_ms'])} ms{total_ci})")
    if min(t["n_baseline"], t["n_tuned"]) < MIN_VERDICT_REPEATS:
        return head + (f": {min(t['n_baseline'], t['n_tuned'])} repeat(s) on a side, no part called "
                       f"(an effect needs {MIN_VERDICT_REPEATS} a side)")
    called = p[p["called"]].reindex(p[p["called"]]["delta_ms"].abs().sort_values(ascending=False).index)
    if called.empty:
        return head + ": no part differs beyond noise (Holm across the parts)"
    bits = [f"{r.label} {_ms(r.delta_ms)} ms [{_bound(r.ci_low)}, {_bound(r.ci_high)}]" for r in called.itertuples()]
    rest = ", the rest within noise" if len(called) < len(p) else ""
    return head + ": " + ", ".join(bits) + rest


def sentences(att: Attribution) -> list[str]:
    """One sentence per cell (see :func:`sentence`), cells in the comparison's order."""
    return [] if att.empty else [sentence(att, c) for c in att.totals["cell"]]


# ---------------------------------------------------------------------------------------------
# a second witness: the server's own counters

CACHE_COUNTERS = {"hits": "vllm:prefix_cache_hits_total", "queries": "vllm:prefix_cache_queries_total"}


def prefix_cache(runs: Sequence[Run], side: str) -> pd.DataFrame:
    """Per repeat and base cell: the engine's prefix-cache counters over the cell (``/metrics``
    after - before; tokens looked up and found), and the hit share. The witness a prefill delta
    of a prefix-caching A/B should agree with (the spans and the counters are independent
    records of the same engine). Empty where a run has no such scrape."""
    rows = []
    for run in runs:
        s = run.server
        if s.empty or "sample" not in s.columns:
            continue
        s = s[s["sample"].isin(CACHE_COUNTERS.values()) & s["cell_id"].isin([c.cell_id for c in run.manifest.cells])]
        for (cell_id, sample), g in s.groupby(["cell_id", "sample"], sort=False):
            v = g.set_index("when")["value"]
            if {"before", "after"} <= set(v.index):
                rows.append({"side": side, "run_id": run.run_id, "cell": base_cell(cell_id), "sample": sample,
                             "delta": float(v["after"].sum() - v["before"].sum())})
    if not rows:
        return pd.DataFrame(columns=["side", "run_id", "cell", "hits", "queries", "hit_share"])
    wide = (pd.DataFrame(rows).groupby(["side", "run_id", "cell", "sample"], sort=False)["delta"].sum()
            .unstack("sample").rename(columns={v: k for k, v in CACHE_COUNTERS.items()}).reset_index())
    for k in CACHE_COUNTERS:
        if k not in wide.columns:
            wide[k] = np.nan
    wide["hit_share"] = wide["hits"] / wide["queries"].where(wide["queries"] > 0)
    return wide[["side", "run_id", "cell", "hits", "queries", "hit_share"]]
