"""The capacity section of the stress report: the certified claim, the boundary interval, and
the step table (n, t, the confidence bounds and the decision per step; docs/capacity.md).

A search cut short (a partial record, ``complete: false``) shows its decided steps and says
"incomplete: no claim", with why it stopped and its exploration bracket named as a bracket. A
capacity run cut before the product wrote partial records has no record at all: :func:`record_of`
re-judges its cells (read-only, analysis.capacity_steps.rejudged_record) and says so.

A record made by the legacy bracket search (``capacity.json`` without ``judge: certified``,
before issue 19) is read with its own judge and labelled as such (analysis.capacity.LEGACY_LABEL):
its bracket is shown as a bracket, and nothing is called certified."""

from __future__ import annotations

import math
import weakref

import pandas as pd

from ..analysis.capacity import LEGACY_LABEL, is_certified, is_complete
from ..analysis.step_decision import LOOK_SPREAD_CALIBRATED
from ..analysis.token_slo import e2e_bound_ms
from ..runs.reader import Run

_REJUDGED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Run -> its re-judged record (read once)

STEP_COLUMNS_FIRST = ("rate", "phase", "decision", "validity", "backlog", "cells")


def _num(x) -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.3g}"


def _rate(x) -> str:
    return "-" if x is None else f"{x:g}"


def record_of(run: Run) -> dict:
    """The capacity record a report shows: the run's own (``Run.capacity``: complete or
    partial), else, for a capacity run that did not complete and recorded none (cut before
    the product wrote partial records), its decided steps re-judged from its cells now
    (read-only; its ``source`` says so); {} for any other run."""
    rec = run.capacity
    if rec or run.manifest.kind != "capacity" or run.manifest.status == "complete":
        return rec
    from ..analysis.capacity_steps import finished_cells, rejudged_record

    if not finished_cells(run.manifest):
        return {}
    if run not in _REJUDGED:
        _REJUDGED[run] = rejudged_record(run)
    return _REJUDGED[run]


def headline(result: dict) -> str:
    """One paragraph: the certified claim, the boundary interval (named as what it is) and what
    the judge could not measure; for a search cut short, "incomplete: no claim", why, and what
    it decided; for a legacy record, its bracket and the label."""
    if not result:
        return "No capacity search in this run (`inferlab capacity SPEC` makes one)."
    if is_certified(result) and not is_complete(result):
        return _incomplete(result)
    if not is_certified(result):
        slo = result.get("slo", {})
        return (f"**Max sustainable rate {result.get('msr')} requests/s**, search bracket [{result.get('interval_low')}, "
                f"{result.get('interval_high')}] ({len(result.get('steps', []))} steps; SLO p95 e2e <= "
                f"{e2e_bound_ms(slo, float('nan')):g} ms, errors <= {slo.get('error_rate')}).\n\n"
                f"*{LEGACY_LABEL}.*\n\nMethod: {result.get('method', '')}.")
    lo, hi = result.get("interval_low"), result.get("interval_high")
    conf = f"{1 - result.get('config', {}).get('alpha', 0.05):.0%}"
    claim = result["claim"]
    lines = [f"**{CERTIFIED_WORD}: {claim}.**" if claims_a_rate(result) else f"**{claim[:1].upper() + claim[1:]}.**",
             f"Boundary (the rate where the binding bound's violating share reaches its allowed share, for this "
             f"engine as it ran): {_num(result.get('boundary'))} req/s, {conf} boundary interval [{_num(lo)}, "
             f"{_num(hi)}] ({result.get('interval_name', 'fitted')}; binding: {result.get('binding', '')}). "
             f"Independent searches on fresh engines scatter around their own boundaries.",
             f"{len(result.get('steps', []))} steps, {result.get('invalid_steps', 0)} with an INVALID segment."]
    if bad := invalid_under_claim(result):
        lines.insert(1, _invalid_note(result, bad))
    if note := spread_note(result):
        lines.append(note)
    if result.get("judged_note"):
        lines.append(f"Judged on {', '.join(result.get('judged', []))}: {result['judged_note']}.")
    lines.append(f"Method: {result.get('method', '')}.")
    return "\n\n".join(lines)


def spread_note(result: dict) -> str | None:
    """A sentence when certification steps' looks differed in speed by more than the step rule
    is calibrated for (step_decision.LOOK_SPREAD_CALIBRATED), else None."""
    cert = [s for s in result.get("steps", []) if s.get("phase") == "certify" and s.get("look spread") is not None]
    wide = [s for s in cert if s["look spread"] > LOOK_SPREAD_CALIBRATED]
    if not wide:
        return None
    top = max(s["look spread"] for s in wide)
    return (f"Looks differed in speed: {len(wide)} of {len(cert)} certification steps had a look spread (log-sd of "
            f"their looks' median e2e) above {LOOK_SPREAD_CALIBRATED:.0%}, up to {top:.1%}. The step rule's error "
            "rates are simulated for looks at one engine speed; near the boundary, looks 5 % apart in speed raised "
            "its false-pass rate from 2.6 % to 9.9 % (docs/capacity.md, \"Known limit: look-to-look speed "
            "changes\"). Median e2e overstates a speed change near saturation (queueing amplifies it). Far from "
            "the bound, with no violation, it matters little.")


def _incomplete(result: dict) -> str:
    """The headline of a partial record: no claim, why it stopped, what it decided."""
    steps = result.get("steps", [])
    explore = sum(s.get("phase") == "explore" for s in steps)
    stopped = result["claim"].removeprefix("no claim: ")
    lines = [f"**Incomplete: no claim.** {stopped[:1].upper() + stopped[1:]}.",
             f"Decided: {len(steps)} steps ({explore} exploration, {result.get('cert_steps_decided', 0)} of "
             f"{result.get('cert_steps_planned', '?')} planned certification), "
             f"{result.get('invalid_steps', 0)} with an INVALID segment; the table below shows each."]
    o = result.get("open_step")
    if o:
        lines.append(f"Stopped inside step {o['step']} ({o['phase']} at {o['rate']:g} req/s): {o['looks_done']} of "
                     f"{o['looks_planned']} looks finished" + (f", cut in cell {o['running']}" if o.get("running") else "")
                     + "; not decided, not in the table.")
    under, over = result.get("explore_bracket") or (None, None)
    if under is not None or over is not None:
        lines.append(f"Exploration bracket [{_rate(under)}, {_rate(over)}] req/s: where the point estimates turned "
                     "over, a search bracket, not a confidence interval.")
    if result.get("prefix_note"):
        lines.append(result["prefix_note"][0].upper() + result["prefix_note"][1:] + ".")
    if result.get("judged_note"):
        lines.append(f"Judged on {', '.join(result.get('judged', []))}: {result['judged_note']}.")
    if note := spread_note(result):
        lines.append(note)
    if result.get("source"):
        lines.append(f"Source: {result['source']}.")
    lines.append("`inferlab capacity SPEC --resume RUN_ID` completes the search (the decided steps are re-judged "
                 "from their cells, not run again) and records the claim.")
    return "\n\n".join(lines)


CERTIFIED_WORD = "Certified"  # the one word both front pages lead a certified claim with


def claims_a_rate(result: dict) -> bool:
    """Whether a certified search's record claims a rate (its lowest certification step passed)."""
    return result.get("certified_rate") is not None


def _steps(n: int, kind: str) -> str:
    """``n`` steps of ``kind``, counted: "1 certification step", "2 certification steps"."""
    return f"{n} {kind} step{'s' if n != 1 else ''}"


def steps_under_claim(result: dict) -> list[dict]:
    """The certification steps the certified claim rests on: those at or below it (all passed,
    by fixed-sequence testing); [] without a claim."""
    rate = result.get("certified_rate")
    if rate is None:
        return []
    return [s for s in result.get("steps", []) if s.get("phase") == "certify" and s["rate"] <= rate + 1e-9]


def invalid_under_claim(result: dict) -> list[dict]:
    """The steps of :func:`steps_under_claim` that hold an INVALID look (segment): a claim from
    INVALID data is stated, but never quietly."""
    return [s for s in steps_under_claim(result) if s.get("validity") == "INVALID"]


def _invalid_count(result: dict, bad: list[dict], rests_on: str) -> str:
    """"2 of the 3 certification steps {rests_on} hold an INVALID look": the INVALID ones among
    those under the claim, the verb agreeing with their count."""
    return (f"{len(bad)} of the {_steps(len(steps_under_claim(result)), 'certification')} {rests_on} "
            f"{'holds' if len(bad) == 1 else 'hold'} an INVALID look")


def _invalid_note(result: dict, bad: list[dict]) -> str:
    checks = sorted({r.split(":", 1)[0] for s in bad for r in str(s.get("validity_reasons", "")).split("; ") if r})
    rates = ", ".join(format(s["rate"], "g") for s in bad)
    return (f"**{_invalid_count(result, bad, 'the claim rests on')}** ({rates} req/s; "
            f"checks: {', '.join(checks)}): the step table's validity reasons say why; read them before "
            "defending the number.")


def front_line(result: dict) -> str:
    """The stress report's first-page sentence: the certified claim, a search cut short as
    "incomplete: no claim", or a legacy record's bracket labelled as such."""
    if not result:
        return "No capacity search in this run."
    if is_certified(result) and not is_complete(result):
        return (f"Capacity search **incomplete: no claim** ({result['claim'].removeprefix('no claim: ')}; "
                f"{len(result.get('steps', []))} decided steps in the capacity section).")
    if is_certified(result):
        what = f"{CERTIFIED_WORD} capacity" if claims_a_rate(result) else "Capacity search complete"
        bad = invalid_under_claim(result)
        return (f"{what}: **{result['claim']}** (boundary interval [{result['interval_low']:.3g}, "
                f"{result['interval_high']:.3g}] req/s, {len(result['steps'])} steps)."
                + (f" {_invalid_count(result, bad, 'it rests on')}." if bad else ""))
    return (f"Max sustainable rate **{result['msr']} requests/s** (search bracket [{result['interval_low']}, "
            f"{result['interval_high']}], {len(result['steps'])} steps; legacy bracket judge, not certified).")


def step_table(result: dict) -> pd.DataFrame:
    """Every step in the order it ran: rate, phase, decision, validity, backlog, then per SLO
    bound n, t, the confidence bounds on its violating share and its variance inflation (``D``),
    and the decision's words.
    A legacy record: its own columns (rate, passed, reason, achieved, p95_ms, ...)."""
    steps = pd.DataFrame(result.get("steps", []))
    if steps.empty or not is_certified(result):
        return steps
    if "cells" in steps.columns:
        steps["cells"] = steps["cells"].map(lambda c: ", ".join(c) if isinstance(c, list) else c)
    if "inflation" in steps.columns:  # per bound: the variance inflation D the step's bounds used
        d = pd.DataFrame([x if isinstance(x, dict) else {} for x in steps.pop("inflation")], index=steps.index)
        steps = steps.join(d.add_prefix("D "))
    first = [c for c in STEP_COLUMNS_FIRST if c in steps.columns]
    rest = [c for c in steps.columns if c not in first and c not in ("reason", "validity_reasons")]
    tail = [c for c in ("reason", "validity_reasons") if c in steps.columns]
    return steps[first + rest + tail]
