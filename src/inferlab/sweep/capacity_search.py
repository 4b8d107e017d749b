"""A capacity run: the max-sustainable-rate search (analysis/capacity.py decides each next rate).

Constant-rate cells are planned one at a time, each judged from its own k6 output before the
next is chosen. Recorded: every step as a cell (reason = the judge's words) and the result as
``capacity.json``; a resumed search goes on from every step it judged."""

from __future__ import annotations

import json

from ..analysis.capacity import Step, judge_step, msr_summary, next_rate
from ..ingest import read_k6, read_k6_points
from ..runs.layout import CELL_FILES
from ..runs.manifest import CellRecord
from ..specs import CellPlan, LoadSpec, make_cell_id
from ..targets.session import TargetSession
from .cell import RunContext, console, idle_probe, run_one_cell

MAX_CAPACITY_STEPS = 40  # a budget: a converging search needs ~8-14 steps


def run_capacity(spec: LoadSpec, session: TargetSession, ctx: RunContext) -> tuple[str, str]:
    """Search until :func:`next_rate` has no next step (or the step budget is spent); returns the
    run's (status, reason)."""
    w, cap = ctx.w, spec.capacity
    quiet = spec.model_copy(update={"probe": spec.probe.model_copy(update={"under_load_requests": 0})})
    idle_probe(spec, session, ctx)
    steps: list[Step] = []
    for cell in w.manifest.cells:  # a resumed search goes on from every step it judged, failed ones too
        if cell.rate is not None and cell.status == "complete":
            steps.append(_judge(ctx, spec, cell))
        elif cell.rate is not None and cell.status == "failed":
            steps.append(Step(cell.rate, False, f"cell failed: {cell.reason}"))
    while (rate := next_rate(steps, cap.start_rate, cap.growth, cap.resolution, cap.boundary_repeats, cap.max_rate)):
        if len(steps) >= MAX_CAPACITY_STEPS:
            return "partial", f"capacity search stopped after {MAX_CAPACITY_STEPS} steps without converging"
        n = sum(s.rate == rate for s in steps)
        plan = CellPlan(cell_id=make_cell_id(cap.payload, at=rate, repeat=n + 1 if n else None), payload=cap.payload,
                        executor="constant-arrival-rate", rate=rate, duration_s=cap.hold_s)
        cell = CellRecord(**plan.model_dump())
        w.manifest.cells.append(cell)
        console.print(f"  step {len(steps) + 1}: {rate:g} requests/s for {cap.hold_s} s")
        alive = run_one_cell(quiet, session, cell, plan, ctx)
        if cell.status != "complete":
            if not alive:
                return "partial", f"target unhealthy after {cell.cell_id} ({cell.reason})"
            steps.append(Step(rate, False, f"cell {cell.status}: {cell.reason}"))
        else:
            steps.append(_judge(ctx, spec, cell))
        cell.reason = ("PASS: " if steps[-1].passed else "FAIL: ") + steps[-1].reason
        console.print(f"    {cell.reason}")
        w.checkpoint()
    result = {**msr_summary(steps), "slo": spec.slo.model_dump(), "capacity": cap.model_dump(),
              "steps": [s.__dict__ for s in steps]}
    w.write_bytes("capacity.json", json.dumps(result, indent=1, default=float).encode())
    lo, hi = result["interval_low"], result["interval_high"]
    w.manifest.notes.append(f"max sustainable rate: {lo} requests/s (interval [{lo}, {hi}]; {len(steps)} steps)")
    return "complete", ""


def _judge(ctx: RunContext, spec: LoadSpec, cell: CellRecord) -> Step:
    """A completed step judged from its measured phase (warm-up excluded) and k6's dropped sends."""
    cell_dir = ctx.w.dir / "cells" / cell.cell_id
    req = read_k6(cell_dir / CELL_FILES["k6"])
    req = req[req["phase"] == "measure"] if "phase" in req.columns else req  # warm-up ran in setup()
    pts = read_k6_points(cell_dir / CELL_FILES["k6"])
    dropped = int(pts.loc[pts["metric"] == "dropped_iterations", "value"].sum()) if not pts.empty else 0
    cap = spec.capacity
    return judge_step(req, dropped, float(cell.rate or 0), spec.slo.e2e_ms, spec.slo.error_rate, cap.warmup_s,
                      cap.hold_s, cap.min_achieved)
