"""``inferlab gate``: a regression gate for CI, on a recorded comparison or on an A/B it runs first.

``inferlab gate COMPARISON_ID --margin 5%`` gates a recorded comparison (id, unique prefix or
path: runs/records.py); ``inferlab gate BASELINE_SPEC CANDIDATE_SPEC --margin 5%`` first runs
one interleaved A/B through ``inferlab ab``'s machinery (sweep.ab.run_comparison, the same
options) and gates that. The decision is analysis.gate's; this module parses, calls and prints.

Exit status: 0 the candidate is non-inferior on every gated metric, 1 a regression beyond the
margin, 3 inconclusive; 2 stays usage and input errors (argparse, and cli.main's handler), as
for every verb.
"""

from __future__ import annotations

import sys

from . import options as o

USAGE_ERROR = 2


def add_parser(sub, primary_metrics: list[str]) -> None:
    """The ``gate`` verb: its own A/B options (named for a gate: baseline and candidate) beside
    the shared parents (target, base URL, observers, margin)."""
    observers = o.observers("local target: Debian's Prometheus beside each repeat of the A/B",
                            "k8s: the cluster's Prometheus; each repeat's window goes into its run")
    s = sub.add_parser("gate", help="regression gate: exit 0 non-inferior within --margin, 1 regression beyond it, "
                                    "3 inconclusive (of a recorded comparison, or of an A/B of two specs run first)",
                       parents=[o.target(), o.base_url(), observers, o.margin(required=True), o.alpha(),
                                # the gate's orders (as before, unlike ab's): alternate (the default) or random
                                o.ab_run("candidate", orders=o.ORDERS[1:],
                                         title="the A/B run first (two specs; as `inferlab ab`)")])
    s.add_argument("subject", nargs="?", metavar="COMPARISON_ID|BASELINE_SPEC",
                   help="a recorded comparison (id, unique prefix or path), or the baseline spec of an A/B to run "
                        "(none with --resume: the resumed comparison is gated)")
    s.add_argument("candidate", nargs="?", metavar="CANDIDATE_SPEC", help="with a baseline spec: the candidate spec")
    s.add_argument("--primary", default=None, choices=[*primary_metrics, "max_sustainable_rate"],
                   help="the gated primary metric (default: the comparison's, else throughput)")
    s.add_argument("--primary-only", action="store_true",
                   help="gate the primary metric only; the token-level SLO percentiles are listed as not gated")
    s.set_defaults(fn=cmd_gate)


def cmd_gate(a) -> int:
    from ..analysis.gate import gate_comparison
    from .commands import run_ab

    comparison = a.subject
    if a.candidate or a.resume:  # the gate's --primary is the gated metric, not an A/B option a resume refuses
        comparison = run_ab(a, a.subject, a.candidate, "candidate", primary=None if a.resume else a.primary)
        print(f"ran comparison {comparison}", flush=True)
    elif not comparison:
        print("inferlab gate: error: a comparison id, two specs, or --resume COMPARISON_ID is needed", file=sys.stderr)
        return USAGE_ERROR
    try:
        res = gate_comparison(comparison, a.margin, a.alpha, primary=a.primary, token_slo=not a.primary_only)
    except ValueError as exc:  # a comparison with nothing to gate: an input error
        print(f"inferlab gate: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    print("\n".join(res.report()))
    return res.exit_code
