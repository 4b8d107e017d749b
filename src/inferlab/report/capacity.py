"""The capacity section of the stress report: the certified claim, the boundary interval, and
the step table (n, t, the confidence bounds and the decision per step; docs/capacity.md).

A record made by the legacy bracket search (``capacity.json`` without ``judge: certified``,
before issue 19) is read with its own judge and labelled as such (analysis.capacity.LEGACY_LABEL):
its bracket is shown as a bracket, and nothing is called certified."""

from __future__ import annotations

import math

import pandas as pd

from ..analysis.capacity import LEGACY_LABEL, is_certified
from ..analysis.token_slo import e2e_bound_ms

STEP_COLUMNS_FIRST = ("rate", "phase", "decision", "validity", "backlog", "cells")


def _num(x) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.3g}"


def headline(result: dict) -> str:
    """One paragraph: the certified claim, the boundary interval (named as what it is) and what
    the judge could not measure; for a legacy record, its bracket and the label."""
    if not result:
        return "No capacity search in this run (`inferlab capacity SPEC` makes one)."
    if not is_certified(result):
        slo = result.get("slo", {})
        return (f"**Max sustainable rate {result.get('msr')} requests/s**, search bracket [{result.get('interval_low')}, "
                f"{result.get('interval_high')}] ({len(result.get('steps', []))} steps; SLO p95 e2e <= "
                f"{e2e_bound_ms(slo, float('nan')):g} ms, errors <= {slo.get('error_rate')}).\n\n"
                f"*{LEGACY_LABEL}.*\n\nMethod: {result.get('method', '')}.")
    lo, hi = result.get("interval_low"), result.get("interval_high")
    conf = f"{1 - result.get('config', {}).get('alpha', 0.05):.0%}"
    lines = [f"**Certified: {result['claim']}.**",
             f"Boundary (the rate where the binding bound's violating share reaches its allowed share, for this "
             f"engine as it ran): {_num(result.get('boundary'))} req/s, {conf} boundary interval [{_num(lo)}, "
             f"{_num(hi)}] ({result.get('interval_name', 'fitted')}; binding: {result.get('binding', '')}). "
             f"Independent searches on fresh engines scatter around their own boundaries.",
             f"{len(result.get('steps', []))} steps, {result.get('invalid_steps', 0)} with an INVALID segment."]
    if result.get("judged_note"):
        lines.append(f"Judged on {', '.join(result.get('judged', []))}: {result['judged_note']}.")
    lines.append(f"Method: {result.get('method', '')}.")
    return "\n\n".join(lines)


def front_line(result: dict) -> str:
    """The stress report's first-page sentence: the certified claim, or a legacy record's bracket
    labelled as such."""
    if not result:
        return "No capacity search in this run."
    if is_certified(result):
        return (f"Certified capacity: **{result['claim']}** (boundary interval [{result['interval_low']:.3g}, "
                f"{result['interval_high']:.3g}] req/s, {len(result['steps'])} steps).")
    return (f"Max sustainable rate **{result['msr']} requests/s** (search bracket [{result['interval_low']}, "
            f"{result['interval_high']}], {len(result['steps'])} steps; legacy bracket judge, not certified).")


def step_table(result: dict) -> pd.DataFrame:
    """Every step in the order it ran: rate, phase, decision, validity, backlog, then per SLO
    bound n, t and the confidence bounds on its violating share, and the decision's words.
    A legacy record: its own columns (rate, passed, reason, achieved, p95_ms, ...)."""
    steps = pd.DataFrame(result.get("steps", []))
    if steps.empty or not is_certified(result):
        return steps
    if "cells" in steps.columns:
        steps["cells"] = steps["cells"].map(lambda c: ", ".join(c) if isinstance(c, list) else c)
    first = [c for c in STEP_COLUMNS_FIRST if c in steps.columns]
    rest = [c for c in steps.columns if c not in first and c not in ("reason", "validity_reasons")]
    tail = [c for c in ("reason", "validity_reasons") if c in steps.columns]
    return steps[first + rest + tail]
