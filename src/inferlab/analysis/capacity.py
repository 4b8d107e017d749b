"""Max sustainable rate: the certified search's glue, and the legacy bracket judge.

**Certified search** (what ``inferlab capacity`` runs; analysis/certify.py plans and sums it
up, analysis/step_decision.py decides each step): :func:`search_config` turns a spec into a
:class:`~inferlab.analysis.certify.SearchConfig`; :func:`step_window` cuts a constant-rate
segment's requests to its steady window (the first ``warmup_s`` after the first send cut) and
reads per request TTFT, TPOT and e2e through analysis.token_slo.request_timings (its current
contract: span or stream-clock values where the cell has them); :func:`judged_bounds` keeps
the bounds the window can judge: where no request has TTFT/TPOT the step is judged on e2e
alone and the record says so (``unmeasured``), never as met. A capacity record with
``judge: certified`` holds the certified result (:func:`is_certified`); one with ``complete:
false`` a search cut short, without a claim (:func:`is_complete`; analysis/capacity_steps.py
makes both).

**Legacy bracket judge** (records made before issue 19, read and labelled as such, never
re-judged: :data:`LEGACY_LABEL`). A step is a constant-arrival-rate cell (``<payload>-at<rate>[-r<n>]``) held ``hold_s``. It
passes when, in its steady-state window (the first ``warmup_s`` cut): the error rate is within
the SLO, p95 end-to-end latency is within the SLO, k6 dropped no iteration (an open-loop send
that found no free VU), and the server completed at least ``min_achieved`` of what was offered.

Search (``next_rate``): coarse steps from ``start_rate`` multiplied by ``growth`` until one fails;
then bisection between the highest passing and the lowest failing rate until their gap is below
``resolution`` (relative); then both boundary rates are re-run ``boundary_repeats`` times. A rate
passes only if every run of it passed. The MSR is the highest passing rate, reported with the
interval [MSR, lowest failing rate]: the bracket where this search saw the SLO break, at its
resolution. It is not a confidence interval: run-to-run noise moves the boundary (and requiring
every run of a rate to pass biases the MSR low, on purpose: "sustainable" means it held every
time), so two searches agree when their brackets overlap, and a comparison of configurations
repeats whole searches across engine restarts (``inferlab ab`` with capacity specs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .certify import SearchConfig
from .step_decision import SloBound
from .token_slo import cell_request_timings, measured_bounds, request_timings, slo_bounds

CERTIFIED = "certified"
LEGACY_LABEL = ("legacy bracket judge (before issue 19): p95 e2e point estimate per step, [MSR, lowest failing "
                "rate] is a search bracket, not a confidence interval; nothing here is certified")


def is_certified(result: dict) -> bool:
    """Whether a capacity record (``capacity.json``) holds a certified search's result."""
    return result.get("judge") == CERTIFIED


def is_complete(result: dict) -> bool:
    """Whether a capacity record is a search that ran to its end (``capacity.json``), not one cut
    short (``capacity-partial.json``: ``complete: false``, decided steps only, no claim). Records
    made before partial ones existed have no such field: they were only written when complete."""
    return bool(result) and result.get("complete", True) is not False


def search_config(capacity, slo) -> SearchConfig:
    """The certified search a spec's ``capacity`` and ``slo`` sections ask for (bounds from
    analysis.token_slo.slo_bounds; ``explore_requests`` None: 20 expected violations at the
    strictest allowed share, at least 300)."""
    bounds = slo_bounds(slo)
    strictest = min(b.allowed for b in bounds)
    explore = capacity.explore_requests or max(300, math.ceil(round(20 / strictest, 6)))
    grids = {k: tuple(v) for k in ("cert_grid", "claim_grid") if (v := getattr(capacity, k)) is not None}
    return SearchConfig(bounds, start_rate=capacity.start_rate, alpha=round(1 - capacity.confidence, 12),
                        growth=capacity.growth, explore_requests=explore,
                        explore_resolution=capacity.explore_resolution, cap=capacity.cap_requests,
                        n_looks=capacity.n_looks, max_explore_steps=capacity.max_explore_steps,
                        max_rate=capacity.max_rate, **grids)


def steady_sends(requests: pd.DataFrame, warmup_s: float) -> tuple[pd.DataFrame, pd.Timestamp]:
    """A constant-rate segment's steady cut: (its requests started at least ``warmup_s`` after
    its first send, that cut time). The one rule for a step's steady window (:func:`step_window`,
    analysis.plan's trigger signals); NaT and no rows for no requests."""
    t0 = requests["start_ts"].min() + pd.Timedelta(seconds=warmup_s)
    return requests[requests["start_ts"] >= t0], t0


def step_window(requests: pd.DataFrame, warmup_s: float, spans: pd.DataFrame | None = None,
                clock: pd.DataFrame | None = None) -> pd.DataFrame:
    """A constant-rate segment's steady window: its measured requests (k6 rows, ``phase`` =
    measure where tagged) started at least ``warmup_s`` after its first send, in arrival
    order, with ``start_ts``, ``end_ts``, ``ok`` and the token_slo metrics (``ttft_ms``,
    ``tpot_ms``, ``e2e_ms`` and their ``_source``). ``spans`` (ingest.read_spans) and ``clock``
    (ingest.stream_clock.read_stream_clock) of the segment, where recorded, give each request
    its TTFT/TPOT (server span first, else the client stream:
    analysis.token_slo.cell_request_timings); without both, only e2e can be judged."""
    req = requests[requests["phase"] == "measure"] if "phase" in requests.columns else requests
    if req.empty:
        return pd.DataFrame(columns=["start_ts", "end_ts", "ok", "ttft_ms", "tpot_ms", "e2e_ms"])
    req, _ = steady_sends(req, warmup_s)
    req = req.sort_values("start_ts", kind="stable").reset_index(drop=True)
    if (spans is not None or clock is not None) and "request_id" in req.columns:
        t = cell_request_timings(req, spans, clock)
        return t.sort_values("start_ts", kind="stable").reset_index(drop=True)
    return request_timings(req)  # carries req's start_ts and end_ts, in req's (arrival) order


def judged_bounds(window: pd.DataFrame, bounds) -> tuple[list[SloBound], list[str]]:
    """(bounds the window can judge, metrics it cannot): a bound whose metric no request has
    (no span, no stream clock) is unmeasured: the step is judged on the rest (e2e always)."""
    have = measured_bounds(window, bounds)
    return have, [b.metric for b in bounds if b not in have]


@dataclass(frozen=True)
class Step:
    rate: float
    passed: bool
    reason: str
    achieved: float = float("nan")
    p95_ms: float = float("nan")
    error_rate: float = float("nan")
    dropped: int = 0


def judge_step(requests: pd.DataFrame, dropped: int, rate: float, slo_e2e_p95_ms: float, slo_error_rate: float,
               warmup_s: float, hold_s: float, min_achieved: float) -> Step:
    """Pass/fail of one constant-rate step from its measured requests (see module docstring)."""
    if requests.empty:
        return Step(rate, False, "no requests")
    t0 = requests["start_ts"].min() + pd.Timedelta(seconds=warmup_s)
    t1 = requests["start_ts"].min() + pd.Timedelta(seconds=hold_s)
    win = requests[(requests["start_ts"] >= t0) & (requests["start_ts"] < t1)]
    if win.empty:
        return Step(rate, False, "no request started inside the judged window")
    span = max((t1 - t0).total_seconds(), 1e-9)
    done = requests[(requests["end_ts"] >= t0) & (requests["end_ts"] < t1) & requests["ok"]]
    achieved = len(done) / span
    err = float((~win["ok"]).mean())
    ok = win.loc[win["ok"], "duration_ms"]
    p95 = float(np.quantile(ok, 0.95)) if len(ok) >= 20 else float(ok.max()) if len(ok) else float("inf")
    reasons = []
    if err > slo_error_rate:
        reasons.append(f"error rate {err:.1%} > {slo_error_rate:.1%}")
    if p95 > slo_e2e_p95_ms:
        reasons.append(f"p95 {p95:.0f} ms > {slo_e2e_p95_ms:.0f} ms")
    if dropped:
        reasons.append(f"{dropped} dropped sends")
    # whole requests: offered = the whole requests the rate asks for in the window, or what was
    # sent (+ dropped) if more; needed = 95 % of it, to the nearest request. At a few requests a
    # window "achieved >= 0.95 x rate" asked for more than could be sent (2 done of 2.25 at
    # 0.25/s failed); rounding down would let a growing queue pass (25 done of 27 sent at 3/s),
    # rounding up would ask for every request (18 of 18), which one in flight at the edge fails
    offered = max(len(win) + dropped, math.floor(rate * span + 1e-9))
    if len(done) < math.floor(min_achieved * offered + 0.5):
        reasons.append(f"achieved {achieved:.2f}/s < {min_achieved:.0%} of {rate:g}/s")
    return Step(rate, not reasons, "; ".join(reasons) or "meets the SLO", achieved, p95, err, dropped)


def rate_verdicts(steps: list[Step]) -> dict[float, bool]:
    """Per rate: passed only if every run of it passed."""
    out: dict[float, bool] = {}
    for s in steps:
        out[s.rate] = out.get(s.rate, True) and s.passed
    return out


def bracket(steps: list[Step]) -> tuple[float | None, float | None]:
    """(highest passing rate below the lowest failing one, lowest failing rate)."""
    v = rate_verdicts(steps)
    fails = sorted(r for r, ok in v.items() if not ok)
    hi = fails[0] if fails else None
    passes = sorted(r for r, ok in v.items() if ok and (hi is None or r < hi))
    return (passes[-1] if passes else None), hi


def next_rate(steps: list[Step], start_rate: float, growth: float, resolution: float, boundary_repeats: int,
              max_rate: float) -> float | None:
    """The next rate to run, or None when the search is done."""
    if not steps:
        return round(start_rate, 2)
    lo, hi = bracket(steps)
    if hi is None:  # coarse phase: nothing failed yet
        top = max(r.rate for r in steps)
        nxt = round(top * growth, 2)
        return nxt if top < nxt <= max_rate else None  # a growth that rounds to no change ends the search
    if lo is None:  # the first step already failed: go down
        nxt = round(hi / growth, 2)
        return nxt if nxt >= 0.01 and nxt < hi else None
    if (hi - lo) / lo > resolution:
        mid = round((lo + hi) / 2, 2)
        return mid if lo < mid < hi else None
    runs = {r: sum(s.rate == r for s in steps) for r in (lo, hi)}
    for r in (lo, hi):  # boundary repeats: the first run plus boundary_repeats more
        if runs[r] < 1 + boundary_repeats:
            return r
    return None


def msr_summary(steps: list[Step]) -> dict:
    """The result: MSR, its interval, how many steps, and the method in one sentence."""
    lo, hi = bracket(steps)
    return {"msr": lo, "interval_low": lo, "interval_high": hi, "n_steps": len(steps),
            "method": "stepped constant-arrival-rate search: coarse x-growth steps, bisection, boundary rates "
                      "repeated; a rate passes only if every run of it meets the SLO; MSR = highest passing "
                      "rate, interval = [MSR, lowest failing rate]"}


def step_requests(capacity, slo) -> dict:
    """What a certified search's steps need, for a dry run (sweep/estimate.py prints it):
    ``explore``: requests of an exploration step; ``looks``: the request counts at which a
    certification step looks; ``cap``: its most; ``zero_violation``: per bound, the requests
    a step needs to pass with no violation at all when requests are independent (more when
    violations come in runs); ``cert_steps``/``claim_steps``: how many certification steps;
    ``explore_steps``: a typical count (the simulated searches took 4-8)."""
    from .step_decision import look_sizes, requests_needed

    cfg = search_config(capacity, slo)
    return {"explore": cfg.explore_requests, "looks": look_sizes(cfg.cap_requests, cfg.n_looks),
            "cap": cfg.cap_requests, "zero_violation": {b.metric: requests_needed(b.q, 1 - cfg.alpha) for b in cfg.slo},
            "cert_steps": len(cfg.cert_grid) + len(cfg.claim_grid), "explore_steps": 6}


def describe_search(capacity, slo) -> list[str]:
    """Dry-run lines: the SLO bounds judged, the requests each step needs, the most the search
    can take (every certification step to its cap) and a typical total."""
    need = step_requests(capacity, slo)
    bounds = ", ".join(f"p{b.q * 100:g} {b.metric} <= {b.bound:g}" for b in slo_bounds(slo))
    zero = ", ".join(f"{m} {n}" for m, n in need["zero_violation"].items())
    most = need["explore_steps"] * need["explore"] + need["cert_steps"] * need["cap"]
    return [f"certified capacity search at {bounds}, {capacity.confidence:.0%} confidence",
            f"  exploration: ~{need['explore_steps']} steps of {need['explore']} requests (x{capacity.growth:g}, "
            f"then bisection to {capacity.explore_resolution:.0%})",
            f"  certification: {need['cert_steps']} steps, each looking at {', '.join(map(str, need['looks']))} "
            f"requests (+{capacity.warmup_s} s warm-up per look) until decided; cap {need['cap']} ('undecided' = fail)",
            f"  a pass with no violation needs at least: {zero} requests (independent requests)",
            f"  at most ~{most:,} requests in all (every step to its cap)"]
