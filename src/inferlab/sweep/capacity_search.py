"""A capacity run: the certified max-sustainable-rate search (docs/capacity.md), run on the target.

analysis/certify.py plans each next step; analysis/capacity_steps.py runs the search loop,
judges each step and makes the record; this module supplies the cells: each look of a step is
one constant-rate k6 cell (``<payload>-at<rate>[-r<k>]``) of ``block`` requests plus
``warmup_s`` not judged (an exploration step one cell of ``explore_requests``). Each cell's
``reason`` carries its step's verdict (``PASS``/``FAIL``/``UNDECIDED``/``CONTINUE``/``OVER``/
``UNDER`` and the decision's words).

**The record, written once.** A search that ran to its end writes ``capacity.json``
(complete: the claim and the boundary interval). A search that stops early writes
``capacity-partial.json`` instead (no claim: the steps decided so far, the step that was
running, why it stopped): on a stop reason (a dead target, the cell budget) and on any
exception out of the search, Ctrl-C and a time limit's SIGTERM included, which is then raised
again so the runner records the run ``partial`` as before. A resumed search re-judges every
finished cell from its raw k6 file and replays the plan (the plan is a function of the steps,
so the same cells map to the same steps); a resumed session cut again writes the next
``capacity-partial-resume<N>.json``, and one that completes writes ``capacity.json``, which
supersedes them. runs.reader's ``Run.capacity`` reads the one that counts."""

from __future__ import annotations

import json
import math

from ..analysis.capacity import search_config
from ..analysis.capacity_steps import (SearchState, complete_record, finished_cells, partial_record, resumed_cell,
                                       search, to_json)
from ..analysis.certify import StepPlan
from ..procs import signals_blocked
from ..runs.layout import CAPACITY, CAPACITY_PARTIAL, unique_name, with_resumes
from ..runs.manifest import CellRecord
from ..specs import CellPlan, LoadSpec, make_cell_id
from ..targets.session import TargetSession
from .cell import RunContext, console, idle_probe, run_one_cell

MAX_CAPACITY_CELLS = 120  # a budget: a search runs ~8 exploration steps and 10 certification steps of <= 5 looks
INTERRUPTED = "interrupted (Ctrl-C or SIGTERM)"


def run_capacity(spec: LoadSpec, session: TargetSession, ctx: RunContext) -> tuple[str, str]:
    """Run (or resume) the certified search until the plan has no next step; returns the run's
    (status, reason). Whatever stops it early, the steps decided so far are recorded first
    (module docstring)."""
    w, cap = ctx.w, spec.capacity
    quiet = spec.model_copy(update={"probe": spec.probe.model_copy(update={"under_load_requests": 0})})
    finished = finished_cells(w.manifest)
    state = SearchState(search_config(cap, spec.slo))  # filled by the search as it goes

    def obtain(plan: StepPlan, look: int, block: int, step_no: int) -> CellRecord | str:
        cell = resumed_cell(finished, plan.rate)  # a resumed search re-judges what it already ran
        if cell is not None:
            return cell
        if len(w.manifest.cells) >= MAX_CAPACITY_CELLS:
            return f"capacity search stopped after {MAX_CAPACITY_CELLS} cells"
        cell = _new_cell(w, spec, plan, block)
        unit = "sessions/s" if spec.workload else "requests/s"
        console.print(f"  {plan.phase} step {step_no} at {plan.rate:g} {unit}, look {look}: {block} requests "
                      f"(+{cap.warmup_s} s warm-up)")
        cell_spec = quiet.model_copy(update={"workload": _step_workload(w, spec, cell)}) if spec.workload else quiet
        if state.open is not None:
            state.open["running"] = cell.cell_id  # named in a partial record if the search stops inside it
        alive = run_one_cell(cell_spec, session, cell, _cell_plan(cell), ctx)
        if state.open is not None:
            state.open.pop("running", None)
        if cell.status != "complete" and not alive:
            return f"target unhealthy after {cell.cell_id} ({cell.reason})"
        return cell

    def decided(cells: list[str], label: str, reason: str) -> None:
        for cid in cells:
            w.manifest.cell(cid).reason = f"{label}: {reason}"
        console.print(f"    {label}: {reason}")
        w.checkpoint()

    try:
        idle_probe(spec, session, ctx)
        search(spec, w.dir, w.manifest.run_id, obtain, decided, state)
    except BaseException as exc:  # Ctrl-C, SIGTERM, a lost target, a bug: keep what was decided, then go on
        _record_partial(w, spec, state, INTERRUPTED if isinstance(exc, KeyboardInterrupt)
                        else f"{type(exc).__name__}: {exc}")
        raise
    if state.stop:
        _record_partial(w, spec, state, state.stop)
        return "partial", state.stop
    result = complete_record(state, spec, _earlier_partials(w))
    with signals_blocked():
        w.write_bytes(CAPACITY, json.dumps(result, indent=1, default=to_json).encode())
    w.manifest.notes.append(f"capacity: {result['claim']}; boundary interval [{result['interval_low']:.3g}, "
                            f"{result['interval_high']:.3g}] req/s ({len(state.steps)} steps)")
    return "complete", ""


def _record_partial(w, spec: LoadSpec, state: SearchState, reason: str) -> None:
    """Write the search's partial record (the next free ``capacity-partial*.json``) and note it
    in the manifest. A failure to write it is noted, never raised: the exception that stopped
    the search is the one the caller raises."""
    rel = unique_name(w.dir, CAPACITY_PARTIAL)
    try:
        rec = partial_record(state, spec, reason, _earlier_partials(w))
        with signals_blocked():
            w.write_bytes(rel, json.dumps(rec, indent=1, default=to_json).encode())
    except Exception as exc:  # noqa: BLE001 - the stop itself is what the run reports
        w.note(f"capacity: the partial record {rel} could not be written ({type(exc).__name__}: {exc})")
        console.print(f"[red]capacity: partial record not written[/]: {exc}")
        return
    w.manifest.notes.append(f"capacity: {rec['claim']}; the decided steps are in {rel}")
    console.print(f"  [yellow]{rec['claim']}[/] -> {rel}")


def _earlier_partials(w) -> list[str]:
    """The partial records earlier sessions of this run wrote (a resumed search's record supersedes them)."""
    return with_resumes(CAPACITY_PARTIAL, {p.name for p in w.dir.glob("capacity-partial*.json")})


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
