"""``inferlab bisect``: the first engine build whose primary metric regressed beyond a margin.

Builds in order (specs/builds.py: local interpreters or k8s image tags), the first the
known-good reference. The search (analysis/bisect.py: first against last, then binary search,
an inconclusive step stops it) names each step's pair; a step is one interleaved A/B of the same
load spec on both sides (sweep.ab.run_comparison: the last known-good build as the baseline, the
build under test as the tuned side, ``pairs`` pairs, repeats as the unit, each repeat's engine
started fresh on its build), gated by analysis.gate (the primary metric; the token-level SLO
percentiles too with ``token_slo``). Everything is recorded (runs/bisect_record.py): each step's
comparison id, gate outcome and why as it finishes, the gate's report written once per step,
then the result and its exit status.

Checked before any step runs, so that a bisect never stops half-way on a typo: the builds are of
the target's kind; every local build's interpreter exists and its device is valid
(targets.engine.engine_choice); every k8s build's image renders into the overlay
(platform/render.py: the rendered engine Deployment carries it); at least 3 pairs (fewer can only
be inconclusive, analysis.gate). A step that cannot run (a deploy that fails, an error in the
gate) stops the bisect with status ``failed`` and exit 2, the step's error recorded.

**Resume** (:func:`resume_bisect`, ``inferlab bisect --resume BISECT_ID``): a bisect cut by
Ctrl-C or a time limit (``partial``), one whose step failed (``failed``: a deploy that did not
come up, an engine that died) or whose writer died (``running``, its process gone) continues in
the same record, with the recorded spec, builds, margin, design and options. The finished
steps are replayed into the search (not run again: the search rule is deterministic, so it asks
for the same pairs); the step that was cut continues its own comparison (sweep.ab
``resume_comparison``: the repeats it lacks), or, when that comparison had finished, is gated;
a step cut before its comparison had a repeat runs afresh. Refused: a complete bisect, one
whose writer still runs. The record notes each resume.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np

from ..analysis.bisect import RULE, Bisection, max_steps
from ..analysis.compare import MIN_VERDICT_REPEATS
from ..analysis.gate import GateResult, gate_comparison
from ..runs.bisect_record import (BUILDS_FILE, BisectBuild, BisectRecord, BisectStep, GateRow, bisects_dir,
                                  gate_file, load_bisect, save_bisect)
from ..runs.comparison import Comparison, load_comparison
from ..runs.layout import slug
from ..runs.records import BISECTS
from ..runs.reader import find_run_dir
from ..runs.store import current_writer, read_manifest, record_file, refuse_unresumable
from ..specs import LoadSpec
from ..specs.builds import BuildList, BuildsError
from ..targets.engine import ENGINE_MODEL_ENV, restore_engine
from .ab import resume_comparison, run_comparison

TARGETS = ("local", "k8s")


def prepare_builds(builds: BuildList, target: str, overlay: str | None) -> list[BisectBuild]:
    """The builds as the bisect records them, each checked (module docstring) before any step
    runs; BuildsError (a usage error) names the build that cannot run, ValueError a bad target."""
    if target not in TARGETS:
        raise ValueError(f"bisect runs on --target local (builds are interpreters) or k8s (builds are images), "
                         f"not {target}: a url target's server cannot be switched between builds")
    if builds.kind != target:
        raise BuildsError(f"the builds are {builds.kind} builds ({'python' if builds.kind == 'local' else 'image'}) "
                          f"but the target is {target}: local builds name an interpreter, k8s builds an image")
    out = [BisectBuild(**b.model_dump()) for b in builds.builds]
    for b in out:
        if target == "local":
            _check_interpreter(b)
        else:
            _render_image(b, overlay or "")
    return out


def _check_interpreter(b: BisectBuild) -> None:
    from ..targets.engine import EngineError, engine_choice

    try:
        b.python = engine_choice(b.python, device=b.device).python  # recorded absolute
    except EngineError as exc:
        raise BuildsError(f"build {b.name}: {exc}") from None


def _render_image(b: BisectBuild, overlay: str) -> None:
    """The build's kustomize images entry and the engine image the overlay then renders."""
    from ..platform.render import engine_container, engine_image_override, kustomize_build

    if not overlay:
        raise BuildsError("k8s builds need --overlay: the overlay each build's image is deployed with")
    assert b.image is not None
    try:
        b.override = engine_image_override(overlay, b.image)
        b.rendered_image = engine_container(kustomize_build(overlay, images=[b.override]))["image"]
    except ValueError as exc:  # no (or several) vLLM containers: the image's name is not a vLLM one
        raise BuildsError(f"build {b.name}: image {b.image} in overlay {overlay}: {exc} (the engine container is "
                          "found by its image name: the last part must start with 'vllm')") from None


def run_bisect(spec: LoadSpec, builds: BuildList, margin: float, target: str = "local", base_url: str | None = None,
               alpha: float = 0.05, pairs: int = 3, order: str = "abba", seed: int = 0, label: str | None = None,
               overlay: str | None = None, primary: str = "throughput", token_slo: bool = False,
               answer_check: bool = True, say: Callable[[str], None] = print) -> BisectRecord:
    """Run the bisect (module docstring); returns its record (``result``, ``exit_code``). ``say``
    gets one line per step as it starts and ends."""
    if pairs < MIN_VERDICT_REPEATS:
        raise ValueError(f"--pairs {pairs}: a gate decides nothing with fewer than {MIN_VERDICT_REPEATS} repeats a "
                         "side, so every step would be inconclusive")
    prepared = prepare_builds(builds, target, overlay)
    now = datetime.now(UTC)
    name = slug(label or spec.name)
    bid = f"{now:%Y%m%dT%H%M%SZ}-{target}-bisect-{name}"
    d = bisects_dir() / bid
    d.mkdir(parents=True)
    rec = BisectRecord(bisect_id=bid, created_at=now, target=target, spec=spec.model_dump(mode="json"),
                       margin=margin, alpha=alpha, primary="max_sustainable_rate" if spec.kind == "capacity" else primary,
                       token_slo=token_slo, pairs=pairs, order=order, seed=seed,
                       overlay=overlay if target == "k8s" else None, search=RULE, builds=prepared,
                       answer_check=answer_check, base_url=base_url, writer=current_writer(),
                       engine_model=os.environ.get(ENGINE_MODEL_ENV) or None if target == "local" else None)
    rec.builds_file = record_file(d, BUILDS_FILE, builds.yaml().encode())
    save_bisect(rec, d)
    names = [b.name for b in rec.builds]
    say(f"bisect {bid}: {len(names)} builds ({', '.join(names)}), {names[0]} the known-good reference; margin "
        f"±{margin * 100:g} %, {pairs} pairs a step; at most {max_steps(len(names))} steps")
    return _drive(rec, d, Bisection(len(names)), say)


def resume_bisect(bisect_id: str, say: Callable[[str], None] = print, rec: BisectRecord | None = None) -> BisectRecord:
    """Continue a cut, failed or orphaned bisect in its own record (module docstring, Resume).
    ``rec``: the record as the caller already read it from ``bisect_id``'s folder (not read again)."""
    d = BISECTS.find(bisect_id)  # an id, a unique prefix or a path, as every record resolves
    rec = rec if rec is not None else load_bisect(d)
    refuse_unresumable(f"bisect {rec.bisect_id}", rec.status, rec.writer)
    names = [b.name for b in rec.builds]
    search = Bisection(len(names))
    for step in [x for x in rec.steps if x.status == "complete"]:
        search.record(names.index(step.candidate), step.outcome or "")  # the same rule asks for the same pairs
    cut = [x for x in rec.steps if x.status != "complete"]
    if len(cut) > 1 or (cut and cut[0] is not rec.steps[-1]):
        raise RuntimeError(f"bisect {rec.bisect_id}: more than its last step is unfinished; it cannot be resumed")
    if rec.target == "local":
        restore_engine({"model": rec.engine_model}, f"bisect {rec.bisect_id}")
    was = f"{rec.status}: {rec.reason}" if rec.reason else rec.status
    rec.status, rec.reason, rec.ended_at, rec.exit_code, rec.writer = "running", "", None, None, current_writer()
    rec.notes.append(f"resumed at {datetime.now(UTC).isoformat()} after {len(rec.steps) - len(cut)} finished steps "
                     f"(it was {was})" + (f"; step {cut[0].number} continues its comparison" if cut and
                                          cut[0].comparison_id else ""))
    if cut and cut[0].comparison_id is None:
        rec.steps.pop()  # cut before its first repeat: nothing of it to keep, it runs afresh
    elif cut:
        cut[0].status, cut[0].why, cut[0].ended_at = "running", "", None
    save_bisect(rec, d)
    say(f"bisect {rec.bisect_id} resumed: {len(names)} builds, {sum(x.status == 'complete' for x in rec.steps)} "
        "steps finished")
    return _drive(rec, d, search, say)


def _drive(rec: BisectRecord, d, search: Bisection, say: Callable[[str], None]) -> BisectRecord:
    """Run the steps the search asks for until it is over; the last recorded step, when still
    running (a resume), continues its own comparison instead of starting one."""
    spec = LoadSpec.model_validate(rec.spec)
    prepared = rec.builds  # the record's own objects: what a step learns of a build goes into the record
    names = [b.name for b in prepared]
    name = slug(rec.bisect_id.split("-bisect-", 1)[-1])
    try:
        while (pair := search.next()) is not None:
            open_ = rec.steps[-1] if rec.steps and rec.steps[-1].status == "running" else None
            if open_ is not None and (open_.baseline, open_.candidate) != (names[pair[0]], names[pair[1]]):
                raise RuntimeError(f"bisect {rec.bisect_id}: step {open_.number} gated {open_.candidate} against "
                                   f"{open_.baseline}, but the search asks for {names[pair[1]]} against "
                                   f"{names[pair[0]]}; it cannot be resumed")
            step = open_ or BisectStep(number=len(rec.steps) + 1, baseline=names[pair[0]], candidate=names[pair[1]],
                                       started_at=datetime.now(UTC))
            if open_ is None:
                rec.steps.append(step)
            save_bisect(rec, d)
            say(f"step {step.number}: {step.candidate} against {step.baseline} (last known-good)"
                + (f", continuing {step.comparison_id}" if open_ is not None else ""))

            def seen(c: Comparison, step: BisectStep = step) -> None:  # the step's comparison id, from its first repeat on
                if step.comparison_id is None:
                    step.comparison_id = c.comparison_id
                    save_bisect(rec, d)

            if step.comparison_id is not None:  # a resumed step: its comparison goes on where it was cut
                cid = step.comparison_id
                if load_comparison(cid).status != "complete":
                    resume_comparison(cid, on_repeat=seen)
            else:
                cid = run_comparison(spec, spec, target=rec.target, base_url=rec.base_url, pairs=rec.pairs,
                                     order=rec.order, seed=rec.seed,
                                     label=f"{name}-s{step.number}-{step.baseline}-vs-{step.candidate}",
                                     overlays=(rec.overlay, rec.overlay) if rec.target == "k8s" and rec.overlay
                                     else None, primary=rec.primary, answer_check=rec.answer_check,
                                     builds=(prepared[pair[0]], prepared[pair[1]]), on_repeat=seen)
            step.comparison_id = cid
            _settle(step, gate_comparison(cid, rec.margin, rec.alpha, primary=rec.primary, token_slo=rec.token_slo), d)
            _note_versions(prepared, pair, load_comparison(cid))
            search.record(pair[1], step.outcome or "")
            save_bisect(rec, d)
            say(f"step {step.number}: {step.outcome.upper() if step.outcome else ''} ({step.comparison_id}): {step.why}")
        end = search.conclusion(names)
        rec.result, rec.summary, rec.exit_code = end.result, end.summary, end.exit_code
        rec.first_bad = names[end.first_bad] if end.first_bad is not None else None
        rec.last_good = names[end.last_good] if end.last_good is not None else None
        rec.upper = names[end.upper] if end.upper is not None else None
        rec.status = "complete"
    except KeyboardInterrupt:
        _stop(rec, "partial", "interrupted (Ctrl-C)")
        raise
    except Exception as exc:  # noqa: BLE001 - recorded, then re-raised for the caller to report (exit 2)
        _stop(rec, "failed", f"{type(exc).__name__}: {exc}")
        raise
    finally:
        rec.ended_at = datetime.now(UTC)
        save_bisect(rec, d)
    return rec


def _stop(rec: BisectRecord, status: str, reason: str) -> None:
    """A step that could not finish: it and the bisect end with the reason; exit 2."""
    rec.status, rec.reason, rec.exit_code = status, reason, 2  # type: ignore[assignment]
    if rec.steps and rec.steps[-1].status == "running":
        rec.steps[-1].status, rec.steps[-1].why, rec.steps[-1].ended_at = "failed", reason, datetime.now(UTC)


def _settle(step: BisectStep, res: GateResult, folder) -> None:
    """The gate's outcome, why, numbers and report (written once) into the step."""
    step.gate = record_file(folder, gate_file(step.number), ("\n".join(res.report()) + "\n").encode())
    step.outcome, step.why = res.outcome, res.summary()  # type: ignore[assignment]
    step.rows = [GateRow(cell=x.cell, metric=x.metric, outcome=x.outcome, reason=x.why(),
                         **({k: _num(getattr(x.test, a)) for k, a in (("ratio", "ratio"), ("ci_low", "low"),
                                                                       ("ci_high", "high"))} if x.test else {}))
                 for x in res.lines]
    c = load_comparison(step.comparison_id or "")
    step.answers = c.answers.label if c.answers is not None else ""
    step.status, step.ended_at = "complete", datetime.now(UTC)


def _num(x: float) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def _note_versions(builds: list[BisectBuild], pair: tuple[int, int], c: Comparison) -> None:
    """Each build's vLLM version as its server reported it, from its first run that has one."""
    for i, side in zip(pair, ("baseline", "tuned")):
        if builds[i].vllm is None:
            for run_id in c.run_ids(side):
                v = read_manifest(find_run_dir(run_id)).versions.vllm
                if v:
                    builds[i].vllm = v
                    break
