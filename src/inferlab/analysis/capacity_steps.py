"""A certified search's steps from its cells: the segment reader, the step judge, the plan
replayed over whatever supplies the cells (:func:`search`), and the capacity record, complete
or partial (docs/capacity.md).

analysis/certify.py plans each next step from the steps so far; :func:`search` asks an
``obtain`` callback for each look's finished cell: sweep/capacity_search.py runs it on the
target, :func:`rejudge` takes it from a run's record (read-only: the plan is a function of the
steps, so the same cells map to the same steps). A step is one or more constant-rate k6 cells
at the same rate: an exploration step one cell; a certification step one cell per look until
analysis/step_decision.py's sequential rule decides. The step's window is its segments' steady
windows, concatenated in arrival order; the backlog test runs on each segment's own window (one
k6 schedule each), and the step's backlog verdict comes from its looks
(``step_decision.step_backlog``): it grows, failing the step, only when its last three looks all
rose; a certification step whose last look rose cannot pass on that look before its cap. Dropped sends fail
the step at once.

**The record.** A search that ran to its end: :func:`complete_record` (``capacity.json``: the
certified claim, the boundary interval, every step). A search that stopped early (Ctrl-C, a
time limit's SIGTERM, a dead target, the cell budget): :func:`partial_record`
(``capacity-partial.json``): the steps decided so far with the same per-step fields, the step
that was running and its finished looks, the stop reason, the exploration bracket, and **no
claim and no boundary interval** (docs/capacity.md says why). :func:`search` keeps its progress
in a :class:`SearchState` the caller holds, so an interrupted caller still has every decided
step. :func:`rejudged_record` rebuilds a cut run's partial record from its cells, for runs cut
before the product wrote one."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..ingest import read_k6_tables, read_spans
from ..ingest.stream_clock import read_stream_clock
from ..runs.layout import CELL_FILES, SPANS
from ..runs.manifest import CellRecord
from ..specs import LoadSpec
from .capacity import CERTIFIED, judged_bounds, search_config, step_window
from .certify import (CERTIFY, EXPLORE, SearchConfig, StepPlan, StepRecord, boundary_guess, explore_bracket, is_over, next_step,
                      record, summary)
from .step_decision import (CONTINUE, FAIL, GROWS, KEEPS_UP, PASS, RISES, Backlog, StepBacklog, StepDecision,
                            backlog_growth, decide, step_backlog)
from .token_slo import slo_bounds

INTERVAL_NAME = "boundary interval (quasi-binomial fit of violating share on log rate, inverted)"


def rate_of(x: float) -> float:
    """A planned rate as k6 can hold it (chat.js sends ``round(rate x 100)`` per 100 s)."""
    return max(round(x, 2), 0.01)


@dataclass
class Segment:
    """One k6 cell of a step (one look): its steady window, its window's backlog test (None: no
    request in the window), validity and dropped sends."""

    cell_id: str
    window: pd.DataFrame
    backlog: Backlog | None
    backlog_note: str
    validity: str
    validity_reasons: list[str] = field(default_factory=list)
    dropped: int = 0

    @property
    def rose(self) -> bool:
        """This look's window alone: its backlog rose (significant and at least the minimum)."""
        return self.backlog is not None and self.backlog.grows


@dataclass
class SearchState:
    """A search as far as it got, filled in by :func:`search` as it goes: the decided steps,
    their extras (cells, validity, backlog notes), the config with the judged bounds, the
    metrics no request had, the step in progress (``open``: step number, rate, phase, its
    finished looks' cells, ``running``: the cell being run) and the stop reason ("" while it
    runs or once it ends by plan)."""

    cfg: SearchConfig
    steps: list[StepRecord] = field(default_factory=list)
    extra: list[dict] = field(default_factory=list)
    unmeasured: list[str] = field(default_factory=list)
    open: dict | None = None
    stop: str = ""


def read_segment(run_dir: Path, run_id: str, cell: CellRecord, warmup_s: float) -> Segment:
    """A completed cell's steady window (analysis.capacity.step_window), its backlog test, and
    its validity (analysis.validity.check_cell), from its raw k6 file joined to its spans and
    stream clock where recorded."""
    from .validity import CellInputs, check_cell

    cell_dir = run_dir / "cells" / cell.cell_id
    req, pts = read_k6_tables(cell_dir / CELL_FILES["k6"])  # one pass over the file
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
        if np.isfinite(b.growth):
            note = (f"window backlog {'rises' if b.grows else 'keeps up'} ({b.growth:+.1f} requests over "
                    f"{b.span_s:.1f} s, p={b.p_value:.3f})")
        else:
            b, note = None, f"{len(win)} requests in the steady window: too few to test the backlog"
    else:
        b, note = None, "no request in the steady window"
    measured = req[req["phase"] == "measure"] if "phase" in req.columns else req
    sends = None
    if cell.workload and not pts.empty:
        from .workload import sent_table

        sends = sent_table(pts)
    v = check_cell(CellInputs(requests=measured.reset_index(drop=True), executor=cell.executor, rate=cell.rate,
                              arrival="constant" if cell.workload else None, sends=sends,
                              dropped=dropped, cell_range=(cell.started_at, cell.ended_at)
                              if cell.started_at and cell.ended_at else None, cell_id=cell.cell_id), run_id)
    return Segment(cell.cell_id, win, b, note + (f"; {dropped} dropped sends" if dropped else ""),
                   v.verdict, v.reasons, dropped)


def backlog_of(segments: list[Segment]) -> StepBacklog:
    """The step's backlog verdict from its looks so far (step_decision.step_backlog)."""
    return step_backlog([s.backlog for s in segments])


def dropped_notes(segments: list[Segment]) -> list[str]:
    """One note per look whose k6 dropped sends (each fails its step at once)."""
    return [f"{s.cell_id}: {s.dropped} dropped sends" for s in segments if s.dropped]


def judge(plan: StepPlan, segments: list[Segment], bounds, cfg: SearchConfig) -> StepDecision:
    """The step's decision after its segments so far (a certification step: look ``len(segments)``
    of ``n_looks``; an exploration step: one look, counts only). The counts decide
    (step_decision.decide); then a growing backlog or dropped sends fail the step, and a
    certification step whose backlog is unsure (its last look rose, fewer than three in a row)
    does not pass on this look before its cap: it runs the next."""
    win = pd.concat([s.window for s in segments], ignore_index=True)
    values = {b.metric: win[b.metric].to_numpy(float) for b in bounds}
    look, n_looks = (len(segments), cfg.n_looks) if plan.phase == CERTIFY else (1, 1)
    ends = np.cumsum([len(s.window) for s in segments]).tolist()  # each look its own k6 schedule
    d = decide(plan.rate, values, win["ok"].to_numpy(bool), list(bounds), look, n_looks, cfg.alpha, ends=ends)
    sb = backlog_of(segments)
    why = dropped_notes(segments)
    if sb.verdict == GROWS:
        why.append(sb.note)
    if why:
        return replace(d, decision=FAIL, reason="; ".join(([d.reason] if d.decision == FAIL else []) + why))
    if sb.verdict == RISES and plan.phase == CERTIFY and d.decision == PASS:
        if look < n_looks:
            return replace(d, decision=CONTINUE, reason=f"run longer: the counts pass ({d.reason}) but the {sb.note}")
        # at the cap the counts decide: a queue that grows had five looks to rise three times running
        return replace(d, reason=f"{d.reason}; at the cap: the {sb.note}")
    return d


def look_spread(segments: list[Segment]) -> float | None:
    """How much the step's looks differed in speed: the standard deviation of the log of each
    look's median e2e (ms; k6's duration where no e2e column), over the looks with a window;
    None with fewer than two. 0.05: looks about 5 % apart (step_decision: LOOK_SPREAD_CALIBRATED)."""
    col = lambda w: "e2e_ms" if "e2e_ms" in w.columns else "duration_ms"  # noqa: E731
    medians = [float(np.nanmedian(s.window[col(s.window)].to_numpy(float))) for s in segments if len(s.window)]
    medians = [m for m in medians if np.isfinite(m) and m > 0]
    return float(np.std(np.log(medians), ddof=1)) if len(medians) >= 2 else None


def step_record(plan: StepPlan, d: StepDecision, segments: list[Segment]) -> StepRecord:
    rec = record(d, plan.phase)
    grows = backlog_of(segments).verdict == GROWS or any(s.dropped for s in segments)
    return StepRecord(rec.rate, rec.phase, rec.n, rec.t, rec.inflation, grows, rec.decision, look_spread(segments))


def search(spec: LoadSpec, run_dir: Path, run_id: str, obtain, decided=lambda cells, label, reason: None,
           state: SearchState | None = None) -> SearchState:
    """The search loop, whatever supplies the cells: ``obtain(plan, look, block, step_no)``
    returns the finished cell of that look (run now, or from the record) or a reason to stop;
    ``decided(cell_ids, label, reason)`` is told each step's verdict. Fills ``state`` (a new one
    when None) as it goes and returns it: an exception out of ``obtain`` (Ctrl-C) leaves the
    caller's ``state`` holding every step decided before it."""
    cap = spec.capacity
    state = state or SearchState(search_config(cap, spec.slo))
    steps, extra = state.steps, state.extra
    bounds: tuple | None = None
    while (plan := _planned(next_step(steps, state.cfg))) is not None:
        cfg = state.cfg
        segments: list[Segment] = []
        d: StepDecision | None = None
        why = ""
        state.open = {"step": len(steps) + 1, "rate": plan.rate, "phase": plan.phase, "looks_done": 0,
                      "looks_planned": len(plan.looks), "cells": []}
        for k, looks_n in enumerate(plan.looks, 1):
            cell = obtain(plan, k, looks_n - (plan.looks[k - 2] if k > 1 else 0), len(steps) + 1)
            if isinstance(cell, str):
                state.stop = cell
                return state
            if cell.status != "complete":  # a failed cell fails its step: nothing is certified from it
                d, why = None, f"cell {cell.cell_id} {cell.status}: {cell.reason}"
                failed_cell = cell.cell_id
                break
            segments.append(read_segment(run_dir, run_id, cell, cap.warmup_s))
            state.open.update(looks_done=k, cells=[s.cell_id for s in segments])
            if bounds is None:
                bounds_all = slo_bounds(spec.slo)
                have, state.unmeasured = judged_bounds(segments[0].window, bounds_all)
                bounds = tuple(have) or tuple(b for b in bounds_all if b.metric == "e2e_ms")
                state.cfg = cfg = replace(cfg, slo=bounds)  # the search judges (and fits) the bounds it can measure
            d = judge(plan, segments, bounds, cfg)
            if plan.phase == EXPLORE or d.final:
                break
        cells = [s.cell_id for s in segments]
        if d is None:
            steps.append(_failed_step(plan, bounds or slo_bounds(spec.slo)))
            extra.append({"cells": cells + [failed_cell], "validity": "INVALID", "validity_reasons": why,
                          "backlog": why})
            state.open = None
            decided(cells + [failed_cell], "FAIL" if plan.phase == CERTIFY else "OVER", why)
        else:
            steps.append(step_record(plan, d, segments))
            extra.append({"cells": cells, "inflation": {m: round(v, 2) for m, v in steps[-1].inflation.items()},
                          "validity": "INVALID" if any(s.validity == "INVALID" for s in segments) else "VALID",
                          "validity_reasons": "; ".join(r for s in segments for r in s.validity_reasons),
                          "backlog": "; ".join([f"{s.cell_id}: {s.backlog_note}" for s in segments]
                                               + [backlog_of(segments).note])})
            state.open = None
            if plan.phase == CERTIFY:
                decided(cells, d.decision.upper(), f"(certify, look {d.look} of {d.n_looks}) {d.reason}")
            else:  # exploration's point verdict: observed shares against the allowed ones (not certified)
                st = steps[-1]
                words = ", ".join(f"{b.metric} {st.t[b.metric]} of {st.n[b.metric]} ({st.share(b.metric):.1%} vs "
                                  f"{b.allowed:.1%} allowed)" for b in cfg.slo)
                sb = backlog_of(segments)
                said = dropped_notes(segments) + ([sb.note] if sb.verdict != KEEPS_UP else [])
                decided(cells, "OVER" if is_over(st, cfg.slo) else "UNDER",
                        f"(explore, point estimate) {words}" + "".join(f"; {w}" for w in said))
    return state


def finished_cells(manifest) -> list:
    """A capacity run's step cells that finished (complete or failed), in manifest order: the
    looks a resumed or replayed search takes again instead of running them."""
    return [c for c in manifest.cells if c.rate is not None and c.status in ("complete", "failed")]


def replay(run) -> SearchState:
    """A run's search replayed from its record (a :class:`~inferlab.runs.reader.Run`): each
    look takes the next finished (complete or failed) cell of its rate, in manifest order;
    where the record ends, ``stop`` says so. Reads the cells' raw files, writes nothing."""
    spec = LoadSpec.model_validate(run.manifest.spec)
    finished = finished_cells(run.manifest)

    def obtain(plan, look, block, step_no):
        return resumed_cell(finished, plan.rate) or "the record ends here"

    return search(spec, run.dir, run.run_id, obtain)


def rejudge(run) -> tuple[list[StepRecord], SearchConfig]:
    """A certified run's steps and the config with the bounds it judged, re-judged from its
    cells' raw k6 files (:func:`replay`; what a resumed search does, read-only):
    ``analysis.certify.summary(*rejudge(run))`` gives a finished search's result again."""
    state = replay(run)
    return state.steps, state.cfg


def rejudged_record(run) -> dict:
    """The partial record (:func:`partial_record`) of a capacity run that stopped before its
    search ended and holds no capacity record (cut before the product wrote partial records),
    rebuilt from its cells (:func:`replay`), read-only; its ``source`` says so. The stop
    reason is the run's own (its status and reason as recorded)."""
    spec = LoadSpec.model_validate(run.manifest.spec)
    state = replay(run)
    cut = [c for c in run.manifest.cells if c.rate is not None and c.status in ("running", "partial")]
    if state.open is not None and cut and abs(cut[-1].rate - rate_of(state.open["rate"])) < 1e-9:  # the cut cell is a look of the open step
        state.open["running"] = cut[-1].cell_id
    why = run.manifest.reason or f"the run is {run.manifest.status}"
    rec = partial_record(state, spec, why)
    rec["source"] = ("re-judged from the cells' raw files by analysis.capacity_steps.rejudged_record: the run has "
                     "no capacity record (it was cut before the product wrote partial ones)")
    return rec


def complete_record(state: SearchState, spec: LoadSpec, supersedes: list[str] | None = None) -> dict:
    """``capacity.json`` of a search that ran to its end: the certified claim (fixed-sequence
    testing), the boundary interval, the method and every step (certify.summary) plus the
    record's fields (:func:`_common`)."""
    steps, cfg = state.steps, state.cfg
    out = summary(steps, cfg) if steps else {"certified_rate": None, "claim": "no step ran", "boundary": float("nan"),
                                             "interval_low": float("nan"), "interval_high": float("nan"),
                                             "binding": "", "method": "", "steps": []}
    out.update(_common(state, spec, out["steps"]))
    cert = sorted((s for s in steps if s.phase == CERTIFY), key=lambda s: s.rate)
    x = out["certified_rate"]
    above = next((s.rate for s in cert if x is None or s.rate > x), None)
    out.update({"complete": True, "status": "complete", "msr": x, "pass_rate": x, "fail_rate": above,
                "interval_name": INTERVAL_NAME, "supersedes": list(supersedes or [])})
    if spec.workload and out.get("rate_unit", "requests/s") != "requests/s":
        out["claim"] = out["claim"].replace(" req/s ", f" {out['rate_unit']} ")
    return out


def partial_record(state: SearchState, spec: LoadSpec, reason: str, supersedes: list[str] | None = None) -> dict:
    """``capacity-partial.json`` of a search that stopped early: the steps decided so far (the
    same per-step fields as a complete record), the step in progress (``open_step``), the stop
    reason, the exploration bracket (a search bracket, not a confidence interval) and **no
    claim**: no certified rate, no boundary interval (docs/capacity.md: a cut search)."""
    steps, cfg = state.steps, state.cfg
    planned = len(cfg.cert_grid) + len(cfg.claim_grid)
    decided_cert = [s for s in steps if s.phase == CERTIFY]
    under, over = explore_bracket(steps, cfg)
    full = summary(steps, cfg)  # its method and step rows; its claim and interval are left out
    out = {"claim": f"no claim: the search stopped after {len(decided_cert)} of {planned} planned certification "
                    f"steps ({reason})",
           "certified_rate": None, "steps": full["steps"], "method": full["method"]}
    out.update(_common(state, spec, out["steps"]))
    non_pass = next((s for s in sorted(decided_cert, key=lambda s: s.rate)
                     if s.decision is None or s.decision.decision != PASS), None)
    out.update({
        "complete": False, "status": "incomplete", "stop_reason": reason, "msr": None, "pass_rate": None,
        "fail_rate": None, "cert_steps_decided": len(decided_cert), "cert_steps_planned": planned,
        "explore_bracket": [under, over], "boundary_guess": boundary_guess(steps, cfg),
        "open_step": dict(state.open) if state.open else None, "supersedes": list(supersedes or []),
        "prefix_note": (f"a decided certification step did not pass ({non_pass.rate:g} req/s, "
                        f"{non_pass.decision.decision if non_pass.decision else 'fail'}): the steps still to run "
                        "cannot change the fixed-sequence result, but none is claimed from a cut search; "
                        "`--resume` completes it and records the claim" if non_pass else ""),
    })
    return out


def resumed_cell(finished: list[CellRecord], rate: float) -> CellRecord | None:
    """The next finished cell of this rate from an earlier session (consumed in manifest order)."""
    for i, c in enumerate(finished):
        if abs((c.rate or 0) - rate) < 1e-9:
            return finished.pop(i)
    return None


def to_json(x):
    """``json.dumps(default=...)`` for a record: numpy scalars as numbers, anything else as text."""
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return str(x)


def _common(state: SearchState, spec: LoadSpec, rows: list[dict]) -> dict:
    """The fields every certified record has, complete or not: the step rows with their extras
    (cells, validity, backlog), what was judged, the SLO, the search's configuration and, on a
    workload, its name and rate unit."""
    for row, e in zip(rows, state.extra):
        row.update(e)
    cfg, unmeasured = state.cfg, state.unmeasured
    judged = [b.metric for b in cfg.slo if b.metric not in unmeasured]
    out = {
        "judge": CERTIFIED, "n_steps": len(state.steps), "judged": judged, "unmeasured": unmeasured,
        "judged_note": ("" if not unmeasured else f"judged on {', '.join(judged)} only: no request had "
                        f"{', '.join(unmeasured)} (no server span or stream clock)"),
        "invalid_steps": sum(e["validity"] == "INVALID" for e in state.extra),
        "slo": spec.slo.model_dump(), "capacity": spec.capacity.model_dump(),
        "config": {"alpha": cfg.alpha, "cap_requests": cfg.cap_requests, "n_looks": cfg.n_looks,
                   "explore_requests": cfg.explore_requests, "cert_grid": list(cfg.cert_grid),
                   "claim_grid": list(cfg.claim_grid)},
    }
    if spec.workload:
        from ..specs.workload import load_workload

        wl = load_workload(spec.workload)
        out["workload"] = wl.name
        out["rate_unit"] = "requests/s" if wl.turns == 1 else f"sessions/s ({wl.turns} turns each)"
    return out


def _planned(plan: StepPlan | None) -> StepPlan | None:
    return None if plan is None else StepPlan(rate_of(plan.rate), plan.phase, plan.looks)


def _failed_step(plan: StepPlan, bounds) -> StepRecord:
    """A step whose cell failed: a fail (certification) or over (exploration), with no counts."""
    zero = {b.metric: 0 for b in bounds}
    if plan.phase == EXPLORE:
        return StepRecord(plan.rate, EXPLORE, zero, zero, {b.metric: 1.0 for b in bounds}, backlog_grows=True)
    d = StepDecision(plan.rate, 0, 1, 1, (), None, FAIL, "the step's cell failed")
    return StepRecord(plan.rate, CERTIFY, zero, zero, {b.metric: 1.0 for b in bounds}, True, d)
