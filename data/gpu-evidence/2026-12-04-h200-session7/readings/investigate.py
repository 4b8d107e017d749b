"""How readings/*.txt and readings/metrics-waiting-running.csv were made from the two runs of this
folder (README.md: "Why certification steps fail the backlog test" and "The 'target died' cells").

    PYTHONPATH=src python data/gpu-evidence/2026-12-04-h200-session7/readings/investigate.py

Reads the runs with the product's own reader and judge (runs.reader.Run, analysis.capacity_steps,
analysis.step_decision.backlog_growth); writes nothing into the runs. The 1 s /metrics series
(telemetry/metrics-samples.prom.gz) is left out of this folder for size: with it present (the
device's full copy, INFERLAB_EVIDENCE_FULL=<dir holding the two run folders>) the CSV is
rebuilt from it, else the shipped CSV is read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats

from inferlab.analysis.capacity import steady_sends, step_window
from inferlab.analysis.capacity_steps import rejudged_record, to_json
from inferlab.analysis.step_decision import backlog_growth
from inferlab.ingest import read_k6, read_k6_points, read_spans
from inferlab.report.capacity import front_line, headline, step_table
from inferlab.runs.reader import Run

HERE = Path(__file__).resolve().parent
RUNS = {"cap-1": HERE.parent / "cap-1/ws/data/runs/20261204T152105Z-local-cap-1",
        "cap-2": HERE.parent / "cap-2/ws/data/runs/20261204T154743Z-local-cap-2"}
WARMUP_S = 5.0
POOL = 1500  # capacity.pre_allocated_vus: k6's constant-arrival-rate VU pool
METRICS_CSV = HERE / "metrics-waiting-running.csv"


def measured(run_dir: Path, cell_id: str) -> pd.DataFrame:
    req = read_k6(run_dir / "cells" / cell_id / "k6.ndjson.gz")
    return req[req["phase"] == "measure"].sort_values("start_ts").reset_index(drop=True)


def spans_of(run_dir: Path, cell_id: str) -> pd.DataFrame | None:
    p = run_dir / "cells" / cell_id / "spans.otlp.jsonl.gz"
    return read_spans(p) if p.is_file() else None


def inflight_at(sent: np.ndarray, done: np.ndarray, early: np.ndarray) -> np.ndarray:
    """Requests in flight at each send (the backlog the judge fits): sent so far - completed so
    far, plus the warm-up window's requests still out (analysis.step_decision.backlog_growth)."""
    sent = np.sort(sent)
    return np.arange(1, len(sent) + 1) - np.searchsorted(np.sort(done), sent, side="right") \
        + len(early) - np.searchsorted(np.sort(early), sent, side="right")


def window_row(name: str, run_dir: Path, cell, metrics: pd.DataFrame) -> dict:
    """One cell's steady window: the backlog test as the judge runs it, what the server saw
    (span queue time, in flight, /metrics waiting), and what the client did (send lag, VUs)."""
    m = measured(run_dir, cell.cell_id)
    win = steady_sends(m, WARMUP_S)[0].sort_values("start_ts", kind="stable")  # the judge's window (k6 columns kept)
    t0 = win["start_ts"].iloc[0]
    sent = (win["start_ts"] - t0).dt.total_seconds().to_numpy()
    done = (win["end_ts"] - t0).dt.total_seconds().to_numpy()
    early = (m.loc[m["start_ts"] < t0, "end_ts"] - t0).dt.total_seconds().to_numpy()
    b = backlog_growth(sent, done, earlier_done_s=early)
    p_lags = {}  # the same trend test with Newey-West lags of 1 s and 2 s of requests instead of n^(1/3)
    for secs in (1, 2):
        fit = sm.OLS(inflight_at(sent, done, early).astype(float), sm.add_constant(sent - sent[0])).fit(
            cov_type="HAC", cov_kwds={"maxlags": int(cell.rate * secs)})
        p_lags[secs] = round(float(stats.norm.sf(fit.tvalues[1])), 4)
    inflight = inflight_at(sent, done, early)
    sp = spans_of(run_dir, cell.cell_id)
    timed = step_window(m, WARMUP_S, sp)  # the judge's per-request TTFT/TPOT (server spans)
    sp = sp[sp["name"] == "llm_request"] if sp is not None else None
    j = win.merge(sp[["request_id", "queue_ms", "e2e_ms"]].rename(columns={"e2e_ms": "srv_e2e_ms"}),
                  on="request_id", how="left") if sp is not None else win.assign(queue_ms=np.nan, srv_e2e_ms=np.nan)
    half = sent < sent[-1] / 2
    lag = (m["start_ts"] - m["start_ts"].iloc[0]).dt.total_seconds().to_numpy() - np.arange(len(m)) / cell.rate
    pts = read_k6_points(run_dir / "cells" / cell.cell_id / "k6.ndjson.gz")
    warm = read_k6(run_dir / "cells" / cell.cell_id / "k6.ndjson.gz").query("phase == 'warmup'")
    burst = metrics[(metrics["run"] == name) & (metrics["ts"] >= warm["start_ts"].min()) & (metrics["ts"] < m["start_ts"].min())]
    w = metrics[(metrics["run"] == name) & (metrics["ts"] >= t0) & (metrics["ts"] <= win["start_ts"].iloc[-1])]
    return {"cell": cell.cell_id, "rate": cell.rate, "n": len(win), "window_s": round(sent[-1], 2),
            "ttft_p99_ms": round(timed["ttft_ms"].quantile(0.99), 1), "tpot_p99_ms": round(timed["tpot_ms"].quantile(0.99), 2),
            "e2e_p95_ms": round(timed["e2e_ms"].quantile(0.95)), "growth": round(b.growth, 1), "p": round(b.p_value, 4), "p_lags_1s": p_lags[1], "p_lags_2s": p_lags[2],
            "grows": b.grows,
            "in_flight_min": int(inflight.min()), "in_flight_max": int(inflight.max()),
            "e2e_ms_1st_half": round(j.loc[half, "duration_ms"].mean()), "e2e_ms_2nd_half": round(j.loc[~half, "duration_ms"].mean()),
            "span_e2e_ms_2nd_half": round(j.loc[~half, "srv_e2e_ms"].mean()),
            "client_minus_span_ms": round((j["duration_ms"] - j["srv_e2e_ms"]).mean(), 1),
            "span_queue_ms_max": round(j["queue_ms"].max(), 2),
            "metrics_waiting_max": w.loc[w["family"] == "vllm:num_requests_waiting", "value"].max(),
            "metrics_running_max": w.loc[w["family"] == "vllm:num_requests_running", "value"].max(),
            "metrics_samples": int((w["family"] == "vllm:num_requests_waiting").sum()),
            "send_lag_ms_min": round(lag.min() * 1000), "send_lag_ms_max": round(lag.max() * 1000),
            "k6_vus_max": int(pts.loc[pts["metric"] == "vus", "value"].max()),
            "k6_dropped": int(pts.loc[pts["metric"] == "dropped_iterations", "value"].sum()),
            "warmup_requests": len(warm),
            "warmup_running_max": burst.loc[burst["family"] == "vllm:num_requests_running", "value"].max(),
            "warmup_waiting_max": burst.loc[burst["family"] == "vllm:num_requests_waiting", "value"].max()}


def keepalive(run_dir: Path, cell) -> pd.DataFrame:
    """Per measured request past the first POOL: how long its k6 VU sat idle before it (k6 hands
    VUs out first in, first out: the VU of iteration j is the (j - POOL)-th to come back) and
    whether its connection was reused (connecting_ms == 0), binned, with the failed requests."""
    m = measured(run_dir, cell.cell_id)
    m["it"] = m["request_id"].str.rsplit(".m", n=1).str[1].astype(int)
    m = m.sort_values("it").reset_index(drop=True)
    ends = np.sort(m["end_ts"].to_numpy())
    j = m[m["it"] >= POOL].copy()
    j["idle_s"] = (j["start_ts"].to_numpy() - ends[(j["it"] - POOL).to_numpy()]) / np.timedelta64(1, "s")
    bins = pd.cut(j["idle_s"], [-1, 4.0, 4.5, 4.8, 4.9, 5.0, 5.05, 5.1, 5.2, 5.5, 6.0, 60])
    out = j.groupby(bins, observed=True).agg(requests=("ok", "size"), reused=("connecting_ms", lambda s: int((s == 0).sum())),
                                            failed=("ok", lambda s: int((~s).sum())))
    return out.assign(cell=cell.cell_id, first_cycle_new=int((m.loc[m["it"] < POOL, "connecting_ms"] > 0).sum()))


SERIES = {"cap-1": ("short-at197p56", "short-at211p34", "short-at215p27"), "cap-2": ("short-at191p46", "short-at218p81-r2")}


def inflight_series(run_dir: Path, cell_id: str, step_s: float = 0.5) -> str:
    """Requests in flight every ``step_s`` from the first measured send: as k6 saw them (sent,
    not answered) and as vLLM did (its llm_request spans), and per slot of send time the mean
    e2e (k6), TTFT and decode time per token (vLLM's spans); the judge's window opens at 5.0 s."""
    m = measured(run_dir, cell_id)
    s0 = m["start_ts"].min()
    sec = lambda ts: (ts - s0).dt.total_seconds().to_numpy()  # noqa: E731
    st, en = sec(m["start_ts"]), sec(m["end_ts"])
    sp = spans_of(run_dir, cell_id)
    sp = sp[(sp["name"] == "llm_request") & sp["request_id"].isin(m["request_id"])]
    sst, sen = sec(sp["start_ts"]), sec(sp["end_ts"])
    ts = np.arange(0, en.max(), step_s)
    e2e = pd.Series(m["duration_ms"].to_numpy()).groupby(np.floor(st / step_s).astype(int)).mean()
    j = m.merge(sp[["request_id", "decode_ms", "ttft_ms", "completion_tokens"]], on="request_id")
    slot = np.floor(sec(j["start_ts"]) / step_s).astype(int)
    tpot = (j["decode_ms"] / (j["completion_tokens"] - 1)).groupby(slot).mean()  # vLLM's decode time per token
    ttft = j["ttft_ms"].groupby(slot).mean()
    rows = [("t_s", [f"{t:.1f}" for t in ts]),
            ("k6_in_flight", [str(int(((st <= t) & (en > t)).sum())) for t in ts]),
            ("vllm_in_flight", [str(int(((sst <= t) & (sen > t)).sum())) for t in ts]),
            ("e2e_ms_sent", [str(int(round(e2e.get(i, 0)))) for i in range(len(ts))]),
            ("span_ttft_ms", [str(int(round(ttft.get(i, 0)))) for i in range(len(ts))]),
            ("span_tpot_ms", [f"{tpot.get(i, 0):.1f}" for i in range(len(ts))])]
    return f"{cell_id}\n" + "\n".join(f"  {k:15s}" + " ".join(f"{v:>5s}" for v in vals) for k, vals in rows)


def metrics_table() -> pd.DataFrame:
    full = os.environ.get("INFERLAB_EVIDENCE_FULL")
    if not full:
        return pd.read_csv(METRICS_CSV, parse_dates=["ts"])
    frames = []
    for name, d in RUNS.items():
        raw = Run(Path(full) / d.name).series_raw
        keep = raw[raw["family"].isin(["vllm:num_requests_waiting", "vllm:num_requests_running"])]
        frames.append(keep[["ts", "family", "value"]].assign(run=name))
    df = pd.concat(frames, ignore_index=True)[["run", "ts", "family", "value"]]
    df.to_csv(METRICS_CSV, index=False)
    return df


def main() -> None:
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 40)
    metrics = metrics_table()
    backlog, conn = [], []
    for name, d in RUNS.items():
        run = Run(d)
        rec = rejudged_record(run)
        (HERE / f"{name}.capacity-partial.json").write_text(json.dumps(rec, indent=1, default=to_json) + "\n")
        shown = step_table(rec).drop(columns=["reason", "validity_reasons", "backlog", "cells"])
        (HERE / f"{name}.report.txt").write_text("\n\n".join([front_line(rec), headline(rec), shown.to_string(index=False),
                                                              *(f"{s['rate']:g} {s['phase']}: " + (f"{s['reason']} | " if s['phase'] == 'certify' else "") + s['backlog']
                                                                + (f"; INVALID: {s['validity_reasons']}" if s['validity'] == 'INVALID' else "")
                                                                for s in rec["steps"])]) + "\n")
        for cell in run.manifest.cells:
            if cell.status == "complete":
                backlog.append({"run": name, **window_row(name, d, cell, metrics)})
            if cell.status in ("complete", "failed") and (cell.rate or 0) * (cell.duration_s or 0) > POOL:
                conn.append(keepalive(d, cell).assign(run=name))  # only a cell that hands a VU out twice
    (HERE / "inflight.txt").write_text("\n\n".join(inflight_series(RUNS[n], c) for n, cells in SERIES.items()
                                                  for c in cells) + "\n")
    (HERE / "backlog.txt").write_text(pd.DataFrame(backlog).to_string(index=False) + "\n")
    table = pd.concat(conn).reset_index().rename(columns={"idle_s": "vu_idle_s"})
    (HERE / "keepalive.txt").write_text(table[["run", "cell", "first_cycle_new", "vu_idle_s", "requests", "reused",
                                               "failed"]].to_string(index=False) + "\n")


if __name__ == "__main__":
    main()
