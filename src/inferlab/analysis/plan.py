"""Capacity plan from a measured single-replica rate, and the autoscaling trigger that the
same measurement supports.

**Plan** (:func:`plan_capacity`, :func:`plan_from_result`). Sized from the *certified lower
bound* of a certified capacity search (analysis/certify.py: "at least X req/s at the SLO,
95 % confidence"): replicas = ceil(target / (X x (1 - headroom))). The boundary interval is
shown beside it for information and never sizes anything. A legacy record (before issue 19,
no certified bound) plans from its highest passing rate and the plan says it is not certified.
Assumption, stated in every plan: *linear scaling* — n replicas behind a load balancer
sustain n x the single-replica rate under the same SLO and workload (nothing shared saturates
first: balancer, network, client, a shared KV store), and a replica runs alone on its
``gpus_per_replica`` GPUs. The check of the assumption is :func:`scaling_check`: the measured
rate of n replicas against n x the single one.

**Trigger** (:func:`boundary_signals`, :func:`autoscale_trigger`). Per capacity step, the
signals' *steady-window* values: the window is the step's measured requests from ``warmup_s``
after its first send to its last send (analysis/capacity.py's step window), never the cell's
whole life (which adds the warm-up, k6's start and the drain: it diluted the values ~17 %).
By Little's law on that window: mean requests waiting = the window's arrival rate x the mean
queue time per request, mean requests running = the arrival rate x the mean inference
(prefill + decode) time per request, the per-request means from the step's /metrics counters
(scraped before and after, so no sample is missed); mean end-to-end latency = the counters'
sum / count. A signal *moves at the SLO boundary* when its value at the lowest failing rate
exceeds its value at the highest passing rate by at least ``min_change`` (relative) and
``min_delta`` (absolute); of those that move, the one that moves most is the trigger, and its
threshold is its value at the highest passing rate x (1 - headroom), never below the signal's
floor (the smallest change that counts as moving: 0.5 requests): scale out before the rate
at which the SLO broke. The passing and failing rates are a certified search's certified
lower bound and its first non-passing certification step above it (a legacy record: its
bracket). When none moves, there is no trigger, and the reason says so.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import pandas as pd

from ..runs.reader import Run
from .capacity import steady_sends

ASSUMPTION = ("linear scaling: n replicas behind a load balancer sustain n x the single-replica max sustainable "
              "rate under the same SLO and workload (no shared bottleneck: balancer, network, client)")


@dataclass(frozen=True)
class CapacityPlan:
    target_rate: float
    headroom: float
    basis_rate: float  # the single-replica rate the plan sizes from
    basis: str  # what that rate is: the certified lower bound, or a legacy (not certified) rate
    gpus_per_replica: int
    replicas: int
    gpus: int
    per_replica_load: float
    predicted_rate: float  # replicas x basis_rate: what the plan holds at least, under the assumption
    boundary_interval: str = ""  # for information; never sizes anything
    assumption: str = ASSUMPTION

    def table(self) -> pd.DataFrame:
        return pd.DataFrame({"quantity": list(asdict(self)), "value": [str(v) for v in asdict(self).values()]})


def replicas_for(target_rate: float, rate: float, headroom: float) -> int:
    if rate <= 0:
        raise ValueError(f"single-replica rate {rate} must be > 0 to plan replicas")
    if not 0 <= headroom < 1:
        raise ValueError(f"headroom {headroom} must be in [0, 1)")
    return max(1, math.ceil(round(target_rate / (rate * (1 - headroom)), 9)))


def plan_capacity(target_rate: float, rate: float, headroom: float = 0.2, gpus_per_replica: int = 1,
                  basis: str = "certified lower bound", boundary_interval: str = "") -> CapacityPlan:
    """Replicas and GPUs for ``target_rate`` requests/s from the single-replica ``rate``
    (module docstring: the rule)."""
    if target_rate <= 0:
        raise ValueError(f"target rate {target_rate} must be > 0")
    n = replicas_for(target_rate, rate, headroom)
    return CapacityPlan(target_rate, headroom, rate, basis, gpus_per_replica, n, n * gpus_per_replica,
                        round(target_rate / n, 4), round(n * rate, 4), boundary_interval)


def plan_from_result(result: dict, target_rate: float, headroom: float = 0.2, gpus_per_replica: int = 1,
                     where: str = "") -> CapacityPlan:
    """:func:`plan_capacity` from a capacity record (``capacity.json``): its certified lower
    bound, or a legacy record's highest passing rate (labelled not certified). Raises a
    ValueError naming ``where`` when there is no rate to plan from."""
    from .capacity import is_certified, is_complete

    if result and not is_complete(result):
        raise ValueError(f"{where}: the capacity search is incomplete ({result.get('claim')}); nothing to size "
                         "from until `inferlab capacity --resume` completes it")
    if is_certified(result):
        x = result.get("certified_rate")
        if x is None:
            raise ValueError(f"{where}: the certified search certified no rate ({result.get('claim')}); "
                             "nothing to size from")
        conf = f"{1 - result.get('config', {}).get('alpha', 0.05):.0%}"
        lo, hi = result.get("interval_low"), result.get("interval_high")
        return plan_capacity(target_rate, float(x), headroom, gpus_per_replica,
                             f"certified lower bound ({conf} confidence): {result['claim']}",
                             f"[{lo:.3g}, {hi:.3g}] req/s (where the SLO breaks for this engine; information only)")
    if result.get("msr") is None:
        raise ValueError(f"{where}: no max sustainable rate (plan from a capacity run)")
    return plan_capacity(target_rate, float(result["msr"]), headroom, gpus_per_replica,
                         "legacy max sustainable rate (highest passing rate of a bracket search): not certified")


def scaling_check(single_msr: float, replicas: int, measured_msr: float, tolerance: float = 0.15) -> dict:
    """Predicted (replicas x single) against the measured rate of ``replicas`` replicas."""
    predicted = replicas * single_msr
    error = (measured_msr - predicted) / predicted
    return {"replicas": replicas, "single_msr": single_msr, "predicted_msr": predicted, "measured_msr": measured_msr,
            "relative_error": round(error, 4), "tolerance": tolerance, "agree": abs(error) <= tolerance,
            "assumption": ASSUMPTION}


# ---------------------------------------------------------------- the autoscaling trigger

SIGNALS = {  # name: (what it is, PromQL for KEDA, KEDA metricType)
    "waiting": ("mean requests waiting (vllm:num_requests_waiting)",
                'sum(vllm:num_requests_waiting{namespace="inferlab"})', None),
    "running": ("mean requests running (vllm:num_requests_running)",
                'sum(vllm:num_requests_running{namespace="inferlab"})', None),
    "latency_s": ("mean end-to-end latency, s (vllm:e2e_request_latency_seconds)",
                  'sum(rate(vllm:e2e_request_latency_seconds_sum{namespace="inferlab"}[1m])) / '
                  'sum(rate(vllm:e2e_request_latency_seconds_count{namespace="inferlab"}[1m]))', "Value"),
}
_SUMS = {"queue": "vllm:request_queue_time_seconds_sum", "inference": "vllm:request_inference_time_seconds_sum",
         "e2e_sum": "vllm:e2e_request_latency_seconds_sum", "e2e_count": "vllm:e2e_request_latency_seconds_count"}


def _window_rates(run: Run, warmup_s: float) -> dict[str, tuple[float, float]]:
    """Per open-loop cell: (arrival rate in its steady window, window seconds), from k6's rows."""
    req = run.requests
    if req.empty or "cell_id" not in req.columns:
        return {}
    if "phase" in req.columns:
        req = req[req["phase"] == "measure"]
    out = {}
    for cid, g in req.groupby("cell_id"):
        w, t0 = steady_sends(g, warmup_s)
        secs = (w["start_ts"].max() - t0).total_seconds() if len(w) > 1 else 0.0
        if secs > 0:
            out[str(cid)] = (len(w) / secs, secs)
    return out


def boundary_signals(run: Run) -> pd.DataFrame:
    """One row per capacity step x signal: cell_id, rate, passed, seconds (the steady window),
    requests, signal, value (module docstring: steady-window values). Replicas scraped as pods
    are averaged (a replica's view, what KEDA's AverageValue compares)."""
    srv = run.server
    if srv.empty:
        return pd.DataFrame(columns=["cell_id", "rate", "passed", "seconds", "signal", "value"])
    sel = srv[srv["sample"].isin(_SUMS.values())]
    per = sel.groupby(["cell_id", "pod", "when", "sample"])["value"].sum().unstack("when")
    per = (per["after"] - per["before"]).rename("delta").reset_index()
    if (per["pod"] != "").any():  # a multi-replica target: each replica scraped directly
        per = per[per["pod"] != ""]
    delta = per.groupby(["cell_id", "sample"])["delta"].mean().unstack("sample")
    warmup_s = float((run.manifest.spec.get("capacity") or {}).get("warmup_s", 0) or 0)
    windows = _window_rates(run, warmup_s)
    rows = []
    for c in run.manifest.cells:
        if c.rate is None or c.cell_id not in delta.index or c.cell_id not in windows:
            continue
        lam, secs = windows[c.cell_id]
        d = delta.loc[c.cell_id]
        count = d.get(_SUMS["e2e_count"], float("nan"))
        per_req = (lambda k: d.get(_SUMS[k], float("nan")) / count if count else float("nan"))  # noqa: E731
        values = {"waiting": lam * per_req("queue"), "running": lam * per_req("inference"),
                  "latency_s": per_req("e2e_sum")}
        for sig, v in values.items():
            rows.append({"cell_id": c.cell_id, "rate": c.rate, "passed": c.reason.startswith("PASS"), "seconds": secs,
                         "requests": count, "signal": sig, "value": float(v)})
    return pd.DataFrame(rows)


@dataclass
class Trigger:
    signal: str | None
    query: str = ""
    metric_type: str | None = None
    threshold: float = float("nan")
    value_at_pass: float = float("nan")
    value_at_fail: float = float("nan")
    pass_rate: float | None = None
    fail_rate: float | None = None
    headroom: float = 0.2
    run_id: str = ""
    reason: str = ""
    moves: dict = field(default_factory=dict)

    def origin_lines(self) -> list[str]:
        """Where the trigger came from, for a component's header and the report."""
        if self.signal is None:
            return [f"no trigger from run {self.run_id}: {self.reason}"]
        scaled = self.value_at_pass * (1 - self.headroom)
        floor = "" if abs(scaled - self.threshold) < 1e-3 else \
            f" = {scaled:.3g}, raised to the signal's floor {self.threshold:g} (a smaller threshold scales on noise)"
        return [f"signal {self.signal} ({SIGNALS[self.signal][0]}), threshold {self.threshold:g}",
                f"= {self.value_at_pass:.3g} at {self.pass_rate:g} requests/s (highest rate that met the SLO) "
                f"x (1 - headroom {self.headroom:g}){floor};",
                f"at {self.fail_rate:g} requests/s (lowest failing rate) it was {self.value_at_fail:.3g}.",
                f"Measured in capacity run {self.run_id} (analysis/plan.py: steady-window values, Little's law on",
                "each step's window arrival rate and /metrics per-request times); " + self.reason]

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=str)


def autoscale_trigger(run: Run, headroom: float = 0.2, min_change: float = 0.2,
                      min_delta: dict | None = None) -> tuple[Trigger, pd.DataFrame]:
    """The trigger a capacity run supports (module docstring: the rule) and the step table."""
    table = boundary_signals(run)
    from .capacity import is_certified

    res = run.capacity
    lo, hi = (res.get("pass_rate"), res.get("fail_rate")) if is_certified(res) else \
        (res.get("interval_low"), res.get("interval_high"))
    t = choose_trigger(table, lo, hi, run.run_id, headroom, min_change, min_delta)
    if res and not is_certified(res):
        t.reason += "; the passing and failing rates are a legacy bracket search's (before issue 19), not certified"
    warm = sum(c.warmup_requests or 0 for c in run.manifest.cells if c.rate is not None)
    if warm:
        t.reason += (f"; caution: the steps include {warm} warm-up requests (k6 setup) that the counters cannot "
                     "separate from the step's own (set warmup_requests: 0 for a clean trigger)")
    return t, table


def choose_trigger(table: pd.DataFrame, lo: float | None, hi: float | None, run_id: str = "", headroom: float = 0.2,
                   min_change: float = 0.2, min_delta: dict | None = None) -> Trigger:
    """The rule of the module docstring on a step table (:func:`boundary_signals`), with the
    SLO boundary [lo, hi] of the capacity search."""
    min_delta = {"waiting": 0.5, "running": 0.5, "latency_s": 0.05, **(min_delta or {})}
    if table.empty or lo is None or hi is None:
        why = "no /metrics scrapes of the steps" if table.empty else "the search has no SLO boundary (no passing " \
              "and failing rate)"
        return Trigger(None, run_id=run_id, headroom=headroom, reason=why)
    at_pass = table[(table["rate"] == lo) & table["passed"]].groupby("signal")["value"].mean()
    at_fail = table[(table["rate"] == hi) & ~table["passed"]].groupby("signal")["value"].mean()
    moves = {}
    for sig in SIGNALS:
        a, b = float(at_pass.get(sig, float("nan"))), float(at_fail.get(sig, float("nan")))
        rel = (b - a) / a if a > 0 else (math.inf if b > 0 else 0.0)
        moves[sig] = {"at_pass": a, "at_fail": b, "relative_change": rel,
                      "moves": bool(b - a >= min_delta[sig] and rel >= min_change)}
    movers = [s for s in SIGNALS if moves[s]["moves"]]
    if not movers:
        return Trigger(None, run_id=run_id, headroom=headroom, pass_rate=lo, fail_rate=hi, moves=moves,
                       reason=f"no signal moved by >= {min_change:.0%} between {lo:g} and {hi:g} requests/s")
    best = max(movers, key=lambda s: moves[s]["relative_change"])
    others = ", ".join(f"{s} {moves[s]['at_pass']:.3g} -> {moves[s]['at_fail']:.3g}" for s in SIGNALS if s != best)
    why = f"it moved most at the boundary ({moves[best]['relative_change']:+.0%}); the others: {others}"
    # a signal ~0 at the passing rate (nothing waits) would give a threshold of ~0, "always scale
    # out": never below the smallest change the signal must show to count as moving
    threshold = max(moves[best]["at_pass"] * (1 - headroom), min_delta[best])
    return Trigger(best, SIGNALS[best][1], SIGNALS[best][2], round(threshold, 3),
                   moves[best]["at_pass"], moves[best]["at_fail"], lo, hi, headroom, run_id, why, moves)
