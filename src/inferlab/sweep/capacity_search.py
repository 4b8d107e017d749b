"""A capacity run: the certified max-sustainable-rate search (docs/capacity.md).

analysis/certify.py plans each next step (:func:`~inferlab.analysis.certify.next_step`) from
the steps so far; this module runs it. A step is one or more constant-rate k6 cells at the
same rate (``<payload>-at<rate>[-r<k>]``): an exploration step one cell of
``explore_requests``; a certification step one cell per look, each adding the next block of
requests (``cap / n_looks``) plus ``warmup_s`` not judged, until
analysis/step_decision.py's sequential rule decides (pass, fail, or undecided at the cap).
The step's window is its segments' steady windows, concatenated in arrival order; the backlog
test runs on each segment's own window (one k6 schedule each), and a growing backlog in any
segment fails the step.

Per step, recorded on each of its cells (``reason``: ``PASS``/``FAIL``/``UNDECIDED``/
``CONTINUE`` and the decision's words) and in ``capacity.json`` (``judge: certified``): n, t,
the variance inflation, the confidence bounds per SLO bound, the decision, the backlog test,
and the step's validity (analysis.validity.check_cell per segment; an INVALID segment is
recorded and marked, the verdict is still the rule's). A resumed search re-judges every
finished cell from its raw k6 file and replays the plan (the plan is a function of the steps,
so the same cells map to the same steps)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from ..analysis.capacity import CERTIFIED, judged_bounds, search_config, step_window
from ..analysis.certify import CERTIFY, EXPLORE, SearchConfig, StepPlan, StepRecord, next_step, record, summary
from ..analysis.step_decision import FAIL, StepDecision, backlog_growth, decide
from ..analysis.token_slo import slo_bounds
from ..ingest import read_k6, read_k6_points, read_spans
from ..ingest.stream_clock import read_stream_clock
from ..runs.layout import CELL_FILES, SPANS
from ..runs.manifest import CellRecord
from ..specs import CellPlan, LoadSpec, make_cell_id
from ..targets.session import TargetSession
from .cell import RunContext, console, idle_probe, run_one_cell

MAX_CAPACITY_CELLS = 120  # a budget: a search runs ~8 exploration steps and 10 certification steps of <= 5 looks


def rate_of(x: float) -> float:
    """A planned rate as k6 can hold it (chat.js sends ``round(rate x 100)`` per 100 s)."""
    return max(round(x, 2), 0.01)


@dataclass
class Segment:
    """One k6 cell of a step: its steady window, backlog test, validity and dropped sends."""

    cell_id: str
    window: pd.DataFrame
    backlog_grows: bool
    backlog_note: str
    validity: str
    validity_reasons: list[str] = field(default_factory=list)


def read_segment(run_dir: Path, run_id: str, cell: CellRecord, warmup_s: float) -> Segment:
    """A completed cell's steady window (analysis.capacity.step_window), its backlog test, and
    its validity (analysis.validity.check_cell), from its raw k6 file joined to its spans and
    stream clock where recorded."""
    from ..analysis.validity import CellInputs, check_cell

    cell_dir = run_dir / "cells" / cell.cell_id
    req = read_k6(cell_dir / CELL_FILES["k6"])
    pts = read_k6_points(cell_dir / CELL_FILES["k6"])
    dropped = int(pts.loc[pts["metric"] == "dropped_iterations", "value"].sum()) if not pts.empty else 0
    # TTFT/TPOT per request from the cell's spans, else its stream clock (whichever was recorded)
    spans = read_spans(cell_dir / SPANS) if (cell_dir / SPANS).is_file() else None
    clock_path = cell_dir / CELL_FILES["stream_clock"]
    clock = read_stream_clock(clock_path) if clock_path.is_file() else None
    win = step_window(req, warmup_s, spans, clock)
    if len(win):
        t0 = win["start_ts"].iloc[0]
        sent = (win["start_ts"] - t0).dt.total_seconds().to_numpy()
        done = (win["end_ts"] - t0).dt.total_seconds().to_numpy()
        m = req[req["phase"] == "measure"] if "phase" in req.columns else req
        early = m[m["start_ts"] < t0]  # the warm-up's requests still in flight when the window opens
        # a failed request left the server too: completion = its end, whatever its status
        b = backlog_growth(sent, done, earlier_done_s=(early["end_ts"] - t0).dt.total_seconds().to_numpy())
        note = f"backlog {'grows' if b.grows else 'keeps up'} ({b.growth:+.1f} requests over the window, p={b.p_value:.3f})"
        grows = b.grows
    else:
        grows, note = False, "no request in the steady window"
    measured = req[req["phase"] == "measure"] if "phase" in req.columns else req
    sends = None
    if cell.workload and not pts.empty:
        from ..analysis.workload import sent_table

        sends = sent_table(pts)
    v = check_cell(CellInputs(requests=measured.reset_index(drop=True), executor=cell.executor, rate=cell.rate,
                              arrival="constant" if cell.workload else None, sends=sends,
                              dropped=dropped, cell_range=(cell.started_at, cell.ended_at)
                              if cell.started_at and cell.ended_at else None, cell_id=cell.cell_id), run_id)
    return Segment(cell.cell_id, win, grows or dropped > 0, note + (f"; {dropped} dropped sends" if dropped else ""),
                   v.verdict, v.reasons)


def judge(plan: StepPlan, segments: list[Segment], bounds, cfg: SearchConfig) -> StepDecision:
    """The step's decision after its segments so far (a certification step: look ``len(segments)``
    of ``n_looks``; an exploration step: one look, counts only)."""
    win = pd.concat([s.window for s in segments], ignore_index=True)
    values = {b.metric: win[b.metric].to_numpy(float) for b in bounds}
    look, n_looks = (len(segments), cfg.n_looks) if plan.phase == CERTIFY else (1, 1)
    d = decide(plan.rate, values, win["ok"].to_numpy(bool), list(bounds), look, n_looks, cfg.alpha)
    grows = [s for s in segments if s.backlog_grows]
    if grows and d.decision != FAIL:
        d = StepDecision(d.rate, d.n, d.look, d.n_looks, d.counts, d.backlog, FAIL,
                         "; ".join(f"{s.cell_id}: {s.backlog_note}" for s in grows))
    elif grows:
        d = StepDecision(d.rate, d.n, d.look, d.n_looks, d.counts, d.backlog, FAIL,
                         d.reason + "; " + "; ".join(f"{s.cell_id}: {s.backlog_note}" for s in grows))
    return d


def step_record(plan: StepPlan, d: StepDecision, segments: list[Segment]) -> StepRecord:
    rec = record(d, plan.phase)
    grows = any(s.backlog_grows for s in segments)
    return StepRecord(rec.rate, rec.phase, rec.n, rec.t, rec.inflation, grows, rec.decision)


def run_capacity(spec: LoadSpec, session: TargetSession, ctx: RunContext) -> tuple[str, str]:
    """Run (or resume) the certified search until the plan has no next step; returns the run's
    (status, reason)."""
    w, cap = ctx.w, spec.capacity
    quiet = spec.model_copy(update={"probe": spec.probe.model_copy(update={"under_load_requests": 0})})
    idle_probe(spec, session, ctx)
    finished = [c for c in w.manifest.cells if c.rate is not None and c.status in ("complete", "failed")]

    def obtain(plan: StepPlan, look: int, block: int, step_no: int) -> CellRecord | str:
        cell = _resumed(finished, plan.rate)  # a resumed search re-judges what it already ran
        if cell is not None:
            return cell
        if len(w.manifest.cells) >= MAX_CAPACITY_CELLS:
            return f"capacity search stopped after {MAX_CAPACITY_CELLS} cells"
        cell = _new_cell(w, spec, plan, block)
        unit = "sessions/s" if spec.workload else "requests/s"
        console.print(f"  {plan.phase} step {step_no} at {plan.rate:g} {unit}, look {look}: {block} requests "
                      f"(+{cap.warmup_s} s warm-up)")
        cell_spec = quiet.model_copy(update={"workload": _step_workload(w, spec, cell)}) if spec.workload else quiet
        alive = run_one_cell(cell_spec, session, cell, _cell_plan(cell), ctx)
        if cell.status != "complete" and not alive:
            return f"target unhealthy after {cell.cell_id} ({cell.reason})"
        return cell

    def decided(cells: list[str], label: str, reason: str) -> None:
        for cid in cells:
            w.manifest.cell(cid).reason = f"{label}: {reason}"
        console.print(f"    {label}: {reason}")
        w.checkpoint()

    steps, extra, cfg, unmeasured, stop = search(spec, w.dir, w.manifest.run_id, obtain, decided)
    if stop:
        return "partial", stop
    result = _result(steps, extra, cfg, spec, unmeasured)
    w.write_bytes("capacity.json", json.dumps(result, indent=1, default=_json).encode())
    w.manifest.notes.append(f"capacity: {result['claim']}; boundary interval [{result['interval_low']:.3g}, "
                            f"{result['interval_high']:.3g}] req/s ({len(steps)} steps)")
    return "complete", ""


def search(spec: LoadSpec, run_dir: Path, run_id: str, obtain, decided=lambda cells, label, reason: None):
    """The search loop, whatever supplies the cells: ``obtain(plan, look, block, step_no)``
    returns the finished cell of that look (run now, or from the record) or a reason to stop;
    ``decided(cell_ids, label, reason)`` is told each step's verdict. Returns (steps, per-step
    extras, the config with the judged bounds, unmeasured metrics, stop reason or "")."""
    cap = spec.capacity
    cfg = search_config(cap, spec.slo)
    steps: list[StepRecord] = []
    extra: list[dict] = []  # per step: cells, validity, backlog notes
    bounds: tuple | None = None
    unmeasured: list[str] = []
    while (plan := _planned(next_step(steps, cfg))) is not None:
        segments: list[Segment] = []
        d: StepDecision | None = None
        why = ""
        for k, looks_n in enumerate(plan.looks, 1):
            cell = obtain(plan, k, looks_n - (plan.looks[k - 2] if k > 1 else 0), len(steps) + 1)
            if isinstance(cell, str):
                return steps, extra, cfg, unmeasured, cell
            if cell.status != "complete":  # a failed cell fails its step: nothing is certified from it
                d, why = None, f"cell {cell.cell_id} {cell.status}: {cell.reason}"
                failed_cell = cell.cell_id
                break
            segments.append(read_segment(run_dir, run_id, cell, cap.warmup_s))
            if bounds is None:
                bounds_all = slo_bounds(spec.slo)
                have, unmeasured = judged_bounds(segments[0].window, bounds_all)
                bounds = tuple(have) or tuple(b for b in bounds_all if b.metric == "e2e_ms")
                cfg = replace(cfg, slo=bounds)  # the search judges (and fits) the bounds it can measure
            d = judge(plan, segments, bounds, cfg)
            if plan.phase == EXPLORE or d.final:
                break
        cells = [s.cell_id for s in segments]
        if d is None:
            steps.append(_failed_step(plan, bounds or slo_bounds(spec.slo)))
            extra.append({"cells": cells + [failed_cell], "validity": "INVALID", "validity_reasons": why,
                          "backlog": why})
            decided(cells + [failed_cell], "FAIL" if plan.phase == CERTIFY else "OVER", why)
        else:
            steps.append(step_record(plan, d, segments))
            extra.append({"cells": cells,
                          "validity": "INVALID" if any(s.validity == "INVALID" for s in segments) else "VALID",
                          "validity_reasons": "; ".join(r for s in segments for r in s.validity_reasons),
                          "backlog": "; ".join(f"{s.cell_id}: {s.backlog_note}" for s in segments)})
            if plan.phase == CERTIFY:
                decided(cells, d.decision.upper(), f"(certify, look {d.look} of {d.n_looks}) {d.reason}")
            else:  # exploration's point verdict: observed shares against the allowed ones (not certified)
                st = steps[-1]
                words = ", ".join(f"{b.metric} {st.t[b.metric]} of {st.n[b.metric]} ({st.share(b.metric):.1%} vs "
                                  f"{b.allowed:.1%} allowed)" for b in cfg.slo)
                grows = "; ".join(f"{s.cell_id}: {s.backlog_note}" for s in segments if s.backlog_grows)
                decided(cells, "OVER" if _over(st, cfg) else "UNDER",
                        f"(explore, point estimate) {words}" + (f"; {grows}" if grows else ""))
    return steps, extra, cfg, unmeasured, ""


def rejudge(run) -> tuple[list[StepRecord], SearchConfig]:
    """A finished certified run's steps and the config with the bounds it judged, re-judged from
    its cells' raw k6 files (a :class:`~inferlab.runs.reader.Run`): the plan replayed, each look
    taking the next recorded cell of its rate. What a resumed search does, read-only
    (``analysis.certify.summary(*rejudge(run))`` gives the result again)."""
    from ..specs import LoadSpec

    spec = LoadSpec.model_validate(run.manifest.spec)
    finished = [c for c in run.manifest.cells if c.rate is not None and c.status in ("complete", "failed")]

    def obtain(plan, look, block, step_no):
        return _resumed(finished, plan.rate) or "the record ends here"

    steps, _, cfg, _, _ = search(spec, run.dir, run.run_id, obtain)
    return steps, cfg


def _planned(plan: StepPlan | None) -> StepPlan | None:
    return None if plan is None else StepPlan(rate_of(plan.rate), plan.phase, plan.looks)


def _over(step: StepRecord, cfg: SearchConfig) -> bool:
    from ..analysis.certify import is_over

    return is_over(step, cfg.slo)


def _resumed(finished: list[CellRecord], rate: float) -> CellRecord | None:
    """The next finished cell of this rate from an earlier session (consumed in manifest order)."""
    for i, c in enumerate(finished):
        if abs((c.rate or 0) - rate) < 1e-9:
            return finished.pop(i)
    return None


def _new_cell(w, spec: LoadSpec, plan: StepPlan, block: int) -> CellRecord:
    """The next cell of a step: k6 constant-arrival-rate of the payload; on a workload, the
    workload's open loop ('scheduled') at a constant session rate, ``block`` requests' worth of
    sessions plus the warm-up's."""
    cap = spec.capacity
    n = sum(abs((c.rate or 0) - plan.rate) < 1e-9 for c in w.manifest.cells)
    duration = cap.warmup_s + block / plan.rate
    if spec.workload:
        from ..specs.planning import OPEN_LOOP_EXECUTOR
        from ..specs.workload import load_workload

        wl = load_workload(spec.workload)
        sessions = math.ceil(block / wl.turns + plan.rate * cap.warmup_s)
        p = CellPlan(cell_id=make_cell_id(wl.name, at=plan.rate, repeat=n + 1 if n else None), payload=wl.name,
                     workload=wl.name, executor=OPEN_LOOP_EXECUTOR, vus=cap.max_vus, iterations=sessions,
                     rate=plan.rate, duration_s=round(duration, 2))
    else:
        p = CellPlan(cell_id=make_cell_id(cap.payload, at=plan.rate, repeat=n + 1 if n else None), payload=cap.payload,
                     executor="constant-arrival-rate", rate=plan.rate, duration_s=round(duration, 2))
    cell = CellRecord(**p.model_dump())
    w.manifest.cells.append(cell)
    w.checkpoint()
    return cell


def _step_workload(w, spec: LoadSpec, cell: CellRecord) -> str:
    """A capacity step on a workload: the workload file with its arrival replaced by a constant
    ``cell.rate`` sessions/s and ``cell.iterations`` sessions (lengths, prefixes, turns and seed
    kept: the workload's own mix), written into the run (``capacity-workloads/<cell>.yaml``);
    returns its path."""
    import yaml

    from ..specs.base import read_mapping
    from ..specs.workload import WorkloadError, workload_path

    src = read_mapping(workload_path(spec.workload), "workload", WorkloadError)
    late = (src.get("arrival") or {}).get("late_ms", 50)
    data = {**src, "sessions_per_cell": int(cell.iterations or 1),
            "arrival": {"kind": "constant", "rate": float(cell.rate or 0), "max_vus": int(cell.vus or 64),
                        "late_ms": late}}
    rel = f"capacity-workloads/{cell.cell_id}.yaml"
    w.write_bytes(rel, yaml.safe_dump(data, sort_keys=False).encode())
    return str(w.dir / rel)


def _cell_plan(cell: CellRecord) -> CellPlan:
    return CellPlan(**{k: getattr(cell, k) for k in CellPlan.model_fields})


def _failed_step(plan: StepPlan, bounds) -> StepRecord:
    """A step whose cell failed: a fail (certification) or over (exploration), with no counts."""
    zero = {b.metric: 0 for b in bounds}
    if plan.phase == EXPLORE:
        return StepRecord(plan.rate, EXPLORE, zero, zero, {b.metric: 1.0 for b in bounds}, backlog_grows=True)
    d = StepDecision(plan.rate, 0, 1, 1, (), None, FAIL, "the step's cell failed")
    return StepRecord(plan.rate, CERTIFY, zero, zero, {b.metric: 1.0 for b in bounds}, True, d)


def _result(steps: list[StepRecord], extra: list[dict], cfg: SearchConfig, spec: LoadSpec, unmeasured: list[str]) -> dict:
    out = summary(steps, cfg) if steps else {"certified_rate": None, "claim": "no step ran", "boundary": float("nan"),
                                             "interval_low": float("nan"), "interval_high": float("nan"),
                                             "binding": "", "method": "", "steps": []}
    for row, e in zip(out["steps"], extra):
        row.update(e)
    cert = sorted((s for s in steps if s.phase == CERTIFY), key=lambda s: s.rate)
    x = out["certified_rate"]
    above = next((s.rate for s in cert if x is None or s.rate > x), None)
    out.update({
        "judge": CERTIFIED, "msr": x, "pass_rate": x, "fail_rate": above, "n_steps": len(steps),
        "judged": [b.metric for b in cfg.slo if b.metric not in unmeasured], "unmeasured": unmeasured,
        "judged_note": ("" if not unmeasured else f"judged on {', '.join(b.metric for b in cfg.slo if b.metric not in unmeasured)} "
                        f"only: no request had {', '.join(unmeasured)} (no server span or stream clock)"),
        "invalid_steps": sum(e["validity"] == "INVALID" for e in extra),
        "slo": spec.slo.model_dump(), "capacity": spec.capacity.model_dump(),
        "config": {"alpha": cfg.alpha, "cap_requests": cfg.cap_requests, "n_looks": cfg.n_looks,
                   "explore_requests": cfg.explore_requests, "cert_grid": list(cfg.cert_grid),
                   "claim_grid": list(cfg.claim_grid)},
        "interval_name": "boundary interval (quasi-binomial fit of violating share on log rate, inverted)",
    })
    if spec.workload:
        from ..specs.workload import load_workload

        wl = load_workload(spec.workload)
        out["workload"] = wl.name
        out["rate_unit"] = "requests/s" if wl.turns == 1 else f"sessions/s ({wl.turns} turns each)"
        if wl.turns > 1:
            out["claim"] = out["claim"].replace(" req/s ", f" sessions/s ({wl.turns} turns each) ")
    return out


def _json(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return str(x)
