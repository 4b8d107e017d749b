"""``inferlab`` command line. Thin: parse, call the package, print; errors exit 2 with one clear line."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import __version__

# Defaults live here once: the Makefile passes a variable only when the user set it, and the
# project's own environment variables carry the INFERLAB_ prefix (tools keep VLLM_*, K6_*, OTEL_*).
DEFAULTS = {"TARGET": "local", "SPEC": "matrix-local", "STRESS_SPEC": "stress-local", "OVERLAY": "minikube-gpu", "CAPACITY_SPEC": "capacity-local",
            "RUNS": "sample", "BASE_URL": "", "IN_CLUSTER": "", "EDGE": "", "TUNE_SPEC": "tune-local",
            "PROMETHEUS_URL": ""}


def _with_observers(spec, a):
    """``--edge``: the spec's observe.edge, or the ingress defaults (specs.models.EdgeSpec) where
    the spec configures none; ``--prometheus``: the local Prometheus; ``--prometheus-url``: the
    cluster's Prometheus for a k8s run's window."""
    from .specs import EdgeSpec

    update = {}
    if getattr(a, "edge", False) and spec.observe.edge is None:
        update["edge"] = EdgeSpec()
    if getattr(a, "prometheus", False):
        update["prometheus"] = True
    if getattr(a, "prometheus_url", None):
        update["prometheus_url"] = a.prometheus_url
    return spec.model_copy(update={"observe": spec.observe.model_copy(update=update)}) if update else spec


def env_default(name: str) -> str:
    """``$INFERLAB_<name>`` when set and not empty, else the project default."""
    return os.environ.get(f"INFERLAB_{name}") or DEFAULTS[name]


def _spec(path: str, name_override: str | None = None, sets: list[str] | None = None):
    from .specs import resolve_spec

    return resolve_spec(path, sets=sets, label=name_override)


def cmd_runs(a) -> int:
    from .runs.reader import list_runs

    df = list_runs()
    if df.empty:
        print("no runs in data/runs or data/sample")
        return 0
    with __import__("pandas").option_context("display.width", 200, "display.max_columns", 20):
        print(df.drop(columns=["created_at"]).to_string(index=False))
    return 0


def cmd_ingest(a) -> int:
    from .analysis.tidy import write_tidy

    for run in a.runs:
        out = write_tidy(run)
        print(f"{run}: wrote {', '.join(sorted(p.name for p in out.glob('*.parquet')))} to {out}")
    return 0


def cmd_sweep(a) -> int:
    from .sweep.runner import describe_plan, run

    spec = _with_observers(_spec(a.spec, a.label, a.set), a)
    if a.dry_run:
        print(describe_plan(spec, a.target))
        return 0
    run_id = run(spec, target=a.target, base_url=a.base_url, label=a.label, resume=a.resume, in_cluster=a.in_cluster,
                 allow_spec_change=a.allow_spec_change)
    print(run_id)
    from .runs.reader import load_run

    return 0 if load_run(run_id).manifest.status == "complete" else 1


def cmd_verify(a) -> int:
    from .runs.reader import find_run_dir
    from .runs.store import read_manifest
    from .runs.verify import format_report, verify_run

    run_dir = find_run_dir(a.run)
    m = read_manifest(run_dir)
    problems = verify_run(run_dir)
    print(format_report(m.run_id, m.status, problems, len(m.files)))
    return 1 if problems else 0


def _raise_interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def cmd_serve(a) -> int:
    from datetime import UTC, datetime

    from . import credentials, paths
    from .specs import EngineSpec
    from .targets.engine import LocalEngine

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
    from . import credentials, paths
    from .ui.serve import ChatUI

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

    from . import credentials, paths
    from .ingest import read_probe
    from .specs import ProbeSpec
    from .probe.stream import run_probe

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

    from .analysis.compare import compare_with_aa, headline, sides, verdict_table

    if a.tuned:
        base, tuned, what = sides(baseline_run=a.runs, tuned_run=a.tuned)
    else:
        base, tuned, what = sides(comparison=a.runs)
    from .analysis.compare import primary_of

    primary = a.primary or primary_of("" if a.tuned else a.runs)
    res = compare_with_aa(base, tuned, aa_comparison=a.aa or "", method=a.method, primary=primary)
    print(what)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 60):
        print(verdict_table(res).to_string(index=False))
    print(headline(res))
    return 0


def cmd_ab(a) -> int:
    from .specs import resolve_spec
    from .sweep.ab import run_comparison

    base = _with_observers(resolve_spec(a.baseline, sets=a.set_baseline), a)
    tuned = _with_observers(resolve_spec(a.tuned, sets=a.set_tuned), a)
    overlays = (a.overlay_baseline, a.overlay_tuned) if a.overlay_baseline and a.overlay_tuned else None
    cid = run_comparison(base, tuned, target=a.target, base_url=a.base_url, pairs=a.pairs, order=a.order,
                         seed=a.seed, label=a.label, until_width=a.until_width, max_pairs=a.max_pairs,
                         overlays=overlays, primary=a.primary)
    print(cid)
    return 0


def cmd_tune(a) -> int:
    from .specs.tune import load_tune_spec
    from .sweep.tune import tune

    spec = load_tune_spec(a.spec)
    budget = spec.budget.model_copy(update={k: v for k, v in (("max_trials", a.max_trials),
                                                              ("max_minutes", a.max_minutes)) if v is not None})
    spec_dir = Path(a.spec).resolve().parent if Path(a.spec).is_file() else None
    print(tune(spec, target=a.target, base_url=a.base_url, budget=budget, resume=a.resume,
               confirm=not a.no_confirm, write_component=not a.no_component, spec_dir=spec_dir))
    return 0


def cmd_plan(a) -> int:
    import pandas as pd

    from .analysis.plan import autoscale_trigger, plan_capacity
    from .runs.reader import load_run

    run = load_run(a.run)
    cap = run.capacity
    if cap.get("msr") is None:
        raise ValueError(f"run {a.run}: no max sustainable rate (plan from a capacity run)")
    p = plan_capacity(a.target_rate, float(cap["msr"]), a.headroom, a.gpus_per_replica, cap.get("interval_high"))
    with pd.option_context("display.max_colwidth", 200):
        print(p.table().to_string(index=False))
    trigger, _ = autoscale_trigger(run, headroom=a.headroom)
    print("\n".join(trigger.origin_lines()))
    if a.autoscale_component and trigger.signal:
        from .sweep.components import write_autoscale_component

        print(write_autoscale_component(a.autoscale_component, trigger, overlay=a.overlay))
    return 0


def cmd_scale_check(a) -> int:
    from .specs import resolve_spec
    from .sweep.scaling import check_scaling

    out = check_scaling(resolve_spec(a.spec, sets=a.set), replicas=a.replicas, devices=a.devices,
                        single_run=a.single_run, tolerance=a.tolerance, engine_python=a.engine_python, model=a.model)
    return 0 if out["agree"] else 1


def cmd_lab(a) -> int:
    """JupyterLab on notebooks/ with news and update checks off (inferlab.offline)."""
    from . import paths
    from .offline import JUPYTER_LAB_ARGS

    argv = [sys.executable, "-m", "jupyter", "lab", *JUPYTER_LAB_ARGS, f"--port={a.port}",
            *(["--no-browser"] if a.no_browser else []), *(["--allow-root"] if os.geteuid() == 0 else []), str(paths.workspace_root() / "notebooks")]
    os.execv(argv[0], argv)  # the server replaces this process: Ctrl-C reaches it directly
    return 0


def cmd_report(a) -> int:
    from .report.render import render_all

    for p in render_all(a.runs, pdf=not a.no_pdf, local_run=a.local_run):
        print(p)
    return 0


def cmd_deploy(a) -> int:
    from .platform.deploy import deploy

    return deploy(a.overlay, dry_run=a.dry_run, timeout_s=a.timeout)


def cmd_undeploy(a) -> int:
    from .platform.deploy import undeploy

    return undeploy(a.overlay)


def cmd_validate(a) -> int:
    from .load.incluster import example_job
    from .platform.validate import object_errors, validate_all

    def k6_job() -> tuple[int, list[str]]:
        docs = example_job()
        return len(docs), [f"[k6 Job] {e}" for e in object_errors(docs)]

    # the in-cluster k6 Job is rendered from code (load/), which platform/ must not import
    return 0 if validate_all(verbose=True, extra_checks=[("in-cluster k6 Job (ConfigMap + Indexed Job, 2 segments)",
                                                          k6_job)]) else 1


def cmd_secrets(a) -> int:
    from .platform.secrets_gen import make_platform_secrets

    for p in make_platform_secrets(rotate=a.rotate):
        print(f"{p} (mode {oct(p.stat().st_mode & 0o777)})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="inferlab", description=__doc__)
    p.add_argument("--version", action="version", version=f"inferlab {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("runs", help="list runs with status").set_defaults(fn=cmd_runs)
    s = sub.add_parser("ingest", help="write tidy parquet tables to data/tidy/<run_id>/")
    s.add_argument("runs", nargs="+")
    s.set_defaults(fn=cmd_ingest)
    for name, default in (("sweep", env_default("SPEC")), ("stress", env_default("STRESS_SPEC")),
                          ("capacity", env_default("CAPACITY_SPEC"))):
        s = sub.add_parser(name, help=f"run a {name} spec (YAML path or built-in name, default {default})")
        s.add_argument("spec", nargs="?", default=default)
        s.add_argument("--target", default=env_default("TARGET"), choices=["local", "url", "k8s"])
        s.add_argument("--base-url", default=env_default("BASE_URL") or None)
        s.add_argument("--label", default=None, help="run label (default: the spec's name)")
        s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a spec field (YAML value, dotted keys), e.g. --set model=smollm2 "
                            "--set slo.e2e_p95_ms=5000; repeatable, recorded in the manifest's spec")
        s.add_argument("--resume", metavar="RUN_ID", help="add only the missing cells to this partial run")
        s.add_argument("--allow-spec-change", action="store_true",
                       help="with --resume: go on although the spec differs from the run's manifest (noted in it)")
        s.add_argument("--dry-run", action="store_true", help="print the plan; touch nothing")
        s.add_argument("--edge", action="store_true", default=env_default("EDGE") not in ("", "0"),
                       help="run through the local edge: nginx as the ingress is (TLS with a project CA, limit_req, "
                            "600 s timeouts, JSON access log joined to k6 rows by X-Request-Id)")
        s.add_argument("--prometheus", action="store_true", help="local target: Debian's Prometheus scrapes the engine "
                       "every second and evaluates the platform's alert rules; the window goes into the run")
        s.add_argument("--prometheus-url", default=env_default("PROMETHEUS_URL") or None,
                       help="k8s: the cluster's Prometheus; the run window's vLLM, DCGM and ALERTS series go into the run")
        s.add_argument("--in-cluster", action="store_true", default=env_default("IN_CLUSTER") not in ("", "0"),
                       help="TARGET=k8s: run k6 as a Job inside the cluster (k6_segments pods per cell)")
        s.set_defaults(fn=cmd_sweep)
    s = sub.add_parser("verify", help="check a run's files against run.json (sha256, size); non-zero if any "
                                      "is missing, changed or unrecorded")
    s.add_argument("run", help="run id (unique prefix) or path")
    s.set_defaults(fn=cmd_verify)
    s = sub.add_parser("serve", help="start the local vLLM engine in the foreground")
    s.add_argument("--spec", help="take engine args from this spec")
    s.add_argument("--port", type=int, default=8011)
    s.set_defaults(fn=cmd_serve)
    s = sub.add_parser("ui", help="the chat UI (nginx + one page) in front of a running server")
    s.add_argument("--base-url", default=env_default("BASE_URL") or "http://127.0.0.1:8011")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--auth", action="store_true", help="require basic auth (user inferlab, platform/secrets/values/chat-ui-password)")
    s.set_defaults(fn=cmd_ui)
    s = sub.add_parser("probe", help="streaming TTFT/ITL probe against a running server")
    s.add_argument("--base-url", default=env_default("BASE_URL") or "http://127.0.0.1:8011")
    s.add_argument("--target", default=env_default("TARGET"))
    s.add_argument("--model", default="smollm2")
    s.add_argument("-n", type=int, default=10)
    s.add_argument("--interval", type=float, default=0.0)
    s.add_argument("--insecure", action="store_true", help="skip TLS verification")
    s.add_argument("--out")
    s.set_defaults(fn=cmd_probe)
    s = sub.add_parser("compare", help="verdicts of a comparison record, or of BASELINE_RUN TUNED_RUN")
    s.add_argument("runs", metavar="COMPARISON_ID|BASELINE_RUN")
    s.add_argument("tuned", nargs="?", metavar="TUNED_RUN")
    s.add_argument("--aa", metavar="COMPARISON_ID", help="a recorded A/A comparison to show beside every effect")
    s.add_argument("--primary", default=None, choices=["throughput", "goodput", "latency_p50", "latency_p95",
                                                        "latency_p99", "max_sustainable_rate"],
                   help="the metric that carries the verdict (default: the comparison's, else throughput)")
    s.add_argument("--method", default="auto", choices=["auto", "welch", "bootstrap"],
                   help="interval method (auto: Welch t on logs below 8 repeats a side, bootstrap from 8)")
    s.set_defaults(fn=cmd_compare)
    s = sub.add_parser("ab", help="interleaved A/B (or A/A) comparison: BASELINE_SPEC TUNED_SPEC as alternating repeats")
    s.add_argument("baseline", metavar="BASELINE_SPEC")
    s.add_argument("tuned", metavar="TUNED_SPEC")
    s.add_argument("--target", default=env_default("TARGET"), choices=["local", "url", "k8s"])
    s.add_argument("--base-url", default=env_default("BASE_URL") or None)
    s.add_argument("--pairs", type=int, default=3, help="interleaved pairs (repeats a side), at least 3 for a verdict")
    s.add_argument("--order", default="alternate", choices=["alternate", "random"],
                   help="A B A B ..., or a seeded random order within each pair")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--label", default=None)
    s.add_argument("--until-width", type=float, default=None, metavar="W",
                   help="stopping rule: add pairs until the primary interval's relative width < W in every cell")
    s.add_argument("--max-pairs", type=int, default=8, help="budget for --until-width")
    s.add_argument("--edge", action="store_true", default=env_default("EDGE") not in ("", "0"),
                   help="run through the local edge: nginx as the ingress is (TLS with a project CA, limit_req, "
                        "600 s timeouts, JSON access log joined to k6 rows by X-Request-Id)")
    s.add_argument("--prometheus", action="store_true", help="local target: Debian's Prometheus beside each repeat")
    s.add_argument("--prometheus-url", default=env_default("PROMETHEUS_URL") or None,
                   help="k8s: the cluster's Prometheus; each repeat's window goes into its run")
    s.add_argument("--set-baseline", action="append", default=[], metavar="KEY=VALUE")
    s.add_argument("--set-tuned", action="append", default=[], metavar="KEY=VALUE")
    s.add_argument("--primary", default="throughput", choices=["throughput", "goodput", "latency_p50", "latency_p95",
                                                                "latency_p99"],
                   help="the metric that carries the verdict (capacity specs: max_sustainable_rate)")
    s.add_argument("--overlay-baseline", help="TARGET=k8s: overlay deployed before each baseline repeat (e.g. baseline)")
    s.add_argument("--overlay-tuned", help="TARGET=k8s: overlay deployed before each tuned repeat (e.g. tuned)")
    s.set_defaults(fn=cmd_ab)
    s = sub.add_parser("tune", help="search engine settings for the highest max sustainable rate (optuna), confirm "
                                    "the winner by an interleaved A/B, write it as a kustomize component")
    s.add_argument("spec", nargs="?", default=env_default("TUNE_SPEC"), help="tune spec: name (specs/tunes/) or path")
    s.add_argument("--target", default=env_default("TARGET"), choices=["local", "url", "k8s"])
    s.add_argument("--base-url", default=env_default("BASE_URL") or None)
    s.add_argument("--resume", metavar="TUNE_ID", help="continue this tune's study (data/tunes/<id>/study.db)")
    s.add_argument("--max-trials", type=int, default=None, help="override the spec's budget.max_trials")
    s.add_argument("--max-minutes", type=float, default=None, help="override the spec's budget.max_minutes")
    s.add_argument("--no-confirm", action="store_true", help="skip the interleaved A/B of the winner")
    s.add_argument("--no-component", action="store_true", help="do not write the winner's component")
    s.set_defaults(fn=cmd_tune)
    s = sub.add_parser("plan", help="capacity plan (replicas, GPUs) and the measured autoscaling trigger of a capacity run")
    s.add_argument("run", help="a capacity run (single replica)")
    s.add_argument("--target-rate", type=float, required=True, help="requests/s to sustain")
    s.add_argument("--headroom", type=float, default=0.2)
    s.add_argument("--gpus-per-replica", type=int, default=1)
    s.add_argument("--autoscale-component", metavar="NAME", help="write platform/components/NAME/ (KEDA ScaledObject "
                                                                "with the measured trigger), validated")
    s.add_argument("--overlay", default="tuned", help="overlay the autoscale component is validated with")
    s.set_defaults(fn=cmd_plan)
    s = sub.add_parser("scale-check", help="max sustainable rate of N replicas behind nginx vs N x one replica")
    s.add_argument("spec", help="a capacity spec")
    s.add_argument("--replicas", type=int, default=2)
    s.add_argument("--devices", choices=["gpu", "cpu"], default="gpu", help="one GPU (CUDA_VISIBLE_DEVICES) or one core each")
    s.add_argument("--single-run", help="an existing one-replica capacity run instead of measuring it")
    s.add_argument("--tolerance", type=float, default=0.15)
    s.add_argument("--engine-python", help="a vLLM other than .venv-engine (e.g. a GPU build's python)")
    s.add_argument("--model", help="model path or id for that vLLM (default: the local SmolLM2 checkpoint)")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    s.set_defaults(fn=cmd_scale_check)
    s = sub.add_parser("lab", help="JupyterLab on notebooks/ (news feed and update checks off)")
    s.add_argument("--port", type=int, default=8888)
    s.add_argument("--no-browser", action="store_true")
    s.set_defaults(fn=cmd_lab)
    s = sub.add_parser("report", help="render reports (papermill + nbconvert + Chromium PDF)")
    s.add_argument("--runs", default=env_default("RUNS"), help="sample | RUN_ID[,RUN_ID]")
    s.add_argument("--local-run", default=None, help="also render the load-test report of this run")
    s.add_argument("--no-pdf", action="store_true")
    s.set_defaults(fn=cmd_report)
    s = sub.add_parser("deploy", help="deploy platform/overlays/<OVERLAY> with the kubernetes client")
    s.add_argument("--overlay", default=env_default("OVERLAY"))
    s.add_argument("--dry-run", action="store_true")
    s.add_argument("--timeout", type=int, default=900)
    s.set_defaults(fn=cmd_deploy)
    s = sub.add_parser("undeploy", help="delete what deploy applied")
    s.add_argument("--overlay", default=env_default("OVERLAY"))
    s.set_defaults(fn=cmd_undeploy)
    sub.add_parser("validate", help="validate platform/ offline (kustomize + schemas + policy)").set_defaults(fn=cmd_validate)
    s = sub.add_parser("secrets", help="write random platform secrets into platform/secrets/values/")
    s.add_argument("--rotate", action="store_true")
    s.set_defaults(fn=cmd_secrets)
    return p


def main(argv: list[str] | None = None) -> int:
    import signal

    args = build_parser().parse_args(argv)
    # SIGTERM (kill, CI timeouts, container stops) takes the Ctrl-C path: engines, k6, nginx and
    # port-forwards are stopped and a run is left `partial`, never orphaned
    signal.signal(signal.SIGTERM, _raise_interrupt)
    from .ingest import IngestError
    from .specs import SpecError

    try:
        return args.fn(args)
    except (IngestError, SpecError, FileNotFoundError, FileExistsError, PermissionError, RuntimeError) as exc:
        print(f"inferlab {args.cmd}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"inferlab {args.cmd}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
