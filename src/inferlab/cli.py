"""``inferlab`` command line. Thin: parse, call the package, print; errors exit 2 with one clear line."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import __version__


def _spec(path: str, name_override: str | None = None, sets: list[str] | None = None):
    from .load.spec import parse_overrides, resolve_spec

    overrides = parse_overrides(sets or [])
    if name_override:
        overrides["name"] = name_override
    return resolve_spec(path, overrides or None)


def cmd_runs(a) -> int:
    from .runs.load import list_runs

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
    from .load.sweep import describe_plan, run

    spec = _spec(a.spec, a.label, a.set)
    if a.dry_run:
        print(describe_plan(spec, a.target))
        return 0
    run_id = run(spec, target=a.target, base_url=a.base_url, label=a.label, resume=a.resume, in_cluster=a.in_cluster)
    print(run_id)
    from .runs.load import load_run

    return 0 if load_run(run_id).manifest.status == "complete" else 1


def _raise_interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def cmd_serve(a) -> int:
    from datetime import UTC, datetime

    from . import paths, secrets
    from .load.spec import EngineSpec
    from .targets.local_engine import LocalEngine

    spec = _spec(a.spec).engine if a.spec else EngineSpec()
    log = paths.cache_dir() / "engine" / f"serve-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.log"
    with LocalEngine(spec, secrets.api_key("local") or "", log, port=a.port) as eng:
        print(f"vLLM {eng.version()} serving {spec.served_model_name!r} at {eng.base_url} "
              f"(started in {eng.startup_s}s; key in .secrets/api-key; log {log}); Ctrl-C stops it", flush=True)
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
    from . import paths, secrets
    from .ui.serve import ChatUI

    key = secrets.api_key("local") or ""  # INFERLAB_API_KEY, else .secrets/api-key (the local engine's)
    htpasswd = None
    if a.auth:
        f = paths.secrets_dir() / "chat-ui-htpasswd"
        if not f.is_file():
            raise FileNotFoundError(f"{f}: run `make secrets` first (user inferlab, password in .secrets/chat-ui-password)")
        htpasswd = f.read_text()
    with ChatUI(a.base_url, key, a.port, htpasswd=htpasswd) as ui:
        print(f"chat UI on {ui.url} -> {a.base_url} (nginx adds the API key; the browser never sees it); "
              "Ctrl-C stops it", flush=True)
        _wait_foreground(ui.proc)
    return 0


def cmd_probe(a) -> int:
    from datetime import UTC, datetime

    from . import paths, secrets
    from .ingest import read_probe
    from .load.spec import ProbeSpec
    from .probe.stream import run_probe

    out = Path(a.out) if a.out else paths.cache_dir() / "probe" / f"probe-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    run_probe(out, a.base_url, secrets.api_key(a.target), a.model, ProbeSpec().payload, a.n, a.interval,
              verify_tls=not a.insecure)
    df = read_probe(out).requests
    print(df[["status", "headers_ms", "ttft_ms", "tpot_ms", "e2e_ms", "completion_tokens"]].describe().round(1).to_string())
    print(f"wrote {out}")
    return 0


def cmd_compare(a) -> int:
    from .analysis.compare import compare_runs, verdict_table
    from .runs.load import load_run

    res = compare_runs(load_run(a.baseline), load_run(a.tuned), n_boot=a.bootstrap)
    print(verdict_table(res).to_string(index=False))
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
    from .platform.validate import validate_all

    return 0 if validate_all(verbose=True) else 1


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
    for name, default in (("sweep", "matrix-local"), ("stress", "stress-local")):
        s = sub.add_parser(name, help=f"run a {name} spec (YAML path or built-in name, default {default})")
        s.add_argument("spec", nargs="?", default=default)
        s.add_argument("--target", default=os.environ.get("TARGET", "local"), choices=["local", "url", "k8s"])
        s.add_argument("--base-url", default=os.environ.get("BASE_URL") or None)
        s.add_argument("--label", default=None, help="run label (default: the spec's name)")
        s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a spec field (YAML value, dotted keys), e.g. --set model=smollm2 "
                            "--set slo.e2e_p95_ms=5000; repeatable, recorded in the manifest's spec")
        s.add_argument("--resume", metavar="RUN_ID", help="add only the missing cells to this partial run")
        s.add_argument("--dry-run", action="store_true", help="print the plan; touch nothing")
        s.add_argument("--in-cluster", action="store_true", default=os.environ.get("IN_CLUSTER", "") not in ("", "0"),
                       help="TARGET=k8s: run k6 as a Job inside the cluster (k6_segments pods per cell)")
        s.set_defaults(fn=cmd_sweep)
    s = sub.add_parser("serve", help="start the local vLLM engine in the foreground")
    s.add_argument("--spec", help="take engine args from this spec")
    s.add_argument("--port", type=int, default=8011)
    s.set_defaults(fn=cmd_serve)
    s = sub.add_parser("ui", help="the chat UI (nginx + one page) in front of a running server")
    s.add_argument("--base-url", default=os.environ.get("BASE_URL") or "http://127.0.0.1:8011")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--auth", action="store_true", help="require basic auth (user inferlab, .secrets/chat-ui-password)")
    s.set_defaults(fn=cmd_ui)
    s = sub.add_parser("probe", help="streaming TTFT/ITL probe against a running server")
    s.add_argument("--base-url", default=os.environ.get("BASE_URL", "http://127.0.0.1:8011"))
    s.add_argument("--target", default=os.environ.get("TARGET", "local"))
    s.add_argument("--model", default="smollm2")
    s.add_argument("-n", type=int, default=10)
    s.add_argument("--interval", type=float, default=0.0)
    s.add_argument("--insecure", action="store_true", help="skip TLS verification")
    s.add_argument("--out")
    s.set_defaults(fn=cmd_probe)
    s = sub.add_parser("compare", help="tuned vs baseline with bootstrap CIs and verdicts")
    s.add_argument("baseline")
    s.add_argument("tuned")
    s.add_argument("--bootstrap", type=int, default=2000)
    s.set_defaults(fn=cmd_compare)
    s = sub.add_parser("report", help="render reports (papermill + nbconvert + Chromium PDF)")
    s.add_argument("--runs", default=os.environ.get("RUNS", "sample"), help="sample | RUN_ID[,RUN_ID]")
    s.add_argument("--local-run", default=None, help="also render the load-test report of this run")
    s.add_argument("--no-pdf", action="store_true")
    s.set_defaults(fn=cmd_report)
    s = sub.add_parser("deploy", help="deploy platform/overlays/<OVERLAY> with the kubernetes client")
    s.add_argument("--overlay", default=os.environ.get("OVERLAY", "minikube-gpu"))
    s.add_argument("--dry-run", action="store_true")
    s.add_argument("--timeout", type=int, default=900)
    s.set_defaults(fn=cmd_deploy)
    s = sub.add_parser("undeploy", help="delete what deploy applied")
    s.add_argument("--overlay", default=os.environ.get("OVERLAY", "minikube-gpu"))
    s.set_defaults(fn=cmd_undeploy)
    sub.add_parser("validate", help="validate platform/ offline (kustomize + schemas + policy)").set_defaults(fn=cmd_validate)
    s = sub.add_parser("secrets", help="write random platform secrets into .secrets/")
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
    from .load.spec import SpecError

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
