"""The first page of each report: what ran, the headline numbers, the verdicts, what to read next.

One function per report kind (``load_test``, ``stress``, ``compare``, ``tune``), each called by its
notebook right after the parameters cell and returning a :class:`FrontPage`, which holds what it
shows (tests read the numbers from it) and renders itself as HTML; in print it fills the first
page alone (PRINT_CSS breaks the page after ``.inferlab-front``).

Contract: a front page computes no number of its own. Every number is a value of a frame the
report's body shows too (``cell_summary``, ``probe_summary``, ``crosscheck``, ``verdict_table``,
``trials_table``...), passed in or made by the same function with the same arguments, so the
front page and the body cannot disagree. What it adds are selections (the headline columns,
the best cell within the SLO), counts of verdicts, and the SLO check of a cell against the SLO
the report judges by (``knee.run_slo``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from nbconvert.filters.markdown import markdown2html

from ..analysis import compare as cmp
from ..analysis.crosscheck import crosscheck
from ..analysis.knee import RampAnalysis, dropped_iterations, run_slo
from ..analysis.summary import error_breakdown, measured, probe_summary
from ..runs.reader import Run, load_run
from ..runs.tune_record import TuneRecord
from . import capacity, catalog, tune as tune_sections
from .printing import FRONT
from .sections import manifest_facts, show

FACTS = ("run_id", "status", "target", "model", "engine args", "vLLM", "host", "GPU")  # rows of manifest_facts
HEADLINE = ("cell_id", "vus", "requests", "errors", "rps", "latency_p95_ms", "probe_ttft_p50_ms",
            "validity")  # of cell_summary
WITHIN_SLO = "within SLO"
TRIAL_COLUMNS = ("trial", "changed flags", "objective", "judge", "interval", "best", "run_id")  # of tune.trials_table
# ("objective" stands for its column, named with the tune's unit: "objective (req/s)", "objective (J/token)", ...)


@dataclass(frozen=True)
class FrontPage:
    """What a report's first page shows: ``what_ran`` (fact | value, or fact | baseline | tuned),
    ``numbers`` (the headline table, columns named as in the body), ``headline`` and ``verdicts``
    (markdown lines) and ``read_next`` (the report's section titles, in order)."""

    what_ran: pd.DataFrame
    numbers: pd.DataFrame
    headline: list[str]
    verdicts: list[str]
    read_next: list[str]
    precision: int = 1
    numbers_note: str = ""

    def _repr_html_(self) -> str:
        facts = show(self.what_ran).set_properties(**{"text-align": "left"}).set_table_styles(
            [{"selector": "th", "props": [("text-align", "left")]}])  # text, not numbers
        parts = ["<h3>What ran</h3>", facts.to_html(),
                 "<h3>Headline numbers</h3>", _md(self.headline)]
        if not self.numbers.empty:
            parts += [show(self.numbers, self.precision).to_html(), _md([self.numbers_note])]
        parts += ["<h3>Verdicts</h3>", _md(self.verdicts),
                  "<h3>In this report</h3>", markdown2html(" · ".join(self.read_next))]
        return f'<div class="{FRONT}">\n' + "\n".join(parts) + "\n</div>"


def _md(lines: list[str]) -> str:
    return markdown2html("\n".join(f"- {line}" for line in lines if line))


def _what_ran(run: Run) -> pd.DataFrame:
    """The manifest facts a reader needs first (the same table the body's run manifest shows),
    the CPU's instruction-set flags that decide a CPU engine's speed, and an import's source."""
    facts = manifest_facts(run)
    facts = facts[facts["fact"].isin(FACTS)]
    flags = run.manifest.host.cpu_flags
    extra = [{"fact": "CPU flags", "value": ", ".join(flags) if flags else "not recorded"}]
    if run.manifest.source:
        extra.append({"fact": "source", "value": run.manifest.source})
    return pd.concat([facts, pd.DataFrame(extra)], ignore_index=True)


def _slo_line(p95_ms: float, error_rate: float) -> str:
    return f"SLO: p95 e2e <= {p95_ms:.0f} ms and errors <= {error_rate:.0%}."


def _cell_numbers(cells: pd.DataFrame, p95_ms: float, error_rate: float) -> pd.DataFrame:
    """The headline columns of a ``cell_summary`` (those it has) and whether each cell met the SLO."""
    if cells.empty:
        return pd.DataFrame()
    out = cells[[c for c in HEADLINE if c in cells.columns]].copy()
    out = out.dropna(axis="columns", how="all")  # e.g. no probe under load: the idle line says TTFT
    # a window too small for a p95 (fewer than 20 requests) is not judged: "too few requests", never "no";
    # nor is a cell whose measurement is INVALID (analysis/validity.py): no SLO claim from it
    invalid = cells["validity"].eq("INVALID") if "validity" in cells.columns else pd.Series(False, index=cells.index)
    out[WITHIN_SLO] = np.select(
        [invalid, cells["error_rate"] > error_rate, cells["latency_p95_ms"].isna(), cells["latency_p95_ms"] <= p95_ms],
        ["INVALID data", "no", "too few requests", "yes"], "no")
    return out


def _best_within_slo(cells: pd.DataFrame, numbers: pd.DataFrame) -> list[str]:
    """Per payload, the cell with the highest throughput among those that met the SLO."""
    if numbers.empty:
        return []
    lines = []
    ok = numbers[WITHIN_SLO] == "yes"
    for payload, idx in cells.groupby("payload", sort=False).groups.items():
        met = numbers.loc[idx][ok.loc[idx]]
        if met.empty:
            lines.append(f"`{payload}`: no cell within the SLO.")
            continue
        best = met.loc[met["rps"].idxmax()]
        vus = f" at {best['vus']:.0f} VUs" if pd.notna(best.get("vus")) else ""
        ttft = f", probe TTFT p50 {best['probe_ttft_p50_ms']:.0f} ms" if pd.notna(best.get("probe_ttft_p50_ms")) else ""
        lines.append(f"`{payload}`: highest throughput within the SLO **{best['rps']:.1f} requests/s** "
                     f"(`{best['cell_id']}`{vus}; p95 {best['latency_p95_ms']:.0f} ms{ttft}).")
    return lines


def _idle_ttft(run: Run) -> list[str]:
    """The streaming probe's TTFT on an idle server (the body's probe table, its `idle` row)."""
    probe = probe_summary(run)
    idle = probe[probe["cell_id"] == "idle"] if not probe.empty else probe
    return [f"Streaming probe on the idle server: TTFT p50 {r.ttft_p50_ms:.1f} ms, p95 {r.ttft_p95_ms:.1f} ms "
            f"({r.ok} requests)." for r in idle.itertuples()]


def _errors(run: Run) -> str:
    """Failed measured requests: the total of the body's Errors table (``error_breakdown``)."""
    failed = int(error_breakdown(run)["count"].sum())
    return f"Errors: {failed:,} of {len(measured(run)):,} measured requests failed."


def _validity_line(numbers: pd.DataFrame) -> str:
    """How many cells are VALID (``cell_summary``'s ``validity``); the INVALID ones named, loudly."""
    if "validity" not in numbers.columns:
        return ""
    bad = numbers.loc[numbers["validity"] == "INVALID", "cell_id"].tolist()
    line = f"Validity: {len(numbers) - len(bad)} of {len(numbers)} cells VALID"
    return line + (f"; **INVALID: {', '.join(f'`{c}`' for c in bad)}** (no SLO claim from them; reasons: the appendix's "
                   "validity table)." if bad else ".")


def _run_verdicts(run: Run, numbers: pd.DataFrame) -> list[str]:
    """Cells complete, k6 thresholds, the SLO per cell, the cross-check against the server's
    counters and skipped lines: each a count of what a body section shows in full."""
    m = run.manifest
    done = sum(c.status == "complete" for c in m.cells)
    reason = f": {run.reason}" if run.reason else ""
    lines = [f"Run **{run.status}**{reason}; {done} of {len(m.cells)} cells complete."]
    failed = [c.cell_id for c in m.cells if c.thresholds_passed is False]
    if failed:
        lines.append(f"k6 thresholds failed in {len(failed)} cells: " + ", ".join(f"`{c}`" for c in failed) + ".")
    if not numbers.empty:
        lines.append(f"{int((numbers[WITHIN_SLO] == 'yes').sum())} of {len(numbers)} cells within the SLO.")
        lines.append(_validity_line(numbers))
    cc = crosscheck(run)
    checked = cc[cc["agrees"].notna()] if not cc.empty else cc
    if checked.empty:
        lines.append("Measurement cross-check: nothing to check against (no server counters).")
    else:
        off = checked[checked["agrees"] == False]  # noqa: E712 (a column of True/False/None)
        lines.append(f"Measurement cross-check: {len(checked) - len(off)} of {len(checked)} client counts agree "
                     "with the server's counters" + ("." if off.empty else ": **disagree** "
                     + ", ".join(f"{r.scope} {r.check}" for r in off.itertuples()) + "."))
    dq = run.data_quality
    if "lines_skipped" in dq.columns and dq["lines_skipped"].notna().any():
        lines.append(f"Data quality: {int(dq['lines_skipped'].sum()):,} input lines skipped.")
    return lines


def load_test(run: Run, cells: pd.DataFrame) -> FrontPage:
    """The load-test report's first page; ``cells`` is the ``cell_summary`` its body shows."""
    p95_ms, error_rate = run_slo(run)  # the run's own SLO (its spec, else knee.DEFAULT_SLO)
    numbers = _cell_numbers(cells, p95_ms, error_rate)
    headline = [_slo_line(p95_ms, error_rate), *_best_within_slo(cells, numbers), *_idle_ttft(run), _errors(run)]
    verdicts = _run_verdicts(run, numbers)
    return FrontPage(_what_ran(run), numbers, headline, verdicts, catalog.section_titles("load-test"),
                     numbers_note="Per cell: throughput (rps) and latency in the steady-state window; the rest of "
                                  "each cell's columns: Results per cell and the appendix.")


def stress(run: Run, closed: pd.DataFrame, ramp: RampAnalysis) -> FrontPage:
    """The stress report's first page; ``closed`` and ``ramp`` are what its body shows
    (``knee.closed_loop(cell_summary(run))`` and ``knee.analyze_ramp(run, ...)``)."""
    numbers = _cell_numbers(closed, ramp.slo_p95_ms, ramp.slo_error_rate)  # the SLO the body's ramp is judged by
    msr = capacity.front_line(capacity.record_of(run))
    dropped = dropped_iterations(run)
    headline = [_slo_line(ramp.slo_p95_ms, ramp.slo_error_rate), msr, ramp.sentence, *_best_within_slo(closed, numbers),
                *_idle_ttft(run), _errors(run), f"Dropped iterations: {int(dropped['dropped_iterations'].sum()):,}."]
    return FrontPage(_what_ran(run), numbers, headline, _run_verdicts(run, numbers), catalog.section_titles("stress"),
                     numbers_note="Closed-loop cells (fixed VUs); the rest of each cell's columns: the appendix.")


COMPARED = ("cell", "repeats", "baseline", "tuned", cmp.RATIO, "CI level", "q", "validity", "verdict")  # of verdict_table


def _primary_rows(res: pd.DataFrame) -> pd.DataFrame:
    """The primary metric's rows of the body's ``verdict_table`` (the metric is named above it)."""
    if res.empty:
        return pd.DataFrame()
    primary = (res["role"] == "primary").to_numpy()
    rows = cmp.verdict_table(res)[primary][list(COMPARED)].copy()
    # the first page names the verdict's kind; why one is withheld is in the body's table
    rows["verdict"] = res.loc[primary, "verdict_kind"].to_numpy()
    return rows


def _compare_errors(res: pd.DataFrame) -> str:
    """Each side's error rate per cell (``compare_sides``' ``error_rate_*``), where either failed."""
    rows = res[(res["role"] == "primary") & ((res["error_rate_baseline"] > 0) | (res["error_rate_tuned"] > 0))]
    if rows.empty:
        return "Errors: no failed request on either side."
    return "Error rate (baseline, tuned): " + "; ".join(
        f"`{r.cell}` {r.error_rate_baseline:.1%}, {r.error_rate_tuned:.1%}" for r in rows.itertuples()) + "."


FRONT_HEADLINE_LINES = 2


def _compare_validity(res: pd.DataFrame) -> list[str]:
    """Validity of the repeats behind the verdicts (``compare_sides``' ``validity``), when every
    row is VALID: an INVALID row is named by the headline's first line (compare.headline)."""
    if "validity" not in res.columns or (res["validity"] == "INVALID").any():
        return []
    return ["Validity: every repeat of every compared cell is VALID."]


def _verdict_counts(rows: pd.DataFrame) -> str:
    # a withheld verdict's reasons are the body's: the first page counts kinds
    return ", ".join(f"{n} {kind}" for kind, n in rows["verdict_kind"].value_counts().items())


def compare(baseline: Sequence[Run], tuned: Sequence[Run], what: str, res: pd.DataFrame) -> FrontPage:
    """The compare report's first page; ``res`` is the ``compare_with_aa`` its body shows. What
    ran is each side's first run (the body's "What changed" lists every fact that differs)."""
    sides = {"baseline": baseline, "tuned": tuned}
    facts = pd.concat([_what_ran(rs[0]).set_index("fact")["value"].rename(side) for side, rs in sides.items()], axis=1)
    runs = pd.DataFrame([{"fact": "runs", **{side: ", ".join(r.run_id for r in rs) for side, rs in sides.items()}}])
    what_ran = pd.concat([runs, facts.drop(index=["run_id", "status"]).rename_axis("fact").reset_index()],
                         ignore_index=True).fillna("-")
    head = cmp.headline(res).splitlines()
    # the first page holds at most FRONT_HEADLINE_LINES of the headline; the rest is the body's "Headline"
    verdicts = [f"{what}.", *head[:FRONT_HEADLINE_LINES]]  # the whole headline opens the body
    if not res.empty:
        good = res[res["metric"].str.startswith("goodput")]
        primary = res[res["role"] == "primary"]
        verdicts += [f"Primary metric `{res.attrs.get('primary')}` per cell: {_verdict_counts(primary)}.",
                     f"Goodput (e2e <= {res.attrs.get('slo_e2e_ms'):.0f} ms) per cell: {_verdict_counts(good)}.",
                     *_compare_validity(res)]
    headline = [f"Tuned vs baseline on the primary metric `{res.attrs.get('primary')}`, per cell:"]
    if not res.empty:
        headline.append(_compare_errors(res))
    return FrontPage(what_ran, _primary_rows(res), headline, verdicts, catalog.section_titles("compare"), precision=3)


def tune(rec: TuneRecord) -> FrontPage:
    """The tune report's first page: the machine of its first trial run, the best and the
    baseline trial's rows of the body's ``trials_table``, the confirmation's verdict."""
    first = next((t.run_id for t in rec.trials if t.run_id), None)
    if first:
        what_ran = _what_ran(load_run(first))
        what_ran = what_ran[~what_ran["fact"].isin(["run_id", "status", "engine args"])]
    else:
        what_ran = pd.DataFrame(columns=["fact", "value"])
    what_ran = pd.concat([pd.DataFrame([
        {"fact": "tune", "value": f"{rec.tune_id} ({rec.status}{': ' + rec.reason if rec.reason else ''})"},
        {"fact": "baseline engine args", "value": " ".join(rec.baseline_args) or "(none)"},
        {"fact": "trials", "value": str(len(rec.trials))}]), what_ran], ignore_index=True)
    judged = tune_sections.judges(rec)  # each trial's run read once, for the table and the headline
    trials = tune_sections.trials_table(rec, judged)
    baseline = [t.number for t in rec.trials if t.args == rec.baseline_args and t.state == "complete"][:1]
    if not trials.empty:
        columns = [f"objective ({rec.unit})" if c == "objective" else c for c in TRIAL_COLUMNS]
        trials = trials[(trials["best"] == "*") | trials["trial"].isin(baseline)][columns]
    lines = [line for line in tune_sections.headline(rec, judged).data.split("\n\n") if line]
    return FrontPage(what_ran, trials, ["The best trial and the baseline's (all of them: Every candidate):"],
                     lines, catalog.section_titles("tune"), precision=2)
