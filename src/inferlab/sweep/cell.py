"""One cell of a run, recorded: scrape /metrics, start the under-load probe, run k6, stop the
probe, check the target's health, scrape again, collect the cell's spans, judge the cell and
checkpoint the manifest. Also the idle probe a run starts with (the same scrape-around shape).

A streamed cell (``spec.stream``) with k6 on this machine sends through the stream clock
(load/stream_clock.py): a loopback relay in front of the target (local engine, URL, or either
through the local edge) that stamps each request's first and last token, so TTFT and TPOT have
a client-side witness where the target exports no spans (stock k6's ``http_req_waiting`` ends
at the response headers, which vLLM sends before any token). Its ``stream-clock.jsonl`` is a
cell file, closed (0444) with the cell and recorded at the next checkpoint. k6 in the cluster
(``--in-cluster``) sends directly: the relay would have to run in the cluster, so those cells
have the engine's spans or no TTFT/TPOT (a note in run.json says so, once).

A cell is ``complete`` when k6 ran its requests (exit 0, or 99: the SLO thresholds crossed, a
result) and not every one failed; ``failed`` otherwise, and always when the target died during
it (:mod:`.target_death`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from ..load.incluster import in_cluster_note, run_cell_in_cluster
from ..load.k6 import CellInterrupted, CellResult, run_cell
from ..load.stream_clock import StreamClock
from ..probe.stream import BackgroundProbe, run_probe
from ..runs.layout import CELL_FILES, IDLE_PROBE, metrics_path, segment_files
from ..runs.manifest import CellRecord
from ..runs.store import RunWriter
from ..specs import CellPlan, LoadSpec
from ..targets.session import TargetSession
from ..telemetry.energy import CellEnergy
from ..telemetry.otlp import OtlpReceiver
from .span_collection import SpanCollector
from .target_death import target_death

console = Console(stderr=True)  # the sweep's one console: progress bars and messages share it


@dataclass
class RunContext:
    """What every cell of a run shares beside the spec and the target: the run writer, the span
    receiver (None: no spans collected) and a workload run's token calibration (measured once
    per run). ``spans`` writes the receiver's spans into the run."""

    w: RunWriter
    receiver: OtlpReceiver | None = None
    calibration: dict | None = None

    def __post_init__(self) -> None:
        self.spans = SpanCollector(self.w, self.receiver)
        self.energy = CellEnergy(self.w)  # each cell's GPU energy (NVML hosts; a no-op elsewhere)

    def request_prefix(self, scope: str) -> str:
        """X-Request-Id prefix of a scope's requests: ``<run_id>.<cell_id>.`` (k6 and probe)."""
        return f"{self.w.manifest.run_id}.{scope}."


def served_model(spec: LoadSpec, kind: str) -> str:
    """The model name requests ask for: the engine's served name when inferlab starts it."""
    return spec.engine.served_model_name if kind == "local" else spec.model


def probe_kwargs(spec: LoadSpec, session: TargetSession) -> dict:
    """The probe's connection and payload arguments for this target."""
    return dict(base_url=session.base_url, api_key=session.api_key, model=served_model(spec, session.kind),
                payload=spec.probe.payload, verify_tls=session.verify_tls)


def idle_probe(spec: LoadSpec, session: TargetSession, ctx: RunContext) -> None:
    """Streaming probe before any load, scraped before and after: its requests are then the only
    ones in the window, so its TTFT can be checked against the server's histogram like for like.
    Skipped when the spec asks for none or a resumed run has it already."""
    w = ctx.w
    if spec.probe.idle_requests and not (w.dir / IDLE_PROBE).exists():
        (w.dir / "probe").mkdir(exist_ok=True)
        scrape(w, session, "probe", "before")
        prefix = ctx.request_prefix("probe")
        sent = run_probe(w.dir / IDLE_PROBE, n=spec.probe.idle_requests, request_id_prefix=prefix,
                         **probe_kwargs(spec, session))
        scrape(w, session, "probe", "after")
        ctx.spans.collect("probe", prefix, sent)  # with the engine's start-up spans, when detailed
        w.checkpoint()


def run_one_cell(spec: LoadSpec, session: TargetSession, cell: CellRecord, plan: CellPlan, ctx: RunContext,
                 on_progress: Callable[[int], None] = lambda n: None) -> bool:
    """Run one cell and record it in ``cell`` (status, reason, k6 exit code, times); returns
    whether the target answered /health at its end. A partial earlier attempt is set aside,
    never overwritten. Ctrl-C (:class:`CellInterrupted`) leaves the cell ``partial`` and is raised."""
    w = ctx.w
    cell_dir = w.dir / "cells" / cell.cell_id
    folder = f"cells/{cell.cell_id}"
    if cell_dir.exists():
        moved = w.set_aside(folder, f"attempt-{datetime.now(UTC):%Y%m%dT%H%M%S}")
        w.manifest.notes.append(f"cell {cell.cell_id}: the earlier attempt ({cell.status}"
                                + (f": {cell.reason}" if cell.reason else "") + f") is kept in {moved}/")
    cell_dir.mkdir(parents=True)
    cell.status, cell.started_at, cell.reason = "running", datetime.now(UTC), ""
    w.checkpoint()
    scrape(w, session, folder, "before")
    probe = None
    prefix = ctx.request_prefix(cell.cell_id)
    if spec.probe.under_load_requests:
        probe = BackgroundProbe(out=cell_dir / "probe.jsonl", n=spec.probe.under_load_requests,
                                interval_s=spec.probe.interval_s, request_id_prefix=prefix + "p",
                                **probe_kwargs(spec, session)).start()
    closing_failed: list[str] = []
    alive = True
    result = None
    try:
        with ctx.energy.window(folder):
            result = _run_k6(spec, session, cell, plan, cell_dir, on_progress, ctx)
    except CellInterrupted as exc:
        cell.status, cell.reason, cell.k6_exit_code = "partial", "interrupted", exc.result.exit_code
        raise
    finally:
        if probe:
            cell.probe_requests = probe.stop()
        alive = session.healthy()  # at the cell's end, before its closing scrape (a later death is not this cell's)
        closing_failed = scrape(w, session, folder, "after")
        cell.ended_at = datetime.now(UTC)
        sent = (result.requests_seen if result else 0) + (cell.probe_requests or 0)
        ctx.spans.collect(folder, prefix, sent if alive else 0)
        w.checkpoint()
    _judge_cell(spec, cell, plan, result, cell_dir, closing_failed, alive)
    w.checkpoint()
    return alive


def _run_k6(spec: LoadSpec, session: TargetSession, cell: CellRecord, plan: CellPlan, cell_dir: Path,
            on_progress: Callable[[int], None], ctx: RunContext) -> CellResult:
    """k6 on this machine, or in the cluster (``--in-cluster``: a k6-operator TestRun, else an
    Indexed Job); a failure to run it there is a cell result (recorded, the sweep goes on),
    never an exception."""
    if session.in_cluster is None and spec.stream:
        return _run_k6_through_clock(spec, session, plan, cell_dir, on_progress, ctx)
    if session.in_cluster is None:
        return run_cell(spec, plan, session.base_url, session.api_key, cell_dir, on_progress,
                        run_id=ctx.w.manifest.run_id, ca_file=session.ca_file, calibration=ctx.calibration)
    if spec.stream:
        ctx.w.note(NO_CLOCK_IN_CLUSTER)
    try:
        ctx.w.note(in_cluster_note(session.in_cluster))  # TestRun or Job, and why (once a run)
        return run_cell_in_cluster(session.in_cluster, spec, plan, ctx.w.manifest.run_id, cell_dir,
                                   on_state=lambda msg: console.print(f"  {cell.cell_id}: {msg}"),
                                   calibration=ctx.calibration)
    except Exception as exc:  # noqa: BLE001 - API errors, timeouts: record the cell, go on
        return CellResult(-1, None, False, 0, f"in-cluster k6: {type(exc).__name__}: {exc}")


NO_CLOCK_IN_CLUSTER = ("k6 ran in the cluster: its streamed requests did not pass the stream clock (it runs "
                      "beside a local k6 only), so their TTFT/TPOT come from the engine's spans or are unmeasured")


def _run_k6_through_clock(spec: LoadSpec, session: TargetSession, plan: CellPlan, cell_dir: Path,
                          on_progress: Callable[[int], None], ctx: RunContext) -> CellResult:
    """k6 on this machine, sending to the stream clock, which relays to the target (TLS to an
    https target is the clock's: k6 speaks plain HTTP on loopback, so it needs no CA). The clock
    stops after k6, also on Ctrl-C (a request still in flight after its grace is written as
    cut); its file is then closed for good (0444) so the next checkpoint records it, partial or
    not."""
    out = cell_dir / CELL_FILES["stream_clock"]
    try:
        with StreamClock(session.base_url, out, ca_file=session.ca_file,
                         tls_skip_verify=spec.tls_skip_verify) as clock:
            return run_cell(spec, plan, clock.base_url, session.api_key, cell_dir, on_progress,
                            run_id=ctx.w.manifest.run_id, ca_file=None, calibration=ctx.calibration)
    finally:
        ctx.w.seal_file(out)


def _judge_cell(spec: LoadSpec, cell: CellRecord, plan: CellPlan, result: CellResult, cell_dir: Path,
                closing_failed: list[str], alive: bool) -> None:
    """The cell's status and reason from k6's result and the evidence of a target death."""
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


def scrape(w: RunWriter, session: TargetSession, folder: str, when: str) -> list[str]:
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
