"""What each ``inferlab`` verb does: parse results in, the package called, results printed.
Thin: every import is lazy, so ``inferlab --help`` and a mistyped verb stay fast."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path


def with_observers(spec, a):
    """``--edge``: the spec's observe.edge, or the ingress defaults (specs.EdgeSpec) where
    the spec configures none; ``--prometheus``: the local Prometheus; ``--prometheus-url``: the
    cluster's Prometheus for a k8s run's window."""
    from ..specs import EdgeSpec

    update = {}
    if getattr(a, "edge", False) and spec.observe.edge is None:
        update["edge"] = EdgeSpec()
    if getattr(a, "prometheus", False):
        update["prometheus"] = True
    if getattr(a, "prometheus_url", None):
        update["prometheus_url"] = a.prometheus_url
    return spec.model_copy(update={"observe": spec.observe.model_copy(update=update)}) if update else spec


def _spec(path: str, name_override: str | None = None, sets: list[str] | None = None):
    from ..specs import resolve_spec

    return resolve_spec(path, sets=sets, label=name_override)


def cmd_runs(a) -> int:
    from ..runs.reader import list_runs

    df = list_runs()
    if df.empty:
        print("no runs in data/runs or data/sample")
        return 0
    with __import__("pandas").option_context("display.width", 200, "display.max_columns", 20):
        print(df.drop(columns=["created_at"]).to_string(index=False))
    return 0


def cmd_ingest(a) -> int:
    from ..analysis.tidy import write_tidy

    for run in a.runs:
        out = write_tidy(run)
        print(f"{run}: wrote {', '.join(sorted(p.name for p in out.glob('*.parquet')))} to {out}")
    return 0


def run_spec(a):
    """The spec a sweep, stress or capacity command runs: the one named (else the command's
    default), with its --set items and observer options. ``--resume RUN_ID`` without a spec
    resumes with the run's recorded spec (what a resume must match anyway, so the first call's
    spec and --set values need not be repeated), its observers included; --set items given
    are merged into it, and the resume then refuses them as a spec change unless
    --allow-spec-change."""
    if a.resume and a.spec is None:
        from ..runs.reader import find_run_dir
        from ..runs.store import read_manifest
        from ..specs.resolve import spec_from_record

        run_dir = find_run_dir(a.resume)
        return spec_from_record(read_manifest(run_dir).spec, run_dir / "run.json", a.set)
    return with_observers(_spec(a.spec or a.default_spec, a.label, a.set), a)


def cmd_sweep(a) -> int:
    from ..sweep.estimate import describe_plan
    from ..sweep.runner import run

    spec = run_spec(a)
    if a.dry_run:
        print(describe_plan(spec, a.target))
        return 0
    run_id = run(spec, target=a.target, base_url=a.base_url, label=a.label, resume=a.resume, in_cluster=a.in_cluster,
                 allow_spec_change=a.allow_spec_change)
    print(run_id)
    from ..runs.reader import load_run

    return 0 if load_run(run_id).manifest.status == "complete" else 1


def cmd_verify(a) -> int:
    from ..runs.reader import find_run_dir
    from ..runs.store import read_manifest
    from ..runs.verify import format_report, verify_run

    run_dir = find_run_dir(a.run)
    m = read_manifest(run_dir)
    problems = verify_run(run_dir)
    print(format_report(m.run_id, m.status, problems, len(m.files)))
    return 1 if problems else 0


def cmd_reconcile(a) -> int:
    """Record each ``running`` run whose writer is gone as ``partial`` (runs.store.reconcile: the
    one step that rewrites such a run; reading never does). Any other run is left as it is."""
    from ..runs.reader import find_run_dir
    from ..runs.store import read_manifest, reconcile

    for run in a.runs:
        run_dir = find_run_dir(run)
        before = read_manifest(run_dir).status
        m = reconcile(run_dir)
        print(f"{m.run_id}: {m.status}" + (f" ({m.reason})" if m.status != before else "; nothing to reconcile"))
    return 0


def cmd_serve(a) -> int:
    from datetime import UTC, datetime

    from .. import credentials, paths
    from ..specs import EngineSpec
    from ..targets.engine import LocalEngine

    spec = _spec(a.spec).engine if a.spec else EngineSpec()
    log = paths.cache_dir() / "engine" / f"serve-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.log"
    with LocalEngine(spec, credentials.api_key("local") or "", log, port=a.port) as eng:
        print(f"vLLM {eng.version()} serving {spec.served_model_name!r} at {eng.base_url} "
              f"(started in {eng.startup_s}s; key in platform/secrets/values/api-key; log {log}); Ctrl-C stops it", flush=True)
        _wait_foreground(eng.proc)
    return 0


def _wait_foreground(proc) -> None:
    """Block while a served child runs; Ctrl-C or SIGTERM returns (the caller's `with` stops it)."""
    import time

    try:
        while proc and proc.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass


def cmd_ui(a) -> int:
    from .. import credentials, paths
    from ..ui.serve import ChatUI

    key = credentials.api_key("local") or ""  # INFERLAB_API_KEY, else platform/secrets/values/api-key (the local engine's)
    htpasswd = None
    if a.auth:
        f = paths.secrets_dir() / "chat-ui-htpasswd"
        if not f.is_file():
            raise FileNotFoundError(f"{f}: run `make secrets` first (user inferlab, password in platform/secrets/values/chat-ui-password)")
        htpasswd = f.read_text()
    with ChatUI(a.base_url, key, a.port, htpasswd=htpasswd) as ui:
        print(f"chat UI on {ui.url} -> {a.base_url} (nginx adds the API key; the browser never sees it); "
              "Ctrl-C stops it", flush=True)
        _wait_foreground(ui.proc)
    return 0


def cmd_probe(a) -> int:
    from datetime import UTC, datetime

    from .. import credentials, paths
    from ..ingest import read_probe
    from ..specs import ProbeSpec
    from ..probe.stream import run_probe

    out = Path(a.out) if a.out else paths.cache_dir() / "probe" / f"probe-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    run_probe(out, a.base_url, credentials.api_key(a.target), a.model, ProbeSpec().payload, a.n, a.interval,
              verify_tls=not a.insecure)
    df = read_probe(out).requests
    print(df[["status", "headers_ms", "ttft_ms", "tpot_ms", "e2e_ms", "completion_tokens"]].describe().round(1).to_string())
    print(f"wrote {out}")
    return 0


def cmd_compare(a) -> int:
    import pandas as pd

    from ..analysis.compare import compare_comparison, compare_with_aa, headline, primary_of, sides, verdict_table

    primary = a.primary or primary_of("" if a.tuned else a.runs)
    if a.tuned:
        base, tuned, what = sides(baseline_run=a.runs, tuned_run=a.tuned)
        res = compare_with_aa(base, tuned, aa_comparison=a.aa or "", method=a.method, primary=primary)
    else:  # judged by its own design (an --until-width comparison on repeated p-values)
        res, what = compare_comparison(a.runs, aa_comparison=a.aa or "", method=a.method, primary=primary)
    print(what)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 60):
        print(verdict_table(res).to_string(index=False))
    print(headline(res))
    if not a.tuned:  # a comparison record: its answer check, A/B and control (report/answers.py)
        from ..report.answers import answer_lines

        print("\n".join(answer_lines(a.runs)))
    if a.margin is not None:  # --margin: equivalence verdicts of the same rows (analysis.equivalence)
        from ..analysis.equivalence import equivalence_note, equivalence_table

        print(equivalence_note(a.margin))
        with pd.option_context("display.width", 250, "display.max_columns", 20, "display.max_colwidth", 100):
            print(equivalence_table(res, a.margin).to_string(index=False))
    return 0


def run_ab(a, baseline: str | None, other_spec: str | None, other: str, **options) -> str:
    """One interleaved A/B (sweep.ab.run_comparison) of the specs ``baseline`` and ``other_spec``
    with the options of :func:`.options.ab_run` (``other``: the other side's name there): each
    side's spec with its ``--set`` values and the observers, the two overlays where both are
    given; ``options``: run_comparison's others, None where not given (its default then). With
    ``--resume``: that comparison continued (sweep.ab.resume_comparison), refusing every spec or
    option given that the record fixes. Returns the comparison's id."""
    from ..specs import resolve_spec
    from ..sweep.ab import run_comparison
    from .options import ab_design

    options = {k: v for k, v in options.items() if v is not None}
    if a.resume:
        return _resume_ab(a, other, [x for x in (baseline, other_spec) if x], options)
    if not (baseline and other_spec):
        raise RuntimeError(f"{a.cmd}: two specs are needed (BASELINE_SPEC and the {other}'s), "
                           "or --resume COMPARISON_ID")
    base = with_observers(resolve_spec(baseline, sets=a.set_baseline), a)
    tuned = with_observers(resolve_spec(other_spec, sets=getattr(a, f"set_{other}")), a)
    overlay = getattr(a, f"overlay_{other}")
    overlays = (a.overlay_baseline, overlay) if a.overlay_baseline and overlay else None
    design = ab_design(a)
    return run_comparison(base, tuned, target=a.target, base_url=a.base_url, label=a.label, overlays=overlays,
                          **design, **options)


def _resume_ab(a, other: str, specs: list[str], options: dict) -> str:
    """``--resume``: the comparison continued as recorded; what the record fixes may not be given
    again (one error naming each, exit 2). The target is the record's (a ``--target`` other than
    the default is refused), and so are the base URL and the observers baked into its specs."""
    from .options import env_default
    from ..runs.comparison import load_comparison
    from ..specs import LoadSpec
    from ..sweep.ab import resume_comparison

    c = load_comparison(a.resume)
    given = [f"spec {x}" for x in specs] + [f"--{k.replace('_', '-')}" for k in options]
    given += [f"--{k}" for k in a.ab_defaults if getattr(a, k) is not None]
    given += [f"--{k.replace('_', '-')}" for k in ("label", "set_baseline", f"set_{other}", "overlay_baseline",
                                                   f"overlay_{other}") if getattr(a, k)]
    if a.target != c.target and a.target != env_default("TARGET"):
        given.append(f"--target {a.target} (recorded: {c.target})")
    if a.base_url and a.base_url != c.base_url:
        given.append(f"--base-url {a.base_url} (recorded: {c.base_url})")
    spec = LoadSpec.model_validate(c.baseline)
    if with_observers(spec, a) != spec:
        given.append("--edge/--prometheus/--prometheus-url (the recorded specs' observers differ)")
    if given:
        raise RuntimeError(f"--resume continues comparison {c.comparison_id} with its recorded specs, overlays, "
                           f"target and plan; drop {', '.join(given)}")
    return resume_comparison(c.comparison_id)


def cmd_ab(a) -> int:
    given = [f"--answer-{k}" for k in ("tokens", "prompts") if getattr(a, f"answer_{k}") is not None]
    if a.no_answer_check and given:
        raise RuntimeError(f"{' and '.join(given)} {'set' if len(given) > 1 else 'sets'} the answer check's passes; "
                           "with --no-answer-check there is none")
    print(run_ab(a, a.baseline, a.tuned, "tuned", until_width=a.until_width, max_pairs=a.max_pairs,
                 primary=a.primary, answer_check=False if a.no_answer_check else None,
                 answer_tokens=a.answer_tokens, answer_prompts=a.answer_prompts))
    return 0


def cmd_tune(a) -> int:
    from ..specs.tune import load_tune_spec
    from ..sweep.tune import tune

    spec = load_tune_spec(a.spec)
    budget = spec.budget.model_copy(update={k: v for k, v in (("max_trials", a.max_trials),
                                                              ("max_minutes", a.max_minutes)) if v is not None})
    spec_dir = Path(a.spec).resolve().parent if Path(a.spec).is_file() else None
    print(tune(spec, target=a.target, base_url=a.base_url, budget=budget, resume=a.resume,
               confirm=not a.no_confirm, write_component=not a.no_component, spec_dir=spec_dir,
               accept_output_change=a.accept_output_change, objective=a.objective, rate=a.rate))
    return 0


def cmd_plan(a) -> int:
    import pandas as pd

    from ..analysis.plan import autoscale_trigger, plan_from_result
    from ..runs.reader import load_run

    run = load_run(a.run)
    p = plan_from_result(run.capacity, a.target_rate, a.headroom, a.gpus_per_replica, where=f"run {a.run}")
    with pd.option_context("display.max_colwidth", 200):
        print(p.table().to_string(index=False))
    trigger, _ = autoscale_trigger(run, headroom=a.headroom)
    print("\n".join(trigger.origin_lines()))
    if a.autoscale_component and trigger.signal:
        from ..sweep.components import write_autoscale_component

        print(write_autoscale_component(a.autoscale_component, trigger, overlay=a.overlay))
    return 0


def cmd_scale_check(a) -> int:
    from ..specs import resolve_spec
    from ..sweep.scaling import check_scaling

    out = check_scaling(resolve_spec(a.spec, sets=a.set), replicas=a.replicas, devices=a.devices,
                        single_run=a.single_run, tolerance=a.tolerance, engine_python=a.engine_python, model=a.model)
    return 0 if out["agree"] else 1


def cmd_lab(a) -> int:
    """JupyterLab on notebooks/ with news and update checks off (inferlab.offline)."""
    from .. import paths
    from ..offline import JUPYTER_LAB_ARGS

    argv = [sys.executable, "-m", "jupyter", "lab", *JUPYTER_LAB_ARGS, f"--port={a.port}",
            *(["--no-browser"] if a.no_browser else []), *(["--allow-root"] if os.geteuid() == 0 else []), str(paths.workspace_root() / "notebooks")]
    os.execv(argv[0], argv)  # the server replaces this process: Ctrl-C reaches it directly
    return 0


def cmd_report(a) -> int:
    from ..report.render import render_all

    for p in render_all(a.runs, pdf=not a.no_pdf, local_run=a.local_run):
        print(p)
    return 0


def cmd_deploy(a) -> int:
    from ..platform.deploy import deploy

    return deploy(a.overlay, dry_run=a.dry_run, timeout_s=a.timeout)


def cmd_undeploy(a) -> int:
    from ..platform.deploy import undeploy

    return undeploy(a.overlay)


def cmd_validate(a) -> int:
    from ..load.incluster import example_objects
    from ..platform.validate import object_errors, validate_all

    def in_cluster(way: str) -> Callable[[], tuple[int, list[str]]]:
        def check() -> tuple[int, list[str]]:
            docs = example_objects()[way]
            return len(docs), [f"[k6 {way}] {e}" for e in object_errors(docs)]

        return check

    # the in-cluster k6 objects are rendered from code (load/), which platform/ must not import
    return 0 if validate_all(verbose=True, extra_checks=[
        ("in-cluster k6 Job (ConfigMap + Indexed Job, 2 segments)", in_cluster("job")),
        ("in-cluster k6-operator TestRun (ConfigMap + PVC + collector Pod + TestRun, parallelism 2)",
         in_cluster("testrun"))]) else 1


def cmd_secrets(a) -> int:
    from ..platform.secrets_gen import make_platform_secrets

    for p in make_platform_secrets(rotate=a.rotate):
        print(f"{p} (mode {oct(p.stat().st_mode & 0o777)})")
    return 0
