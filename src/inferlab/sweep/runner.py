"""Sweeps and stress runs: cells in a deterministic order, each written into the run layout.

Per run: print how long it expects (:mod:`.estimate`), start/connect the target, start telemetry
(:mod:`.telemetry_wiring`), idle probe, then each cell (:mod:`.cell`: scrape /metrics, under-load
probe, k6, scrape again, checkpoint the manifest); a capacity run searches instead
(:mod:`.capacity_search`). A failing cell is recorded (status, stderr tail) and the sweep goes
on, unless the target itself is gone (:mod:`.target_death`; then the rest is left pending and
the run is ``partial``). Ctrl-C leaves a ``partial`` run that ``--resume RUN_ID`` completes in
the same directory; resuming with a spec that differs from the manifest's is refused unless
``allow_spec_change``. Server spans go into the run through :mod:`.span_collection` (the local
engine's receiver, or the cluster's Collector).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from datetime import UTC, datetime

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .. import paths
from ..load.k6 import CellInterrupted
from ..load.workload import calibrate, workload_record
from ..runs.environment import host_info, versions
from ..runs.layout import WORKLOAD, make_run_id, unique_name
from ..runs.manifest import CUT_BY_USER, CellRecord, Manifest, TargetInfo
from ..runs.reader import find_run_dir
from ..runs.store import RunWriter
from ..specs import LoadSpec, plan_cells
from ..specs.workload import workload_files_sha256
from ..targets.engine import EngineError, engine_choice
from ..targets.open import open_target
from ..targets.local import local_pinning
from ..targets.session import TargetError, TargetSession, preflight
from ..telemetry.otlp import OtlpReceiver
from ..telemetry.prometheus import PrometheusError
from ..tools import find_tool
from .capacity_search import run_capacity
from .cell import RunContext, console, idle_probe, run_one_cell, served_model
from .estimate import expectation
from .telemetry_wiring import RunTelemetry, controller_log


def run(spec: LoadSpec, target: str = "local", base_url: str | None = None, label: str | None = None,
        resume: str | None = None, in_cluster: bool = False, allow_spec_change: bool = False,
        spans: OtlpReceiver | None = None, while_up: Callable[[TargetSession], None] | None = None) -> str:
    """Execute (or resume) a sweep/stress/capacity run. Returns the run_id; the manifest says how
    it ended. ``in_cluster`` (target k8s): k6 runs as a Job in the cluster, see load/incluster.py.
    ``resume``: refused for a complete run (before any mode changes), for a run whose recorded
    files changed, and when ``spec`` differs from the manifest's unless ``allow_spec_change``.
    ``spans``: a span receiver the target's engine already exports to (started by the caller with
    ``receiver.engine_args()``/``engine_env()``, e.g. a url target's engine shared by tests): the
    run drops what it held before, collects its probe's and cells' spans from it as from its own
    (the local target's), and leaves it open. Without it, a local run with ``observe.traces``
    starts its own. ``while_up``: called with the session after the cells and their telemetry,
    before the target closes (outside the measured window; the A/B's answer check)."""
    if in_cluster and target != "k8s":
        raise TargetError("--in-cluster needs --target k8s")
    k6 = find_tool("k6")  # fail before creating a run directory when k6 is missing
    choice = engine_choice() if target == "local" else None  # likewise an invalid engine choice (EngineError)
    if resume:
        w = RunWriter.resume(find_run_dir(resume), spec.model_dump(mode="json"), allow_spec_change)
    else:
        m = _new_manifest(spec, target, base_url, label or spec.name)
        w = RunWriter.create(paths.runs_dir() / m.run_id, m)
    console.print(f"[bold]run[/] {w.manifest.run_id} -> {w.dir}")
    pending = {c.cell_id for c in w.manifest.cells if c.status != "complete"}
    todo = [p for p in plan_cells(spec) if p.cell_id in pending]
    console.print(expectation(spec, target, todo, resumed=bool(resume),  # before the engine starts
                              device=choice.device if choice else None))
    for warning in spec.sample_size_warnings():  # validation warns; the manifest keeps it beside the numbers
        console.print(f"[yellow]warning[/] {warning}")
        w.note(f"sample size: {warning}")
    status, reason = "failed", ""
    pinning, w.manifest.host.cpu_pinning = local_pinning(choice) if choice else (None, "")
    try:
        with contextlib.ExitStack() as stack:
            receiver = _span_receiver(stack, spec, target, spans)
            ctx = RunContext(w, receiver)
            # runs after the engine stopped (ExitStack is LIFO), before the receiver closes: what
            # the engine's exporter flushes at exit is kept, never dropped
            stack.callback(ctx.spans.collect, "run", "", 0)
            session = stack.enter_context(open_target(
                target, _traced(spec, receiver) if target == "local" else spec, w.dir, base_url,
                engine_log=unique_name(w.dir, "engine/engine.log"), pinning=pinning, in_cluster=in_cluster))
            if spec.observe.edge is not None:
                from ..targets.edge import edge_target

                session = stack.enter_context(edge_target(session, spec.observe.edge, w.dir,
                                                          unique_name(w.dir, "edge/access.log")))
            ctx.spans.attach(session)  # k8s with the tracing component: the run's spans from its Collector
            session.vllm_version = preflight(session, served_model(spec, target)) or session.vllm_version
            _record_target(w, session, k6)
            ctx.calibration = _workload_calibration(w, spec, session)
            stack.callback(controller_log, w, session, datetime.now(UTC))
            with RunTelemetry(w, session, spec.observe):
                status, reason = (run_capacity if spec.kind == "capacity" else _run_cells)(spec, session, ctx)
            if while_up is not None:  # the engine is still up; nothing measured runs any more
                while_up(session)
    except (KeyboardInterrupt, CellInterrupted):
        status, reason = "partial", CUT_BY_USER
    except (TargetError, EngineError, PrometheusError) as exc:
        done = any(c.status == "complete" for c in w.manifest.cells)
        status, reason = ("partial" if done else "failed"), str(exc)
    finally:
        for c in w.manifest.cells:
            if c.status == "running":
                c.status, c.reason = "partial", reason or "run ended mid-cell"
        if w.manifest.target.process and "stopped_at" not in w.manifest.target.process:
            # the target's context has exited: an engine inferlab started is stopped by now
            w.manifest.target.process = {**w.manifest.target.process, "stopped_at": datetime.now(UTC).isoformat()}
        w.finish(status, reason)
        color = {"complete": "green", "partial": "yellow"}.get(status, "red")
        console.print(f"[{color}]{status}[/] {w.manifest.run_id}" + (f": {reason}" if reason else ""))
    return w.manifest.run_id


def run_unless_dry(spec: LoadSpec, dry_run: bool, target: str = "local", base_url: str = "", label: str = "",
                   in_cluster: bool = False) -> str | None:
    """A sweep notebook's run cell: None on a dry run (the plan cell above says what would run),
    else ``run(...)``. Empty ``base_url``/``label`` mean unset (notebook parameters are literals)."""
    if dry_run:
        return None
    return run(spec, target=target, base_url=base_url or None, label=label or None, in_cluster=in_cluster)


def _new_manifest(spec: LoadSpec, target: str, base_url: str | None, label: str) -> Manifest:
    run_id = make_run_id(target, label, runs_dir=paths.runs_dir())
    cells = [CellRecord(**c.model_dump()) for c in plan_cells(spec)]
    placeholder = TargetInfo(kind=target, base_url=base_url or "(starting)", model=spec.model)  # type: ignore[arg-type]
    return Manifest(run_id=run_id, kind=spec.kind, label=label, created_at=datetime.now(UTC), target=placeholder,
                    versions=versions(paths.install_root(), None, None), host=host_info(same_host=target == "local"),
                    spec=spec.model_dump(mode="json"), cells=cells)


def _span_receiver(stack: contextlib.ExitStack, spec: LoadSpec, target: str,
                   given: OtlpReceiver | None) -> OtlpReceiver | None:
    """The run's span receiver: the caller's (what it held before this run dropped; left open),
    else one of its own for a local engine with ``observe.traces`` (closed with the run)."""
    if given is not None:
        given.drain()
        return given
    if spec.observe.traces and target == "local":
        return stack.enter_context(OtlpReceiver(spec.observe.detailed_traces))
    return None


def _traced(spec: LoadSpec, spans: OtlpReceiver | None) -> LoadSpec:
    """The spec the local engine starts with: its args plus the span receiver's (the manifest
    records the result as the target's engine_args, so a reader sees the flags it ran with)."""
    if spans is None:
        return spec
    engine = spec.engine.model_copy(update={"args": [*spec.engine.args, *spans.engine_args()],
                                            "env": {**spec.engine.env, **spans.engine_env()}})
    return spec.model_copy(update={"engine": engine})


def _record_target(w: RunWriter, session: TargetSession, k6: str) -> None:
    w.manifest.target = session.info
    w.manifest.versions = versions(paths.install_root(), k6, session.vllm_version)
    w.checkpoint()


def _workload_calibration(w: RunWriter, spec: LoadSpec, session: TargetSession) -> dict | None:
    """Token calibration of a workload run, measured once (vLLM /tokenize, else the estimate) and
    recorded with the workload file's sha256 in ``workload.json``; a resumed run reads it back, so
    its prompts are rendered as before."""
    if spec.workload is None:
        return None
    if (w.dir / WORKLOAD).exists():  # a resumed run: the recorded calibration, if the files are unchanged
        rec = json.loads((w.dir / WORKLOAD).read_text())
        now = workload_files_sha256(spec.workload)
        if now != rec["sha256"]:
            changed = sorted(k for k in set(now) | set(rec["sha256"]) if now.get(k) != rec["sha256"].get(k))
            raise TargetError(f"workload file(s) changed since the run was recorded ({', '.join(changed)}): the "
                              "resumed cells would follow another schedule; restore them or start a new run")
        return rec["calibration"]
    cal = calibrate(session.base_url, session.api_key, served_model(spec, session.kind), verify=session.verify_tls)
    rec = workload_record(spec.workload, cal)
    w.write_bytes(WORKLOAD, json.dumps(rec, indent=1).encode())
    files = ", ".join(f"{p.rsplit('/', 1)[-1]} sha256 {h[:12]}" for p, h in rec["sha256"].items())
    w.manifest.notes.append(f"workload {rec['spec']['name']} ({files}): prompts sized with {cal['method']} "
                            f"calibration ({cal['tokens_per_word']} tokens/word)")
    return cal


def _run_cells(spec: LoadSpec, session: TargetSession, ctx: RunContext) -> tuple[str, str]:
    """The planned cells not yet complete, in order, under a progress bar; stops early (``partial``)
    when a failed cell left the target unhealthy. Returns the run's (status, reason)."""
    w = ctx.w
    idle_probe(spec, session, ctx)
    plans = {p.cell_id: p for p in plan_cells(spec)}
    todo = [c for c in w.manifest.cells if c.status != "complete"]
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as bar:
        overall = bar.add_task("cells", total=len(w.manifest.cells), completed=len(w.manifest.cells) - len(todo))
        for cell in todo:
            plan = plans.get(cell.cell_id)
            if plan is None:
                cell.status, cell.reason = "skipped", "not in the spec used to resume"
                continue
            task = bar.add_task(f"  {cell.cell_id}", total=plan.iterations or None)
            alive = run_one_cell(spec, session, cell, plan, ctx, lambda n, t=task: bar.update(t, completed=n))
            bar.update(task, visible=False)
            bar.advance(overall)
            if cell.status == "failed" and not alive:
                return "partial", (f"target unhealthy after cell {cell.cell_id} ({cell.reason}); "
                                   "remaining cells left pending")
    failed = [c.cell_id for c in w.manifest.cells if c.status != "complete"]
    return ("complete", "") if not failed else ("partial", f"cells not complete: {', '.join(failed)}")
