"""Find the knee of an arrival-rate ramp: the highest achieved rate before the SLO breaks.

Windows of ``window_s`` seconds by request start. Target rate per window follows the linear
ramp; a window breaks the SLO when its p95 latency exceeds ``slo_p95_ms``, its error rate
exceeds ``slo_error_rate``, or it achieves less than ``keep_up`` of the target (the server
falls behind, k6 drops iterations). The knee is the last window before the first break.

``analyze_ramp`` is the stress report's ramp section in one call (no ramp cell included);
``closed_loop`` and ``dropped_iterations`` are the report's other stress views.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..runs.reader import Run
from .summary import measured
from .token_slo import e2e_bound_ms

RAMP_EXECUTOR = "ramping-arrival-rate"


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
    if df.empty:  # every request started after the ramp ended
        return df
    df["breaks_slo"] = ((df["latency_p95_ms"] > slo_p95_ms) | (df["error_rate"] > slo_error_rate)
                        | (df["achieved_rps"] < keep_up * df["target_rps"]))
    return df


DEFAULT_SLO = {"e2e_ms": 2000.0, "error_rate": 0.01}  # for runs whose spec has no SLO (imported)


def run_slo(run: Run, p95_ms: float = 0.0, error_rate: float = 0.0) -> tuple[float, float]:
    """The SLO that judges a ramp: explicit values (> 0) win, else the run's own spec, else
    DEFAULT_SLO. A report judges a run by the SLO it was run for unless told otherwise."""
    slo = run.manifest.spec.get("slo") or {}
    return (p95_ms or e2e_bound_ms(slo, DEFAULT_SLO["e2e_ms"]),
            error_rate or float(slo.get("error_rate", DEFAULT_SLO["error_rate"])))


def knee_sentence(found: dict, windows: pd.DataFrame, p95_ms: float, error_rate: float) -> str:
    """One line a reader can quote: the knee, where the SLO broke and why."""
    if windows is None or windows.empty:
        return "No ramp cell in this run."
    head = (f"Knee: **{found['knee_rps']:.1f} requests/s** (SLO: p95 e2e <= {p95_ms:.0f} ms, errors <= "
            f"{error_rate:.0%}, keeping up with >= 90 % of the target rate).") if found["knee_rps"] == found["knee_rps"] \
        else "No knee: " + found["reason"] + "."
    if found.get("first_break_window") is None:
        return head + " " + found.get("reason", "")
    w = windows.set_index("window").loc[found["first_break_window"]]
    why = [f"p95 {w['latency_p95_ms']:.0f} ms" if w["latency_p95_ms"] > p95_ms else "",
           f"errors {w['error_rate']:.1%}" if w["error_rate"] > error_rate else "",
           f"achieved {w['achieved_rps']:.1f} of {w['target_rps']:.1f} requests/s"
           if w["achieved_rps"] < 0.9 * w["target_rps"] else ""]
    return head + f" First break at {w['t_start_s']:.0f} s into the ramp: " + ", ".join(x for x in why if x) + "."


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


def ramp_cells(run: Run) -> list[str]:
    """The run's arrival-rate ramp cells, in plan order."""
    return [c.cell_id for c in run.manifest.cells if c.executor == RAMP_EXECUTOR]


def closed_loop(cells: pd.DataFrame) -> pd.DataFrame:
    """The closed-loop (fixed-VU) rows of a ``cell_summary``: every cell with VUs (not the ramps,
    not a capacity search's constant-rate steps)."""
    if cells.empty:
        return cells
    return cells[(cells["executor"] != RAMP_EXECUTOR) & cells["vus"].notna()]


def dropped_iterations(run: Run) -> pd.DataFrame:
    """Iterations k6 dropped per cell (it could not start them on time: too few VUs for the rate)."""
    pts = run.points
    if pts.empty:
        return pd.DataFrame(columns=["cell_id", "dropped_iterations"])
    dropped = pts[pts["metric"] == "dropped_iterations"]
    return dropped.groupby("cell_id", as_index=False)["value"].sum().rename(columns={"value": "dropped_iterations"})


@dataclass(frozen=True)
class RampAnalysis:
    """A run's ramp judged by an SLO. ``cell_id`` is None (and ``windows`` empty) without a ramp cell."""

    cell_id: str | None
    windows: pd.DataFrame
    knee: dict
    slo_p95_ms: float
    slo_error_rate: float

    @property
    def sentence(self) -> str:
        if self.cell_id is None:
            return "No ramp cell in this run."
        return knee_sentence(self.knee, self.windows, self.slo_p95_ms, self.slo_error_rate)


def analyze_ramp(run: Run, window_s: float = 10.0, slo_p95_ms: float = 0.0,
                 slo_error_rate: float = 0.0) -> RampAnalysis:
    """The first ramp cell's windows and knee under the SLO of ``run_slo`` (explicit values > 0
    win, else the run's own spec, else ``DEFAULT_SLO``). A run without a ramp cell gets an empty
    analysis whose sentence says so, so a report needs no branch."""
    p95_ms, error_rate = run_slo(run, slo_p95_ms, slo_error_rate)
    ramps = ramp_cells(run)
    if not ramps:
        return RampAnalysis(None, pd.DataFrame(), {}, p95_ms, error_rate)
    windows = ramp_windows(run, ramps[0], window_s, p95_ms, error_rate)
    return RampAnalysis(ramps[0], windows, find_knee(windows), p95_ms, error_rate)
