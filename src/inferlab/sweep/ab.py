"""Interleaved A/B (and A/A) comparisons: a comparison is its own record.

``run_comparison(baseline, tuned, pairs=3)`` runs the two specs as interleaved repeats, by
default counterbalanced (``abba``: pair k runs A B when k is odd and B A when it is even, so
A B B A | A B B A ...; a linear drift cancels over each complete ABBA block, and an odd number of
pairs, or a stop of ``until_width`` after any pair, leaves one A B pair whose drift share is one
pair's; ``alternate``: A B A B ...; ``random``: a seeded random order within each pair), each
repeat a complete run of its own
(so every existing tool reads it), the engine started fresh for every repeat where the tool
owns it (the local target starts and stops its engine per run). The record,
``data/comparisons/<comparison_id>/comparison.json``, lists the repeats in the order they ran
with each engine's lifetime (configuration, process, start, stop); ``analysis.compare`` reads
the two sides from it. ``until_width``: keep adding interleaved pairs until the primary
metric's interval is narrower than that (relative width) in every cell, or ``max_pairs``. Each
look after a pair is a peek: the comparison is judged on repeated p-values valid at any look
(analysis/stats.Sequential over looks ``pairs`` .. ``max_pairs``), and the width the rule reads is
that of the interval shown at the stop (``ci_low_adj``/``ci_high_adj``, which agree with the
verdict). A repeat whose run failed or ended partial stays in: its failures count against its
side, and so do the cells it never ran (analysis/compare.repeat_table).

Ctrl-C or SIGTERM stops the whole comparison (a repeat's run that it cut is recorded, then no
further repeat starts) and leaves it ``partial``; :func:`resume_comparison` (``inferlab ab
--resume``) runs the repeats it lacks, in the order :func:`planned` derives from the record's
``order`` and ``seed``, into the same record. A cut repeat is not run again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..runs.comparison import Comparison, Repeat, comparisons_dir, find_comparison, load_comparison, save_comparison
from ..runs.layout import slug
from ..runs.store import current_writer, refuse_unresumable
from ..specs import LoadSpec
from ..specs.builds import Build
from ..targets.engine import engine_choice, restore_engine
from .answer_check import MAX_TOKENS, AnswerChecker

ORDERS = ("abba", "alternate", "random")


def _order(pair: int, order: str, rng: np.random.Generator) -> list[str]:
    """The sides of pair ``pair`` (1-based) in the order they run."""
    if order == "abba":
        return ["baseline", "tuned"] if pair % 2 else ["tuned", "baseline"]
    if order == "alternate":
        return ["baseline", "tuned"]
    return list(rng.permutation(["baseline", "tuned"]))  # random (run_comparison checks ORDERS)


def width_reached(res, until_width: float) -> bool:
    """The stopping rule: every cell's primary row has an interval (the one shown beside its
    verdict: ``ci_low_adj``/``ci_high_adj``) narrower than ``until_width`` relative to its ratio.
    An empty result (no cell on both sides, e.g. every repeat of a side failed before its first
    cell) or a row without an interval never stops it."""
    if res is None or res.empty or "role" not in res.columns:
        return False
    prim = res[res["role"] == "primary"]
    widths = (prim["ci_high_adj"] - prim["ci_low_adj"]) / prim["ratio"]
    return bool(len(prim)) and bool((widths < until_width).all())


def run_comparison(baseline: LoadSpec, tuned: LoadSpec, target: str = "local", base_url: str | None = None,
                   pairs: int = 3, order: str = "abba", seed: int = 0, label: str | None = None,
                   until_width: float | None = None, max_pairs: int = 8, on_repeat=None,
                   overlays: tuple[str, str] | None = None, primary: str = "throughput",
                   answer_check: bool = True, builds: tuple[Build, Build] | None = None,
                   answer_tokens: int = MAX_TOKENS, answer_prompts: int | None = None) -> str:
    """Run the comparison; returns its id. Each repeat is a run (label ``<label>-a|b``).
    ``answer_check``: the prompt set on both sides' engines while up (sweep/answer_check.py),
    each answer at most ``answer_tokens`` tokens long, ``answer_prompts`` of the set's prompts (None:
    all; recorded; a resume keeps both).
    ``overlays`` (target k8s): (baseline, tuned) overlay names, deployed before each repeat, so
    the cluster's engine pods are replaced between configurations as the local engine is.
    ``on_repeat``: called with the record after each repeat is saved.
    ``builds`` (a bisect's step): the engine build of each side, (baseline, tuned): on the local
    target each repeat's engine is that build's interpreter (targets.engine.chosen_engine); on
    k8s each deploy carries that build's image as a kustomize override of the overlay
    (platform/render.py engine_image_override). The record lists them; each repeat names its build."""
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r} ({', '.join(ORDERS)})")
    if baseline.kind != tuned.kind or baseline.kind not in ("sweep", "capacity"):
        raise ValueError("comparisons take two sweep specs (closed-loop cells) or two capacity specs (their max "
                         "sustainable rate is then the primary metric); a ramp has no steady state")
    engine = dataclasses.asdict(engine_choice()) if target == "local" else None  # an invalid one: before any record
    now = datetime.now(UTC)
    name = slug(label or f"{baseline.name}-vs-{tuned.name}")
    cid = f"{now:%Y%m%dT%H%M%SZ}-{target}-ab-{name}"
    d = comparisons_dir() / cid
    c = Comparison(comparison_id=cid, created_at=now, target=target, order=order, seed=seed,  # type: ignore[arg-type]
                   baseline=baseline.model_dump(mode="json"), tuned=tuned.model_dump(mode="json"),
                   until_width=until_width, pairs=pairs, max_pairs=max_pairs if until_width is not None else None,
                   primary="max_sustainable_rate" if baseline.kind == "capacity" else primary,
                   base_url=base_url, overlays=list(overlays) if overlays else None, writer=current_writer(),
                   engine=engine, builds={side: b.model_dump(mode="json", exclude_none=True)
                                          for side, b in zip(("baseline", "tuned"), builds or ())})
    if target == "url":
        c.notes.append("target url: the server is the user's; the tool cannot restart it between repeats")
    elif target == "k8s" and not overlays:
        c.notes.append("target k8s without overlays: both sides ran against the same deployment, not restarted")
    # the checker refuses a prompt count out of range: before the record's folder exists
    answers = AnswerChecker(c, d, pairs, max_tokens=answer_tokens, n_prompts=answer_prompts) if answer_check else None
    d.mkdir(parents=True)
    save_comparison(c, d)
    return _drive(c, d, (baseline, tuned), answers, on_repeat)


def planned(order: str, seed: int) -> Iterator[tuple[int, str]]:
    """Every repeat a comparison plans, as (pair, side), in the order they run: the plan is the
    record's ``order`` and ``seed`` alone, so a resume continues it where it was cut."""
    rng = np.random.default_rng(seed)
    pair = 0
    while True:
        pair += 1
        for side in _order(pair, order, rng):
            yield pair, side


def resume_comparison(comparison_id: str, on_repeat=None) -> str:
    """Continue a comparison that Ctrl-C or a time limit's SIGTERM cut (``partial``), or whose
    writer died (still ``running``, its writer process gone), in the same record: the recorded
    specs, overlays, base URL, order, seed, pairs and stopping rule; the repeats it lacks in the
    planned order (:func:`planned`); the answer check going on where it stopped. A repeat whose
    run was cut stays as recorded (its run ``partial``: analysis/compare.compared_cells leaves
    its unrun cells out) and is not run again. Refused: a complete comparison, one whose writer
    still runs, and a record whose repeats do not follow its plan. Returns the id."""
    d = find_comparison(comparison_id).parent
    c = load_comparison(d)
    refuse_unresumable(f"comparison {c.comparison_id}", c.status, c.writer)
    plan = [f"{side} pair {pair}" for (pair, side), _ in zip(planned(c.order, c.seed), c.repeats, strict=False)]
    ran = [f"{r.side} pair {r.pair}" for r in c.repeats]
    if ran != plan:
        raise RuntimeError(f"comparison {c.comparison_id}: its repeats ({', '.join(ran)}) do not follow its planned "
                           f"{c.order} order with seed {c.seed} ({', '.join(plan)}); it cannot be resumed")
    if c.pairs is None:
        raise RuntimeError(f"comparison {c.comparison_id} records no pairs asked for; it cannot be resumed")
    was = f"{c.status}: {c.reason}" if c.reason else c.status
    c.status, c.reason, c.ended_at, c.writer = "running", "", None, current_writer()
    c.notes.append(f"resumed at {datetime.now(UTC).isoformat()} after {len(c.repeats)} repeats (it was {was}); "
                   "a repeat whose run was cut stays as recorded and is not run again")
    if c.engine is not None:
        restore_engine(c.engine, f"comparison {c.comparison_id}")
    answers = AnswerChecker(c, d, c.pairs) if c.answers is not None else None
    save_comparison(c, d)
    specs = (LoadSpec.model_validate(c.baseline), LoadSpec.model_validate(c.tuned))
    return _drive(c, d, specs, answers, on_repeat)


def _drive(c: Comparison, d: Path, specs: tuple[LoadSpec, LoadSpec], answers: AnswerChecker | None,
           on_repeat) -> str:
    """Run the planned repeats the record does not hold yet, then the stopping rule after each
    pair, and close the record (complete, or partial/failed with the reason, then re-raised).
    A repeat whose run Ctrl-C or SIGTERM cut (the runner records it partial and returns) is
    recorded, then the comparison stops as interrupted: the signal was for the whole A/B."""
    from ..analysis.compare import compare_sides
    from ..runs.reader import load_run
    from .runner import run

    overlays = tuple(c.overlays) if c.overlays else None
    # the builds as recorded (a bisect step's record holds more than Build's fields: its rendered image)
    builds = {side: Build.model_validate({k: v for k, v in b.items() if k in Build.model_fields})
              for side, b in c.builds.items()}
    done = len(c.repeats)
    try:
        # rendered inside the try: a render that fails is recorded as the comparison's reason
        images = _side_images(overlays, c.builds) if c.target == "k8s" and overlays else {}
        for i, (pair, side) in enumerate(planned(c.order, c.seed)):
            if i >= done:
                spec = specs[0] if side == "baseline" else specs[1]
                build = builds.get(side)
                with _local_build(build) if c.target == "local" else contextlib.nullcontext():
                    deployed = (_deploy(overlays, side, images.get(side), build)  # type: ignore[arg-type]
                                if c.target == "k8s" and overlays else {})
                    run_id = run(spec, target=c.target, base_url=c.base_url,
                                 label=f"{c.name}-{'a' if side == 'baseline' else 'b'}",
                                 while_up=answers.hook(side, pair, spec) if answers else None)
                m = load_run(run_id).manifest
                c.repeats.append(Repeat(side=side, pair=pair, run_id=run_id, status=m.status,  # type: ignore[arg-type]
                                        engine={**engine_lifetime(m), **deployed,
                                                **({"build": build.name} if build else {})}))
                save_comparison(c, d)
                if m.cut_by_user():
                    raise KeyboardInterrupt
                if on_repeat:
                    on_repeat(c)
                # a repeat that failed or ended partial stays in: its failures count against its side
            if i % 2 == 0 or pair < c.pairs:  # mid-pair, or before the first look
                continue
            if c.until_width is None or pair >= (c.max_pairs or 0):
                break
            if i < done - 1:
                continue  # a pair recorded before a resume: its look was taken then (and said go on)
            res = compare_sides([load_run(r) for r in c.run_ids("baseline")], [load_run(r) for r in c.run_ids("tuned")],
                                primary=c.primary, looks=(max(c.pairs, 2), max(c.max_pairs or 0, c.pairs, 2)))
            if width_reached(res, c.until_width):
                break
        c.status = "complete"
        if any(r.status != "complete" for r in c.repeats):
            c.reason = "repeats not complete: " + ", ".join(f"{r.run_id} ({r.status})" for r in c.repeats
                                                            if r.status != "complete")
    except KeyboardInterrupt:
        c.status, c.reason = "partial", f"interrupted (Ctrl-C or SIGTERM); `inferlab ab --resume {c.comparison_id}`"
        raise
    except Exception as exc:  # noqa: BLE001 - recorded, then re-raised for the caller to report
        c.status, c.reason = "partial" if c.repeats else "failed", f"{type(exc).__name__}: {exc}"
        raise
    finally:
        if answers:
            answers.finish()
        c.ended_at = datetime.now(UTC)
        save_comparison(c, d)
    return c.comparison_id


def _local_build(build: Build | None) -> contextlib.AbstractContextManager:
    """The local engine of ``build`` (its interpreter and device) for one repeat, or nothing."""
    from ..targets.engine import chosen_engine

    return chosen_engine(build.python, build.device) if build is not None else contextlib.nullcontext()


def _side_images(overlays: tuple[str, str], recorded: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Each side's kustomize ``images`` entry for its build's engine image
    (platform.render.engine_image_override of the side's overlay), rendered once per A/B, not
    once per repeat. A build that a bisect recorded with its entry
    (runs.bisect_record.BisectBuild.override) must render to the same entry now: an overlay
    changed since the bisect was checked (a resume in another checkout) could point the entry at
    an image name the overlay no longer has, and kustomize would deploy the overlay's own image
    on both sides without a word; refused instead. Sides without a build image get none."""
    from ..platform.render import engine_image_override

    out = {}
    for side, b in recorded.items():
        if b.get("image"):
            overlay = overlays[0] if side == "baseline" else overlays[1]
            entry = engine_image_override(overlay, b["image"])
            if b.get("override") and b["override"] != entry:
                raise RuntimeError(f"build {b.get('name')}: overlay {overlay!r} now renders its image as {entry}, "
                                   f"not {b['override']} as when the bisect checked it; the overlay changed: "
                                   "start a new bisect")
            out[side] = [entry]
    return out


def _deploy(overlays: tuple[str, str], side: str, images: list[dict[str, Any]] | None = None,
            build: Build | None = None) -> dict[str, Any]:
    """Apply this side's overlay (with ``images``, its build's image override from _side_images,
    if any) and wait for its rollout (platform.deploy); refuse to go on without it: a repeat
    against the other configuration would poison the comparison."""
    from ..platform.deploy import deploy

    overlay = overlays[0] if side == "baseline" else overlays[1]
    shown = f"overlay {overlay!r}" + (f" with image {build.image} (build {build.name})" if images and build else "")
    started = datetime.now(UTC).isoformat()
    code = deploy(overlay, images=images)
    if code != 0:
        raise RuntimeError(f"deploy of {shown} exited {code}: this repeat cannot run on its configuration")
    pods = _restart_engine_pods(started)  # re-applying an unchanged overlay replaces no pod: restart them
    return {"overlay": overlay, **({"images": images} if images else {}), "deployed_at": started,
            "rolled_out_at": datetime.now(UTC).isoformat(), "pods": pods}


def _restart_engine_pods(stamp: str, namespace: str = "inferlab", name: str = "vllm") -> list[dict[str, Any]]:
    """``kubectl rollout restart`` by the API (a pod-template annotation), wait for the rollout,
    and return the new engine pods (name, uid, start time) for the comparison record."""
    from ..kube import cluster_client
    from ..platform.deploy import wait_rollout

    dyn = cluster_client()
    if dyn is None:
        raise RuntimeError("no Kubernetes cluster reachable to restart the engine pods")
    deps = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    body = {"spec": {"template": {"metadata": {"annotations": {"inferlab.dev/restarted-at": stamp}}}}}
    deps.patch(name=name, namespace=namespace, body=body, content_type="application/strategic-merge-patch+json")
    ok, msg = wait_rollout(dyn, namespace, name, 900)
    if not ok:
        raise RuntimeError(f"engine restart did not roll out: {msg}")
    pods = dyn.resources.get(api_version="v1", kind="Pod").get(namespace=namespace,
                                                                label_selector="app.kubernetes.io/name=vllm")
    return [{"pod": p.metadata.name, "uid": p.metadata.uid, "started_at": p.status.startTime}
            for p in pods.items if p.status.phase == "Running"]


def engine_lifetime(manifest) -> dict[str, Any]:
    """The server a repeat ran against: configuration and, for engines inferlab started, the
    process and its start/stop times (from the run manifest)."""
    t = manifest.target
    out = {"kind": t.kind, "args": t.engine_args, "env": t.engine_env, **t.process}
    return json.loads(json.dumps(out, default=str))
