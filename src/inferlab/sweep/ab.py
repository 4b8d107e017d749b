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
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ..runs.comparison import Comparison, Repeat, comparisons_dir, save_comparison
from ..runs.layout import slug
from ..specs import LoadSpec
from ..specs.builds import Build
from .answer_check import AnswerChecker

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
                   answer_check: bool = True, builds: tuple[Build, Build] | None = None) -> str:
    """Run the comparison; returns its id. Each repeat is a run (label ``<label>-a|b``).
    ``answer_check``: the prompt set on both sides' engines while up (sweep/answer_check.py).
    ``overlays`` (target k8s): (baseline, tuned) overlay names, deployed before each repeat, so
    the cluster's engine pods are replaced between configurations as the local engine is.
    ``builds`` (a bisect's step): the engine build of each side, (baseline, tuned): on the local
    target each repeat's engine is that build's interpreter (targets.engine.chosen_engine); on
    k8s each deploy carries that build's image as a kustomize override of the overlay
    (platform/render.py engine_image_override). The record lists them; each repeat names its build."""
    from ..analysis.compare import compare_sides
    from ..runs.reader import load_run
    from .runner import run

    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r} ({', '.join(ORDERS)})")
    if baseline.kind != tuned.kind or baseline.kind not in ("sweep", "capacity"):
        raise ValueError("comparisons take two sweep specs (closed-loop cells) or two capacity specs (their max "
                         "sustainable rate is then the primary metric); a ramp has no steady state")
    now = datetime.now(UTC)
    name = slug(label or f"{baseline.name}-vs-{tuned.name}")
    cid = f"{now:%Y%m%dT%H%M%SZ}-{target}-ab-{name}"
    d = comparisons_dir() / cid
    d.mkdir(parents=True)
    c = Comparison(comparison_id=cid, created_at=now, target=target, order=order, seed=seed,  # type: ignore[arg-type]
                   baseline=baseline.model_dump(mode="json"), tuned=tuned.model_dump(mode="json"),
                   until_width=until_width, pairs=pairs, max_pairs=max_pairs if until_width is not None else None,
                   primary="max_sustainable_rate" if baseline.kind == "capacity" else primary,
                   builds={side: b.model_dump(mode="json", exclude_none=True)
                           for side, b in zip(("baseline", "tuned"), builds or ())})
    if target == "url":
        c.notes.append("target url: the server is the user's; the tool cannot restart it between repeats")
    elif target == "k8s" and not overlays:
        c.notes.append("target k8s without overlays: both sides ran against the same deployment, not restarted")
    answers = AnswerChecker(c, d, pairs) if answer_check else None
    save_comparison(c, d)
    rng = np.random.default_rng(seed)
    pair = 0
    try:
        while True:
            pair += 1
            for side in _order(pair, order, rng):
                spec = baseline if side == "baseline" else tuned
                build = builds[0 if side == "baseline" else 1] if builds else None
                with _local_build(build) if target == "local" else contextlib.nullcontext():
                    deployed = _deploy(overlays, side, build) if target == "k8s" and overlays else {}
                    run_id = run(spec, target=target, base_url=base_url,
                                 label=f"{name}-{'a' if side == 'baseline' else 'b'}",
                                 while_up=answers.hook(side, pair, spec) if answers else None)
                m = load_run(run_id).manifest
                c.repeats.append(Repeat(side=side, pair=pair, run_id=run_id, status=m.status,  # type: ignore[arg-type]
                                        engine={**engine_lifetime(m), **deployed,
                                                **({"build": build.name} if build else {})}))
                save_comparison(c, d)
                if on_repeat:
                    on_repeat(c)
                # a repeat that failed or ended partial stays in: its failures count against its side
            if pair < pairs:
                continue
            if until_width is None or pair >= max_pairs:
                break
            res = compare_sides([load_run(r) for r in c.run_ids("baseline")], [load_run(r) for r in c.run_ids("tuned")],
                                primary=c.primary, looks=(max(pairs, 2), max(max_pairs, pairs, 2)))
            if width_reached(res, until_width):
                break
        c.status = "complete"
        if any(r.status != "complete" for r in c.repeats):
            c.reason = "repeats not complete: " + ", ".join(f"{r.run_id} ({r.status})" for r in c.repeats
                                                            if r.status != "complete")
    except KeyboardInterrupt:
        c.status, c.reason = "partial", "interrupted (Ctrl-C)"
        raise
    except Exception as exc:  # noqa: BLE001 - recorded, then re-raised for the caller to report
        c.status, c.reason = "partial" if c.repeats else "failed", f"{type(exc).__name__}: {exc}"
        raise
    finally:
        if answers:
            answers.finish()
        c.ended_at = datetime.now(UTC)
        save_comparison(c, d)
    return cid


def _local_build(build: Build | None) -> contextlib.AbstractContextManager:
    """The local engine of ``build`` (its interpreter and device) for one repeat, or nothing."""
    from ..targets.engine import chosen_engine

    return chosen_engine(build.python, build.device) if build is not None else contextlib.nullcontext()


def _deploy(overlays: tuple[str, str], side: str, build: Build | None = None) -> dict[str, Any]:
    """Apply this side's overlay (with its build's image override, if any) and wait for its
    rollout (platform.deploy); refuse to go on without it: a repeat against the other
    configuration would poison the comparison."""
    from ..platform.deploy import deploy
    from ..platform.render import engine_image_override

    overlay = overlays[0] if side == "baseline" else overlays[1]
    images = [engine_image_override(overlay, build.image)] if build is not None and build.image else None
    shown = f"overlay {overlay!r}" + (f" with image {build.image} (build {build.name})" if images else "")
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
