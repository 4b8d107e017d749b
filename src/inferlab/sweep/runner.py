"""Sweeps and stress runs: cells in a deterministic order, each written into the run layout.

Per run: start/connect the target, start telemetry, idle probe, then per cell: scrape
/metrics, start the under-load probe, run k6, stop the probe, scrape again, checkpoint the
manifest. A failing cell is recorded (status, stderr tail) and the sweep goes on, unless the
target itself is gone (then the rest is left pending and the run is ``partial``). Ctrl-C
leaves a ``partial`` run that ``--resume RUN_ID`` completes in the same directory; resuming
with a spec that differs from the manifest's is refused unless ``allow_spec_change``.

A cell during which the target died is ``failed``, never ``complete``, whatever k6's exit code
(:func:`target_death`): its numbers describe a dying server and its counters cannot be
cross-checked. The rule, any one of:
- the closing /metrics scrape through the target's URL failed;
- the target's /health did not answer 200 when the cell's load ended (checked before the
  closing scrape, so a target that dies after a cell's last scrape fails the next cell);
- a request got no HTTP response because the connection failed (k6 status 0 with an error
  code other than a timeout: refused, reset, EOF, broken pipe). Timeouts (k6 1050 request,
  1211 dial) are load results under stress, not evidence of death;
- a vLLM pod scraped directly before and after the cell restarted in between (its
  ``process_start_time_seconds`` changed; k8s).
The reason names the evidence; ``--resume`` runs the cell again (the cut attempt moved aside).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import psutil
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .. import paths
from ..probe.stream import BackgroundProbe, run_probe
from ..runs.environment import host_info, versions
from ..analysis.capacity import Step, judge_step, msr_summary, next_rate
from ..ingest import IngestError, read_k6, read_k6_points
from ..runs.layout import (CELL_FILES, IDLE_PROBE, INGRESS_LOG, WORKLOAD, make_run_id, metrics_path, segment_files,
                           unique_name)
from ..runs.reader import find_run_dir
from ..runs.manifest import CellRecord, Manifest, TargetInfo
from ..runs.store import RunWriter
from ..targets.open import open_target
from ..targets.session import TargetError, TargetSession, preflight
from ..targets.engine import EngineError
from ..targets.pinning import plan_pinning
from ..telemetry.otlp import OtlpReceiver
from ..telemetry.prometheus import PLATFORM, TEST, PrometheusError
from ..telemetry.samplers import HostSampler, NvidiaSmiLogger, NvmlSampler
from ..telemetry.server_series import ServerSeries
from ..load.incluster import run_cell_in_cluster
from ..load.k6 import CellInterrupted, CellResult, k6_binary, run_cell
from ..load.workload import calibrate, schedule_for, workload_record
from ..specs.workload import workload_files_sha256
from ..specs import CellPlan, LoadSpec, ObserveSpec, make_cell_id, plan_cells

console = Console(stderr=True)


def describe_plan(spec: LoadSpec, target: str) -> str:
    """Human-readable plan: cells, requests and a rough time estimate (for --dry-run)."""
    cells = plan_cells(spec)
    lines = [f"{spec.kind} {spec.name!r} on target {target}: {len(cells)} cells"
             + (f", workload {spec.workload}" if spec.workload else "")]
    total_req, total_s = 0, 0.0
    for c in cells:
        if c.executor == "ramping-arrival-rate":
            n = int((c.rate_from + c.rate_to) / 2 * c.duration_s)  # type: ignore[operator]
            secs = float(c.duration_s or 0)
        elif c.workload:
            wl, sched = schedule_for(spec.workload)
            n = len(sched)  # requests: sessions x turns, after clipping
            # measured on the 2-core CPU engine: ~35 ms/token decode, prefill ~1 ms/token
            work = float((sched["output_tokens"] * 0.035 + sched["input_tokens"] * 0.001).sum())
            span = float(sched["start_s"].max()) if wl.open_loop else 0.0
            secs = max(span, work / max(1, min(c.vus or 4, 16)) ** 0.5) + 2
        elif c.iterations:
            n = c.iterations
            tokens = spec.payloads[c.payload].max_tokens
            # measured on the 2-core CPU engine: ~35 ms/token for one stream; batching gains ~sqrt(VUs)
            secs = n * tokens * 0.035 / max(1, min(c.vus or 1, 16)) ** 0.5 + 2
        else:
            n, secs = 0, float(c.duration_s or 0)
        total_req, total_s = total_req + n, total_s + secs
        lines.append(f"  {c.cell_id:<24} {c.executor:<22} vus={c.vus or '-':<5} requests~{n}")
    probe = spec.probe.idle_requests + spec.probe.under_load_requests * len(cells)
    lines.append(f"total ~{total_req} k6 requests (+{probe} probe), est. {total_s / 60:.1f} min on the local CPU engine "
                 "(a GPU target is far faster)")
    if spec.kind == "capacity":
        c = spec.capacity
        lines.append(f"capacity search on {c.payload!r}: constant rates from {c.start_rate:g}/s (x{c.growth:g} until a step "
                     f"fails, then bisection to {c.resolution:.0%}, boundary rates repeated {c.boundary_repeats}x), "
                     f"{c.hold_s} s per step (first {c.warmup_s} s not judged); SLO p95 <= {spec.slo.e2e_p95_ms:g} ms, "
                     f"errors <= {spec.slo.error_rate:.1%}; typically 8-12 steps")
    lines.append("observers: " + ", ".join(observers(spec, target)))
    lines += [f"warning: {w}" for w in spec.sample_size_warnings()]
    return "\n".join(lines)


def observers(spec: LoadSpec, target: str) -> list[str]:
    """What watches the run beside k6 (each costs CPU: README, "Observer overhead")."""
    o = spec.observe
    out = ["k6 (every request, X-Request-Id)"]
    if o.traces and target == "local":
        out.append("OTLP server spans" + (" + engine start-up spans" if o.detailed_traces else ""))
    if o.edge:
        e = o.edge
        limit = f"limit_req {e.rate_limit_rps:g} r/s burst {e.rate_limit_rps * e.burst_multiplier:g}" if e.rate_limit_rps else "no rate limit"
        out.append(f"local edge (nginx, {'TLS' if e.tls else 'plain HTTP'}, {limit}, JSON access log)")
    if o.prometheus and target == "local":
        out.append("Prometheus (1 s scrapes, the platform's alert rules)")
    elif o.sampler_interval_s:
        out.append(f"/metrics sampler every {o.sampler_interval_s:g} s")
    return out


def _new_manifest(spec: LoadSpec, target: str, base_url: str | None, label: str) -> Manifest:
    run_id = make_run_id(target, label)
    cells = [CellRecord(**c.model_dump()) for c in plan_cells(spec)]
    placeholder = TargetInfo(kind=target, base_url=base_url or "(starting)", model=spec.model)  # type: ignore[arg-type]
    return Manifest(run_id=run_id, kind=spec.kind, label=label, created_at=datetime.now(UTC), target=placeholder,
                    versions=versions(paths.install_root(), None, None), host=host_info(same_host=target == "local"),
                    spec=spec.model_dump(mode="json"), cells=cells)


def run(spec: LoadSpec, target: str = "local", base_url: str | None = None, label: str | None = None,
        resume: str | None = None, in_cluster: bool = False, allow_spec_change: bool = False) -> str:
    """Execute (or resume) a sweep/stress run. Returns the run_id; the manifest says how it ended.
    ``in_cluster`` (target k8s): k6 runs as a Job in the cluster, see load/incluster.py.
    ``resume``: refused for a complete run (before any mode changes), for a run whose recorded
    files changed, and when ``spec`` differs from the manifest's unless ``allow_spec_change``."""
    if in_cluster and target != "k8s":
        raise TargetError("--in-cluster needs --target k8s")
    k6 = k6_binary()  # fail before creating a run directory when k6 is missing
    if resume:
        w = RunWriter.resume(find_run_dir(resume), spec.model_dump(mode="json"), allow_spec_change)
    else:
        m = _new_manifest(spec, target, base_url, label or spec.name)
        w = RunWriter.create(paths.runs_dir() / m.run_id, m)
    console.print(f"[bold]run[/] {w.manifest.run_id} -> {w.dir}")
    for warning in spec.sample_size_warnings():  # validation warns; the manifest keeps it beside the numbers
        console.print(f"[yellow]warning[/] {warning}")
        if f"sample size: {warning}" not in w.manifest.notes:
            w.manifest.notes.append(f"sample size: {warning}")
    status, reason = "failed", ""
    pinning, w.manifest.host.cpu_pinning = plan_pinning() if target == "local" else (None, "")
    try:
        with contextlib.ExitStack() as stack:
            spans = stack.enter_context(OtlpReceiver(spec.observe.detailed_traces)) \
                if spec.observe.traces and target == "local" else None
            ctx = _Context(w, spans)
            # runs after the engine stopped (ExitStack is LIFO), before the receiver closes: what
            # the engine's exporter flushes at exit is kept, never dropped
            stack.callback(ctx.collect_spans, "run", "", 0)
            session = stack.enter_context(open_target(
                target, _traced(spec, spans), w.dir, base_url, engine_log=unique_name(w.dir, "engine/engine.log"),
                pinning=pinning, in_cluster=in_cluster))
            if spec.observe.edge is not None:
                from ..targets.edge import edge_target

                session = stack.enter_context(edge_target(session, spec.observe.edge, w.dir,
                                                          unique_name(w.dir, "edge/access.log")))
            session.vllm_version = preflight(session, _served_model(spec, target)) or session.vllm_version
            _record_target(w, session, k6)
            ctx.calibration = _workload_calibration(w, spec, session)
            stack.callback(_controller_log, w, session, datetime.now(UTC))
            with _telemetry(w, session, spec.observe):
                status, reason = (_run_capacity if spec.kind == "capacity" else _run_cells)(w, spec, session, ctx)
    except (KeyboardInterrupt, CellInterrupted):
        status, reason = "partial", "interrupted by the user (Ctrl-C); `--resume` adds the missing cells"
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


def _traced(spec: LoadSpec, spans: OtlpReceiver | None) -> LoadSpec:
    """The spec the local engine starts with: its args plus the span receiver's (the manifest
    records the result as the target's engine_args, so a reader sees the flags it ran with)."""
    if spans is None:
        return spec
    engine = spec.engine.model_copy(update={"args": [*spec.engine.args, *spans.engine_args()],
                                            "env": {**spec.engine.env, **spans.engine_env()}})
    return spec.model_copy(update={"engine": engine})


SPAN_WAIT_S = 30  # after a cell's last response; the engine's batch exporter flushes every 0.5 s
SPAN_IDLE_S = 3.0  # 6x the export delay: no new span for this long, none is coming (rejected requests have none)
SPANS_FILE = "spans.otlp.jsonl.gz"


class _Context:
    """What every cell of a run shares beside the spec and the target: the run writer, the span
    receiver (local engine) and a workload run's token calibration (measured once per run)."""

    def __init__(self, w: RunWriter, spans: OtlpReceiver | None, calibration: dict | None = None) -> None:
        self.w, self.spans, self.calibration = w, spans, calibration

    def request_prefix(self, scope: str) -> str:
        """X-Request-Id prefix of a scope's requests: ``<run_id>.<cell_id>.`` (k6 and probe)."""
        return f"{self.w.manifest.run_id}.{scope}."

    def collect_spans(self, folder: str, prefix: str, expected: int) -> None:
        """Wait until ``expected`` request spans with ``prefix`` arrived (the exporter drops what it
        holds at shutdown), then write what came since the last call once into ``folder``."""
        if self.spans is None:
            return
        got = (self.spans.wait_for(prefix, expected, SPAN_WAIT_S, idle_s=SPAN_IDLE_S) if expected
               else self.spans.count(prefix))
        data = self.spans.drain()
        if data:
            rel = "spans.otlp.jsonl.gz" if folder == "run" else f"{folder}/{SPANS_FILE}"
            self.w.write_bytes(unique_name(self.w.dir, rel), gzip.compress(data))
        if expected and got < expected:
            self.w.manifest.notes.append(f"{folder}: {got} of {expected} requests have a server span (rejected or "
                                         "failed requests have none; the report counts unmatched rows)")
        if folder == "run" and self.spans.rejected:
            self.w.manifest.notes.append(f"OTLP receiver refused posts (HTTP status: count): {dict(self.spans.rejected)}")


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
    cal = calibrate(session.base_url, session.api_key, _served_model(spec, session.kind), verify=session.verify_tls)
    rec = workload_record(spec.workload, cal)
    w.write_bytes(WORKLOAD, json.dumps(rec, indent=1).encode())
    files = ", ".join(f"{p.rsplit('/', 1)[-1]} sha256 {h[:12]}" for p, h in rec["sha256"].items())
    w.manifest.notes.append(f"workload {rec['spec']['name']} ({files}): prompts sized with {cal['method']} "
                            f"calibration ({cal['tokens_per_word']} tokens/word)")
    return cal


def _controller_log(w: RunWriter, session: TargetSession, since: datetime) -> None:
    """k8s through the ingress: the ingress-nginx controller's access log for the run's window,
    kept as ``edge/ingress-access.log`` (the edge table's source on a cluster). A cluster whose
    controller cannot be read leaves a note, never a failed run."""
    if session.edge_log is None:
        return
    try:
        text = session.edge_log(since, datetime.now(UTC))
    except Exception as exc:  # noqa: BLE001 - RBAC, no ingress-nginx: the report says the join is missing
        w.manifest.notes.append(f"ingress controller access log not collected: {type(exc).__name__}: {exc}"[:300])
        return
    w.write_text(unique_name(w.dir, INGRESS_LOG), text)


def _record_target(w: RunWriter, session: TargetSession, k6: str) -> None:
    w.manifest.target = session.info
    w.manifest.versions = versions(paths.install_root(), k6, session.vllm_version)
    w.checkpoint()


def _k6_children() -> list[int]:
    """PIDs of the k6 processes this sweep runs now (one per execution segment)."""
    out = []
    for child in psutil.Process().children():
        try:
            if child.name() == "k6":
                out.append(child.pid)
        except psutil.Error:
            continue
    return out


class _telemetry:
    """Whichever telemetry applies: the server's time series (Prometheus or the 1 s /metrics
    sampler, telemetry/server_series.py), nvidia-smi + NVML on a GPU host, psutil always."""

    def __init__(self, w: RunWriter, session: TargetSession, observe: ObserveSpec) -> None:
        self.w = w
        self.series = ServerSeries(
            w, session.base_url, session.headers(), observe, session.ca_file or session.verify_tls,
            rule_profile=TEST if observe.alert_profile == "test" else PLATFORM,
            cluster_prometheus=observe.prometheus_url if session.kind == "k8s" else None)
        self.samplers = [HostSampler(w.dir / unique_name(w.dir, "telemetry/host.csv"),
                                     lambda: {**session.pids, "k6": _k6_children()})]
        if NvidiaSmiLogger.available():
            self.samplers.append(NvidiaSmiLogger(w.dir / unique_name(w.dir, "telemetry/nvidia-smi.csv")))
        if NvmlSampler.available():
            self.samplers.append(NvmlSampler(w.dir / unique_name(w.dir, "telemetry/nvml.csv")))
        elif not w.manifest.host.gpus:
            note = f"no GPU telemetry: {w.manifest.host.gpu_note}; CPU/memory sampled with psutil"
            if note not in w.manifest.notes:  # a resumed run says it once
                w.manifest.notes.append(note)

    def __enter__(self):
        # one stack: a sampler that fails to start (or Ctrl-C between two) still stops the ones
        # already running, Prometheus included
        with contextlib.ExitStack() as stack:
            stack.callback(self._notes)
            stack.enter_context(self.series)  # first: Prometheus' window covers the whole run
            for s in self.samplers:
                stack.enter_context(s)
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc) -> None:
        self._stack.__exit__(*exc)  # samplers in reverse, then the series (saves the window, stops Prometheus)

    def _notes(self) -> None:
        for note in self.series.notes:  # rule profile, scrape failures, a failed save
            if note not in self.w.manifest.notes:
                self.w.manifest.notes.append(note)


def _run_cells(w: RunWriter, spec: LoadSpec, session: TargetSession, ctx: _Context) -> tuple[str, str]:
    probe_kw = _probe_kw(spec, session)
    _idle_probe(w, spec, session, probe_kw, ctx)
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
            expected = plan.iterations or 0
            task = bar.add_task(f"  {cell.cell_id}", total=expected or None)
            alive = _run_one(w, spec, session, cell, plan, probe_kw, lambda n, t=task: bar.update(t, completed=n),
                             ctx)
            bar.update(task, visible=False)
            bar.advance(overall)
            if cell.status == "failed" and not alive:
                return "partial", (f"target unhealthy after cell {cell.cell_id} ({cell.reason}); "
                                   "remaining cells left pending")
    failed = [c.cell_id for c in w.manifest.cells if c.status != "complete"]
    return ("complete", "") if not failed else ("partial", f"cells not complete: {', '.join(failed)}")


MAX_CAPACITY_STEPS = 40  # a budget: a converging search needs ~8-14 steps


def _served_model(spec: LoadSpec, kind: str) -> str:
    """The model name requests ask for: the engine's served name when inferlab starts it."""
    return spec.engine.served_model_name if kind == "local" else spec.model


def _probe_kw(spec: LoadSpec, session: TargetSession) -> dict:
    return dict(base_url=session.base_url, api_key=session.api_key, model=_served_model(spec, session.kind),
                payload=spec.probe.payload, verify_tls=session.verify_tls)


def _idle_probe(w: RunWriter, spec: LoadSpec, session: TargetSession, probe_kw: dict, ctx: _Context) -> None:
    """Streaming probe before any load, scraped before and after: its requests are then the only
    ones in the window, so its TTFT can be checked against the server's histogram like for like."""
    if spec.probe.idle_requests and not (w.dir / IDLE_PROBE).exists():
        (w.dir / "probe").mkdir(exist_ok=True)
        _scrape(w, session, "probe", "before")
        prefix = ctx.request_prefix("probe")
        sent = run_probe(w.dir / IDLE_PROBE, n=spec.probe.idle_requests, request_id_prefix=prefix, **probe_kw)
        _scrape(w, session, "probe", "after")
        ctx.collect_spans("probe", prefix, sent)  # with the engine's start-up spans, when detailed
        w.checkpoint()


def _run_capacity(w: RunWriter, spec: LoadSpec, session: TargetSession, ctx: _Context) -> tuple[str, str]:
    """Max-sustainable-rate search (analysis/capacity.py): constant-rate cells planned one at a
    time, each judged from its own k6 output before the next is chosen. Recorded: every step as
    a cell (reason = the judge's words) and the result as ``capacity.json``."""
    cap = spec.capacity
    probe_kw = _probe_kw(spec, session)
    quiet = spec.model_copy(update={"probe": spec.probe.model_copy(update={"under_load_requests": 0})})
    _idle_probe(w, spec, session, probe_kw, ctx)
    steps: list[Step] = []
    for cell in w.manifest.cells:  # a resumed search goes on from every step it judged, failed ones too
        if cell.rate is not None and cell.status == "complete":
            steps.append(_judge(w, spec, cell))
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
        alive = _run_one(w, quiet, session, cell, plan, probe_kw, lambda n: None, ctx)
        if cell.status != "complete":
            if not alive:
                return "partial", f"target unhealthy after {cell.cell_id} ({cell.reason})"
            steps.append(Step(rate, False, f"cell {cell.status}: {cell.reason}"))
        else:
            steps.append(_judge(w, spec, cell))
        cell.reason = ("PASS: " if steps[-1].passed else "FAIL: ") + steps[-1].reason
        console.print(f"    {cell.reason}")
        w.checkpoint()
    result = {**msr_summary(steps), "slo": spec.slo.model_dump(), "capacity": cap.model_dump(),
              "steps": [s.__dict__ for s in steps]}
    w.write_bytes("capacity.json", json.dumps(result, indent=1, default=float).encode())
    lo, hi = result["interval_low"], result["interval_high"]
    w.manifest.notes.append(f"max sustainable rate: {lo} requests/s (interval [{lo}, {hi}]; {len(steps)} steps)")
    return "complete", ""


def _judge(w: RunWriter, spec: LoadSpec, cell: CellRecord) -> Step:
    cell_dir = w.dir / "cells" / cell.cell_id
    req = read_k6(cell_dir / CELL_FILES["k6"])
    req = req[req["phase"] == "measure"] if "phase" in req.columns else req  # warm-up ran in setup()
    pts = read_k6_points(cell_dir / CELL_FILES["k6"])
    dropped = int(pts.loc[pts["metric"] == "dropped_iterations", "value"].sum()) if not pts.empty else 0
    cap = spec.capacity
    return judge_step(req, dropped, float(cell.rate or 0), spec.slo.e2e_p95_ms, spec.slo.error_rate, cap.warmup_s,
                      cap.hold_s, cap.min_achieved)


def _run_one(w: RunWriter, spec: LoadSpec, session: TargetSession, cell: CellRecord, plan: CellPlan,
             probe_kw: dict, on_progress, ctx: _Context) -> bool:
    """Run one cell and record it; returns whether the target answered /health at its end."""
    cell_dir = w.dir / "cells" / cell.cell_id
    folder = f"cells/{cell.cell_id}"
    if cell_dir.exists():  # a partial earlier attempt: keep it beside, never overwrite
        moved = w.set_aside(folder, f"attempt-{datetime.now(UTC):%Y%m%dT%H%M%S}")
        w.manifest.notes.append(f"cell {cell.cell_id}: the earlier attempt ({cell.status}"
                                + (f": {cell.reason}" if cell.reason else "") + f") is kept in {moved}/")
    cell_dir.mkdir(parents=True)
    cell.status, cell.started_at, cell.reason = "running", datetime.now(UTC), ""
    w.checkpoint()
    _scrape(w, session, folder, "before")
    probe = None
    prefix = ctx.request_prefix(cell.cell_id)
    if spec.probe.under_load_requests:
        probe = BackgroundProbe(out=cell_dir / "probe.jsonl", n=spec.probe.under_load_requests,
                                interval_s=spec.probe.interval_s, request_id_prefix=prefix + "p", **probe_kw).start()
    closing_failed: list[str] = []
    alive = True
    result = None
    try:
        if session.in_cluster is not None:
            try:
                result = run_cell_in_cluster(session.in_cluster, spec, plan, w.manifest.run_id, cell_dir,
                                             on_state=lambda msg: console.print(f"  {cell.cell_id}: {msg}"),
                                             calibration=ctx.calibration)
            except Exception as exc:  # noqa: BLE001 - API errors, timeouts: record the cell, go on
                result = CellResult(-1, None, False, 0, f"in-cluster k6 Job: {type(exc).__name__}: {exc}")
        else:
            result = run_cell(spec, plan, session.base_url, session.api_key, cell_dir, on_progress,
                              run_id=w.manifest.run_id, ca_file=session.ca_file, calibration=ctx.calibration)
    except CellInterrupted as exc:
        cell.status, cell.reason, cell.k6_exit_code = "partial", "interrupted", exc.result.exit_code
        raise
    finally:
        if probe:
            cell.probe_requests = probe.stop()
        alive = session.healthy()  # at the cell's end, before its closing scrape (a later death is not this cell's)
        closing_failed = _scrape(w, session, folder, "after")
        cell.ended_at = datetime.now(UTC)
        sent = (result.requests_seen if result else 0) + (cell.probe_requests or 0)
        ctx.collect_spans(folder, prefix, sent if alive else 0)
        w.checkpoint()
    cell.k6_exit_code, cell.thresholds_passed = result.exit_code, result.thresholds_passed
    cell.warmup_requests = min(spec.warmup_requests, result.requests_seen) if plan.executor != "ramping-arrival-rate" else 0
    failed_rate = _failed_rate([cell_dir / segment_files(i, spec.k6_segments)["summary"]
                                for i in range(spec.k6_segments)])
    died = target_death(cell_dir, spec.k6_segments, closing_failed, alive, failed_rate)
    if died:
        cell.status = "failed"
        cell.reason = "target died during the cell: " + "; ".join(died)
        cell.stderr_tail = result.stderr_tail[-1500:]
    elif result.exit_code in (0, 99) and result.requests_seen and failed_rate < 1.0:
        cell.status = "complete"
        if result.exit_code == 99:
            cell.reason = "k6 thresholds (SLO) crossed: recorded as a result"
    else:
        cell.status = "failed"
        cell.reason = (f"k6 exit code {result.exit_code}, {result.requests_seen} requests"
                       + (", every request failed" if failed_rate >= 1.0 else ""))
        cell.stderr_tail = result.stderr_tail[-1500:]
    w.checkpoint()
    return alive


# k6 error codes of a request that got no response for reasons of load, not of a dead target
K6_TIMEOUT_CODES = {"1050", "1211"}  # request timeout, TCP dial timeout
_START_TIME = re.compile(rb"^process_start_time_seconds(?:\{[^}]*\})? (\S+)", re.M)


def target_death(cell_dir: Path, n_segments: int, closing_scrape_failed: list[str], healthy_after: bool,
                 failed_rate: float) -> list[str]:
    """Evidence that the target died during a cell (module docstring: the rule); [] when none.
    The cell's k6 output is read only when its summary says some request failed."""
    out = []
    if closing_scrape_failed:
        out.append(f"closing /metrics scrape failed ({', '.join(closing_scrape_failed)})")
    if not healthy_after:
        out.append("/health did not answer 200 at the end of the cell")
    if failed_rate > 0:
        conn, total, codes = _connection_errors(cell_dir, n_segments)
        if conn:
            what = ", ".join(f"{c} x{n}" for c, n in sorted(codes.items()))
            out.append(f"{conn} of {total} requests failed to connect (status 0, k6 error {what})")
    for pod in sorted(p.name for p in (cell_dir / "pods").glob("*") if p.is_dir()):
        before, after = (_start_time(cell_dir / "pods" / pod / f"metrics-{w}.prom") for w in ("before", "after"))
        if before is not None and after is not None and before != after:
            out.append(f"pod {pod} restarted during the cell (process_start_time_seconds {before:.0f} -> {after:.0f})")
    return out


def _connection_errors(cell_dir: Path, n_segments: int) -> tuple[int, int, Counter]:
    """(requests without a response for a connection failure, requests, their k6 error codes)."""
    conn, total, codes = 0, 0, Counter()
    for i in range(n_segments):
        p = cell_dir / segment_files(i, n_segments)["ndjson"]
        if not p.is_file():
            continue
        try:
            req = read_k6(p)
        except IngestError:
            continue
        total += len(req)
        if req.empty:
            continue
        code = req["error_code"].fillna("").astype(str)
        bad = (req["status"].fillna(0) == 0) & ~code.isin(K6_TIMEOUT_CODES)
        conn += int(bad.sum())
        codes.update(c or "none" for c in code[bad])
    return conn, total, codes


def _start_time(path: Path) -> float | None:
    try:
        m = _START_TIME.search(path.read_bytes())
        return float(m.group(1)) if m else None
    except (OSError, ValueError):
        return None


def _scrape(w: RunWriter, session: TargetSession, folder: str, when: str) -> list[str]:
    """/metrics through the target's URL, and of every vLLM pod directly where there are pods.
    A scrape already on disk (a resumed run, a cell cut after its scrape) is kept, file by file.
    Returns the files that could not be scraped (the target's own, when it did not answer)."""
    scrapes = {metrics_path(folder, when): session.scrape_metrics(),
               **{metrics_path(folder, when, pod): text for pod, text in session.scrape_pods().items()}}
    failed = []
    for rel, data in scrapes.items():
        if (w.dir / rel).exists():
            continue
        if data is None:
            failed.append(rel)
        else:
            w.write_bytes(rel, data)
    return failed


def _failed_rate(summaries: list[Path]) -> float:
    """k6's http_req_failed rate over the cell's --summary-export file(s): 1.0 = every request
    failed; a missing or unreadable summary counts as all failed."""
    failed = total = 0.0
    for summary in summaries:
        try:
            m = json.loads(summary.read_text())["metrics"]["http_req_failed"]
            failed, total = failed + float(m["passes"]), total + float(m["passes"]) + float(m["fails"])
        except (OSError, KeyError, ValueError, TypeError):
            return 1.0
    return failed / total if total else 1.0


def run_unless_dry(spec: LoadSpec, dry_run: bool, target: str = "local", base_url: str = "", label: str = "",
                   in_cluster: bool = False) -> str | None:
    """A sweep notebook's run cell: None on a dry run (the plan cell above says what would run),
    else ``run(...)``. Empty ``base_url``/``label`` mean unset (notebook parameters are literals)."""
    if dry_run:
        return None
    return run(spec, target=target, base_url=base_url or None, label=label or None, in_cluster=in_cluster)
