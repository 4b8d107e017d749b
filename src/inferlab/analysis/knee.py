"""Find the knee of an arrival-rate ramp: the highest achieved rate before the SLO breaks.

Windows of ``window_s`` seconds by request start. Target rate per window follows the linear
ramp; a window breaks the SLO when its p95 latency exceeds ``slo_p95_ms``, its error rate
exceeds ``slo_error_rate``, or it achieves less than ``keep_up`` of the target (the server
falls behind, k6 drops iterations). The knee is the last window before the first break.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..runs.load import Run
from .summary import measured


def ramp_windows(run: Run, cell_id: str, window_s: float = 10.0, slo_p95_ms: float = 2000,
                 slo_error_rate: float = 0.01, keep_up: float = 0.9) -> pd.DataFrame:
    cell = run.manifest.cell(cell_id)
    req = measured(run)
    req = req[req["cell_id"] == cell_id]
    if req.empty:
        return pd.DataFrame()
    t0 = req["start_ts"].min() if cell.started_at is None else pd.Timestamp(cell.started_at)
    t_rel = (req["start_ts"] - t0).dt.total_seconds()
    win = (t_rel // window_s).astype(int)
    dur = float(cell.duration_s or t_rel.max())
    pts = run.points
    dropped = pts[(pts["cell_id"] == cell_id) & (pts["metric"] == "dropped_iterations")] if not pts.empty else pts
    drop_win = ((dropped["ts"] - t0).dt.total_seconds() // window_s).astype(int).value_counts() if len(dropped) else pd.Series(dtype=int)
    rows = []
    for w, g in req.groupby(win):
        if w * window_s >= dur:
            continue  # stragglers after the ramp ended: not a window of the ramp
        span = min(window_s, dur - w * window_s)  # the last window may be shorter
        mid = w * window_s + span / 2
        target = cell.rate_from + (cell.rate_to - cell.rate_from) * min(mid / dur, 1.0) if cell.rate_to else np.nan
        achieved = len(g) / span
        rows.append({"window": int(w), "t_start_s": w * window_s, "target_rps": target, "achieved_rps": achieved,
                     "latency_p50_ms": g["duration_ms"].median(), "latency_p95_ms": g["duration_ms"].quantile(0.95),
                     "error_rate": float((~g["ok"]).mean()), "dropped_iterations": int(drop_win.get(w, 0))})
    df = pd.DataFrame(rows)
    df["breaks_slo"] = ((df["latency_p95_ms"] > slo_p95_ms) | (df["error_rate"] > slo_error_rate)
                        | (df["achieved_rps"] < keep_up * df["target_rps"]))
    return df


def find_knee(windows: pd.DataFrame) -> dict:
    """The knee: highest achieved RPS among windows before the first SLO break."""
    if windows.empty:
        return {"knee_rps": np.nan, "first_break_window": None, "reason": "no requests"}
    breaks = windows.index[windows["breaks_slo"]]
    before = windows.loc[: breaks[0] - 1] if len(breaks) else windows
    if before.empty:
        return {"knee_rps": np.nan, "first_break_window": int(windows.loc[breaks[0], "window"]),
                "reason": "the SLO broke in the first window: start the ramp lower"}
    return {"knee_rps": float(before["achieved_rps"].max()),
            "first_break_window": int(windows.loc[breaks[0], "window"]) if len(breaks) else None,
            "reason": "SLO held to the end of the ramp: ramp higher" if not len(breaks) else ""}
