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
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np

from ..analysis.bisect import RULE, Bisection, max_steps
from ..analysis.compare import MIN_VERDICT_REPEATS
from ..analysis.gate import GateResult, gate_comparison
from ..runs.bisect_record import (BUILDS_FILE, BisectBuild, BisectRecord, BisectStep, GateRow, bisects_dir,
                                  gate_file, save_bisect)
from ..runs.comparison import Comparison, load_comparison
from ..runs.layout import slug
from ..runs.reader import find_run_dir
from ..runs.store import read_manifest, record_file
from ..specs import LoadSpec
from ..specs.builds import BuildList, BuildsError
from .ab import run_comparison

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
        engine_choice(b.python, device=b.device)
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
                       overlay=overlay if target == "k8s" else None, search=RULE, builds=prepared)
    rec.builds_file = record_file(d, BUILDS_FILE, builds.yaml().encode())
    save_bisect(rec, d)
    prepared = rec.builds  # the record's own objects: what a step learns of a build goes into the record
    names = [b.name for b in prepared]
    search = Bisection(len(prepared))
    say(f"bisect {bid}: {len(names)} builds ({', '.join(names)}), {names[0]} the known-good reference; margin "
        f"±{margin * 100:g} %, {pairs} pairs a step; at most {max_steps(len(names))} steps")
    try:
        while (pair := search.next()) is not None:
            step = BisectStep(number=len(rec.steps) + 1, baseline=names[pair[0]], candidate=names[pair[1]],
                              started_at=datetime.now(UTC))
            rec.steps.append(step)
            save_bisect(rec, d)
            say(f"step {step.number}: {step.candidate} against {step.baseline} (last known-good)")

            def seen(c: Comparison, step: BisectStep = step) -> None:  # the step's comparison id, from its first repeat on
                if step.comparison_id is None:
                    step.comparison_id = c.comparison_id
                    save_bisect(rec, d)

            cid = run_comparison(spec, spec, target=target, base_url=base_url, pairs=pairs, order=order, seed=seed,
                                 label=f"{name}-s{step.number}-{step.baseline}-vs-{step.candidate}",
                                 overlays=(overlay, overlay) if target == "k8s" and overlay else None,
                                 primary=rec.primary, answer_check=answer_check,
                                 builds=(prepared[pair[0]], prepared[pair[1]]), on_repeat=seen)
            step.comparison_id = cid
            _settle(step, gate_comparison(cid, margin, alpha, primary=rec.primary, token_slo=token_slo), d)
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
