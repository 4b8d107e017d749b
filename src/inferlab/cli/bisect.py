"""``inferlab bisect``: the first engine build whose primary metric regressed beyond a margin.

``inferlab bisect SPEC --builds builds.yaml --margin 5%`` (or ``--build NAME=PYTHON|IMAGE``
repeated, oldest first) runs the search of analysis/bisect.py through sweep/bisect.py: each step
one interleaved A/B of SPEC on both sides (the last known-good build against the build under
test), gated as ``inferlab gate`` gates. This module parses, calls and prints.

Exit status, as the gate's: 0 none regressed, 1 a first bad build found, 3 inconclusive; 2 usage
and input errors (a bad builds file, a missing interpreter, an image that does not render) and a
step that could not run (recorded in the bisect as ``failed``).
"""

from __future__ import annotations

import sys

from . import options as o

USAGE_ERROR = 2


def add_parser(sub, primary_metrics: list[str]) -> None:
    observers = o.observers("local target: Debian's Prometheus beside each repeat",
                            "k8s: the cluster's Prometheus; each repeat's window goes into its run")
    s = sub.add_parser("bisect", help="find the first engine build whose primary metric regressed beyond --margin: "
                                      "builds in order, each step an interleaved A/B gated as `inferlab gate` "
                                      "(exit 0 none regressed, 1 first bad build, 3 inconclusive)",
                       parents=[o.target(), o.base_url(), observers, o.spec_sets(), o.overlay(),
                                o.margin(required=False), o.alpha(), o.ab_primary(primary_metrics, default=None), o.answer_check(),
                                o.ab_repeats(title="each step's interleaved A/B (as `inferlab ab`)")])
    s.add_argument("spec", metavar="SPEC", nargs="?",
                   help="the load spec every step runs on both sides (built-in name or YAML)")
    given = s.add_mutually_exclusive_group()
    given.add_argument("--builds", metavar="FILE", help="a builds file (YAML): builds in order, oldest first, the first "
                                                        "the known-good reference (docs/verdicts.md, Bisect)")
    given.add_argument("--build", action="append", metavar="NAME=PYTHON|IMAGE",
                       help="a build, repeated in order, oldest first: --target local an interpreter "
                            "(on --engine-device), --target k8s an image tag or reference")
    s.add_argument("--token-slo", action="store_true",
                   help="gate the token-level SLO percentiles too, as `inferlab gate` does (default: the primary "
                        "metric only)")
    s.add_argument("--resume", metavar="BISECT_ID",
                   help="continue a cut, failed or orphaned bisect in its own record, as recorded: finished steps are "
                        "kept, the cut step's comparison goes on (give nothing else the record fixes)")
    s.set_defaults(fn=cmd_bisect)


def cmd_bisect(a) -> int:
    from ..specs import resolve_spec
    from ..specs.builds import build_from_option, build_list, load_builds
    from ..sweep.bisect import run_bisect
    from .commands import with_observers

    try:
        if a.resume:
            return _resume(a)
        if not a.spec or not (a.builds or a.build) or a.margin is None:
            raise ValueError("a bisect needs SPEC, --builds FILE (or --build repeated) and --margin; or --resume "
                             "BISECT_ID")
        if a.engine_python:
            raise ValueError("--engine-python names one interpreter for every build: give each build's with "
                             "--build NAME=PYTHON or a builds file")
        if a.builds:
            builds = load_builds(a.builds)
        else:
            kind = "k8s" if a.target == "k8s" else "local"
            builds = build_list([build_from_option(x, kind, a.engine_device) for x in a.build])
        spec = with_observers(resolve_spec(a.spec, sets=a.set), a)
        rec = run_bisect(spec, builds, a.margin, target=a.target, base_url=a.base_url, alpha=a.alpha,
                         **o.ab_design(a), label=a.label, overlay=a.overlay, primary=a.primary or "throughput",
                         token_slo=a.token_slo, answer_check=not a.no_answer_check,
                         say=lambda line: print(line, flush=True))
    except ValueError as exc:  # builds, spec, target or pairs that cannot make a bisect: usage and input errors
        print(f"inferlab bisect: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    print(f"bisect {rec.bisect_id}: {rec.summary} (exit {rec.exit_code})")
    return rec.exit_code if rec.exit_code is not None else USAGE_ERROR


def _resume(a) -> int:
    """``--resume``: the recorded bisect continued; anything the record fixes, given again, is
    refused (one error naming each, exit 2)."""
    from ..runs.bisect_record import load_bisect
    from ..specs import LoadSpec
    from ..sweep.bisect import resume_bisect
    from .commands import with_observers
    from .options import env_default

    try:
        rec = load_bisect(a.resume)
    except (OSError, ValueError) as exc:
        print(f"inferlab bisect: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    # what the record fixes, given again; options with an environment default count only when
    # they differ from it (and from the record)
    given = [x for x, v in (("SPEC", a.spec), ("--builds", a.builds), ("--build", a.build), ("--margin", a.margin),
                            ("--set", a.set), ("--label", a.label), ("--token-slo", a.token_slo),
                            ("--no-answer-check", a.no_answer_check), ("--pairs", a.pairs), ("--order", a.order),
                            ("--seed", a.seed), ("--primary", a.primary), ("--engine-python", a.engine_python),
                            ("--engine-device", a.engine_device)) if v]  # builds name each interpreter and device
    given += [f"--{k} {v} (recorded: {r})" for k, v, r, dflt in (
        ("target", a.target, rec.target, env_default("TARGET")), ("overlay", a.overlay, rec.overlay, env_default("OVERLAY")),
        ("base-url", a.base_url, rec.base_url, env_default("BASE_URL")), ("alpha", a.alpha, rec.alpha, 0.05))
        if v and v != r and v != dflt]
    spec = LoadSpec.model_validate(rec.spec)
    if with_observers(spec, a) != spec:
        given.append("--edge/--prometheus/--prometheus-url (the recorded spec's observers differ)")
    if given:
        print(f"inferlab bisect: error: --resume continues bisect {a.resume} as recorded; drop {', '.join(given)}",
              file=sys.stderr)
        return USAGE_ERROR
    try:
        rec = resume_bisect(a.resume, say=lambda line: print(line, flush=True), rec=rec)
    except (RuntimeError, ValueError) as exc:
        print(f"inferlab bisect: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    print(f"bisect {rec.bisect_id}: {rec.summary} (exit {rec.exit_code})")
    return rec.exit_code if rec.exit_code is not None else USAGE_ERROR
