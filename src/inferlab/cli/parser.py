"""The ``inferlab`` argument parser: one subparser per verb; options shared by several verbs come
from the parent parsers in :mod:`.options`, each declared once."""

from __future__ import annotations

import argparse

from .. import __version__
from . import bisect as b
from . import commands as c
from . import gate as g
from . import options as o

# shown by `inferlab --help` (it was the command line module's docstring)
DESCRIPTION = "``inferlab`` command line. Thin: parse, call the package, print; errors exit 2 with one clear line."
PRIMARY_METRICS = ["throughput", "goodput", "latency_p50", "latency_p95", "latency_p99"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="inferlab", description=DESCRIPTION)
    p.add_argument("--version", action="version", version=f"inferlab {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("runs", help="list runs with status").set_defaults(fn=c.cmd_runs)
    s = sub.add_parser("ingest", help="write tidy parquet tables to data/tidy/<run_id>/")
    s.add_argument("runs", nargs="+")
    s.set_defaults(fn=c.cmd_ingest)
    _run_verbs(sub)
    s = sub.add_parser("verify", help="check a run's files against run.json (sha256, size); non-zero if any "
                                      "is missing, changed or unrecorded")
    s.add_argument("run", help="run id (unique prefix) or path")
    s.set_defaults(fn=c.cmd_verify)
    s = sub.add_parser("reconcile", help="record a run whose writer died while it was `running` as partial "
                                         "(the one step that rewrites it; reading never does)")
    s.add_argument("runs", nargs="+", metavar="RUN", help="run id (unique prefix) or path")
    s.set_defaults(fn=c.cmd_reconcile)
    _engine_verbs(sub)
    _comparison_verbs(sub)
    g.add_parser(sub, PRIMARY_METRICS)
    b.add_parser(sub, PRIMARY_METRICS)
    _capacity_verbs(sub)
    s = sub.add_parser("lab", help="JupyterLab on notebooks/ (news feed and update checks off)")
    s.add_argument("--port", type=int, default=8888)
    s.add_argument("--no-browser", action="store_true")
    s.set_defaults(fn=c.cmd_lab)
    s = sub.add_parser("report", help="render reports (papermill + nbconvert + Chromium PDF)")
    s.add_argument("--runs", default=o.env_default("RUNS"), help="sample | RUN_ID[,RUN_ID]")
    s.add_argument("--local-run", default=None, help="also render the load-test report of this run")
    s.add_argument("--no-pdf", action="store_true")
    s.set_defaults(fn=c.cmd_report)
    _platform_verbs(sub)
    return p


def _run_verbs(sub) -> None:
    """sweep, stress, capacity: one spec run each, the same options."""
    observers = o.observers(
        "local target: Debian's Prometheus scrapes the engine every second and evaluates the platform's "
        "alert rules; the window goes into the run",
        "k8s: the cluster's Prometheus; the run window's vLLM, DCGM and ALERTS series go into the run")
    for name, default in (("sweep", o.env_default("SPEC")), ("stress", o.env_default("STRESS_SPEC")),
                          ("capacity", o.env_default("CAPACITY_SPEC"))):
        s = sub.add_parser(name, help=f"run a {name} spec (YAML path or built-in name, default {default})",
                           parents=[o.target(), o.base_url(), o.spec_sets(), observers])
        # no default here: `--resume RUN_ID` alone resumes with the run's recorded spec (commands.run_spec)
        s.add_argument("spec", nargs="?", default=None, help=f"default {default}; with --resume: the run's recorded "
                       "spec (--set items merge into it)")
        s.add_argument("--label", default=None, help="run label (default: the spec's name)")
        s.add_argument("--resume", metavar="RUN_ID", help="add only the missing cells to this partial run (without a "
                       "spec: with the spec, --set values and observers it recorded)")
        s.add_argument("--allow-spec-change", action="store_true",
                       help="with --resume: go on although the spec differs from the run's manifest (noted in it)")
        s.add_argument("--dry-run", action="store_true", help="print the plan; touch nothing")
        s.add_argument("--in-cluster", action="store_true", default=o.env_flag("IN_CLUSTER"),
                       help="TARGET=k8s: run k6 inside the cluster, k6_segments pods per cell: a k6-operator "
                            "TestRun where the cluster serves it, else an Indexed Job")
        s.set_defaults(fn=c.cmd_sweep, default_spec=default)


def _engine_verbs(sub) -> None:
    """serve, ui, probe: the local engine in the foreground, and tools for a running server."""
    s = sub.add_parser("serve", help="start the local vLLM engine in the foreground")
    s.add_argument("--spec", help="take engine args from this spec")
    s.add_argument("--port", type=int, default=8011)
    s.set_defaults(fn=c.cmd_serve)
    s = sub.add_parser("ui", help="the chat UI (nginx + one page) in front of a running server",
                       parents=[o.base_url(o.LOCAL_SERVER)])
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--auth", action="store_true", help="require basic auth (user inferlab, platform/secrets/values/chat-ui-password)")
    s.set_defaults(fn=c.cmd_ui)
    s = sub.add_parser("probe", help="streaming TTFT/ITL probe against a running server",
                       parents=[o.base_url(o.LOCAL_SERVER), o.target()])
    s.add_argument("--model", default="smollm2")
    s.add_argument("-n", type=int, default=10)
    s.add_argument("--interval", type=float, default=0.0)
    s.add_argument("--insecure", action="store_true", help="skip TLS verification")
    s.add_argument("--out")
    s.set_defaults(fn=c.cmd_probe)


def _comparison_verbs(sub) -> None:
    """compare, ab, tune: verdicts between two sides, and the runs that make them."""
    s = sub.add_parser("compare", help="verdicts of a comparison record, or of BASELINE_RUN TUNED_RUN",
                       parents=[o.margin(required=False)])  # --margin: equivalence verdicts too
    s.add_argument("runs", metavar="COMPARISON_ID|BASELINE_RUN")
    s.add_argument("tuned", nargs="?", metavar="TUNED_RUN")
    s.add_argument("--aa", metavar="COMPARISON_ID", help="a recorded A/A comparison to show beside every effect")
    s.add_argument("--primary", default=None, choices=[*PRIMARY_METRICS, "max_sustainable_rate"],
                   help="the metric that carries the verdict (default: the comparison's, else throughput)")
    s.add_argument("--method", default="auto", choices=["auto", "welch", "bootstrap"],
                   help="interval method (auto: Welch t on logs at any repeat count; bootstrap only when asked, >= 8 a side)")
    s.set_defaults(fn=c.cmd_compare)
    observers = o.observers("local target: Debian's Prometheus beside each repeat",
                            "k8s: the cluster's Prometheus; each repeat's window goes into its run")
    s = sub.add_parser("ab", help="interleaved A/B (or A/A) comparison: BASELINE_SPEC TUNED_SPEC as alternating repeats",
                       parents=[o.target(), o.base_url(), observers, o.ab_run("tuned"),
                                o.ab_primary(PRIMARY_METRICS, default=None), o.answer_check(),
                                o.answer_check_size()])
    s.add_argument("baseline", nargs="?", metavar="BASELINE_SPEC", help="(not with --resume)")
    s.add_argument("tuned", nargs="?", metavar="TUNED_SPEC", help="(not with --resume)")
    s.add_argument("--until-width", type=float, default=None, metavar="W",
                   help="stopping rule: add pairs until the primary interval's relative width < W in every cell")
    s.add_argument("--max-pairs", type=int, default=None, help="budget for --until-width (default 8)")
    s.set_defaults(fn=c.cmd_ab)
    s = sub.add_parser("tune", help="search engine settings for the highest max sustainable rate (optuna), confirm "
                                    "the winner by an interleaved A/B, write it as a kustomize component",
                       parents=[o.target(), o.base_url()])
    s.add_argument("spec", nargs="?", default=o.env_default("TUNE_SPEC"), help="tune spec: name (specs/tunes/) or path")
    s.add_argument("--resume", metavar="TUNE_ID", help="continue this tune's study (data/tunes/<id>/study.db)")
    s.add_argument("--max-trials", type=int, default=None, help="override the spec's budget.max_trials")
    s.add_argument("--max-minutes", type=float, default=None, help="override the spec's budget.max_minutes")
    s.add_argument("--no-confirm", action="store_true", help="skip the interleaved A/B of the winner")
    s.add_argument("--no-component", action="store_true", help="do not write the winner's component")
    s.add_argument("--accept-output-change", action="store_true",
                   help="write the winner's component even when its greedy answers differ from the baseline's")
    s.add_argument("--objective", choices=["capacity", "energy"], default=None,
                   help="capacity (the default): the highest certified rate; energy: the lowest J per good request "
                        "(or per token: the spec's energy.metric) at a fixed open-loop rate, from GPU energy readings "
                        "(a GPU host only)")
    s.add_argument("--rate", type=float, default=None, metavar="REQ_PER_S",
                   help="--objective energy: the fixed rate (default: the spec's energy.rate, else its workload's)")
    s.set_defaults(fn=c.cmd_tune)


def _capacity_verbs(sub) -> None:
    """plan, scale-check: what a measured max sustainable rate means for replicas."""
    s = sub.add_parser("plan", help="capacity plan (replicas, GPUs) and the measured autoscaling trigger of a capacity run")
    s.add_argument("run", help="a capacity run (single replica)")
    s.add_argument("--target-rate", type=float, required=True, help="requests/s to sustain")
    s.add_argument("--headroom", type=float, default=0.2)
    s.add_argument("--gpus-per-replica", type=int, default=1)
    s.add_argument("--autoscale-component", metavar="NAME", help="write platform/components/NAME/ (KEDA ScaledObject "
                                                                "with the measured trigger), validated")
    s.add_argument("--overlay", default="tuned", help="overlay the autoscale component is validated with")
    s.set_defaults(fn=c.cmd_plan)
    s = sub.add_parser("scale-check", help="max sustainable rate of N replicas behind nginx vs N x one replica",
                       parents=[o.spec_sets()])
    s.add_argument("spec", help="a capacity spec")
    s.add_argument("--replicas", type=int, default=2)
    s.add_argument("--devices", choices=["gpu", "cpu"], default="gpu", help="one GPU (CUDA_VISIBLE_DEVICES) or one core each")
    s.add_argument("--single-run", help="an existing one-replica capacity run instead of measuring it")
    s.add_argument("--tolerance", type=float, default=0.15)
    s.add_argument("--engine-python", help="a vLLM other than .venv-engine (e.g. a GPU build's python)")
    s.add_argument("--model", help="model path or id for that vLLM (default: the local SmolLM2 checkpoint)")
    s.set_defaults(fn=c.cmd_scale_check)


def _platform_verbs(sub) -> None:
    """deploy, undeploy, validate, secrets: the Kubernetes platform."""
    s = sub.add_parser("deploy", help="deploy platform/overlays/<OVERLAY> with the kubernetes client",
                       parents=[o.overlay()])
    s.add_argument("--dry-run", action="store_true")
    s.add_argument("--timeout", type=int, default=900)
    s.set_defaults(fn=c.cmd_deploy)
    sub.add_parser("undeploy", help="delete what deploy applied", parents=[o.overlay()]).set_defaults(fn=c.cmd_undeploy)
    sub.add_parser("validate", help="validate platform/ offline (kustomize + schemas + policy)").set_defaults(fn=c.cmd_validate)
    s = sub.add_parser("secrets", help="write random platform secrets into platform/secrets/values/")
    s.add_argument("--rotate", action="store_true")
    s.set_defaults(fn=c.cmd_secrets)
