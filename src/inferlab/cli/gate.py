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
                       parents=[o.target(), o.base_url(), observers, o.margin(required=True)])
    s.add_argument("subject", metavar="COMPARISON_ID|BASELINE_SPEC",
                   help="a recorded comparison (id, unique prefix or path), or the baseline spec of an A/B to run")
    s.add_argument("candidate", nargs="?", metavar="CANDIDATE_SPEC", help="with a baseline spec: the candidate spec")
    s.add_argument("--alpha", type=float, default=0.05, help="error rate of each one-sided test (default 0.05)")
    s.add_argument("--primary", default=None, choices=[*primary_metrics, "max_sustainable_rate"],
                   help="the gated primary metric (default: the comparison's, else throughput)")
    s.add_argument("--primary-only", action="store_true",
                   help="gate the primary metric only; the token-level SLO percentiles are listed as not gated")
    ab = s.add_argument_group("the A/B run first (two specs; as `inferlab ab`)")
    ab.add_argument("--pairs", type=int, default=3, help="interleaved pairs (repeats a side); a decision needs >= 3")
    ab.add_argument("--order", default="alternate", choices=["alternate", "random"])
    ab.add_argument("--seed", type=int, default=0)
    ab.add_argument("--label", default=None)
    ab.add_argument("--set-baseline", action="append", default=[], metavar="KEY=VALUE")
    ab.add_argument("--set-candidate", action="append", default=[], metavar="KEY=VALUE")
    ab.add_argument("--overlay-baseline", help="TARGET=k8s: overlay deployed before each baseline repeat")
    ab.add_argument("--overlay-candidate", help="TARGET=k8s: overlay deployed before each candidate repeat")
    s.set_defaults(fn=cmd_gate)


def run_ab(a) -> str:
    """One interleaved A/B of the two specs (sweep.ab.run_comparison, as ``inferlab ab``); its id."""
    from ..specs import resolve_spec
    from ..sweep.ab import run_comparison
    from .commands import with_observers

    base = with_observers(resolve_spec(a.subject, sets=a.set_baseline), a)
    cand = with_observers(resolve_spec(a.candidate, sets=a.set_candidate), a)
    overlays = (a.overlay_baseline, a.overlay_candidate) if a.overlay_baseline and a.overlay_candidate else None
    return run_comparison(base, cand, target=a.target, base_url=a.base_url, pairs=a.pairs, order=a.order,
                          seed=a.seed, label=a.label, overlays=overlays, primary=a.primary or "throughput")


def cmd_gate(a) -> int:
    from ..analysis.gate import gate_comparison

    if not 0 < a.alpha < 0.5:
        print(f"inferlab gate: error: --alpha {a.alpha}: expected a level between 0 and 0.5", file=sys.stderr)
        return USAGE_ERROR
    comparison = a.subject
    if a.candidate:
        comparison = run_ab(a)
        print(f"ran comparison {comparison}", flush=True)
    try:
        res = gate_comparison(comparison, a.margin, a.alpha, primary=a.primary, token_slo=not a.primary_only)
    except ValueError as exc:  # a comparison with nothing to gate: an input error
        print(f"inferlab gate: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    print("\n".join(res.report()))
    return res.exit_code
