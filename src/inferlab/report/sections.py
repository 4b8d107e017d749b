"""Report building blocks that notebooks call: markdown headers, manifest facts, tables.

The contract of every function in :mod:`inferlab.report` that a notebook calls: it returns what
it shows (Markdown, a styled table, a Figure, a line of text, or a :class:`Section` of several)
and never displays anything itself, so notebooks stay a list of calls and a test can look at
what a report shows without running a kernel. Nothing here prints secrets: manifests never hold them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pandas as pd
from IPython.display import Markdown, display



class Section:
    """A report section: what it shows, in order. A notebook cell whose last expression is a
    Section shows each part as an output of its own, in order (``_ipython_display_``), exactly
    as ``display(*parts)`` would; outside a notebook it is a list to inspect."""

    def __init__(self, *parts: Any) -> None:
        self.parts = list(parts)

    def add(self, *parts: Any) -> Section:
        self.parts.extend(parts)
        return self

    def __iter__(self) -> Iterator[Any]:
        return iter(self.parts)

    def __len__(self) -> int:
        return len(self.parts)

    def __repr__(self) -> str:
        return f"Section({', '.join(type(p).__name__ for p in self.parts)})"

    def _ipython_display_(self) -> None:
        display(*self.parts)

from ..analysis.knee import RampAnalysis
from ..analysis.summary import cell_summary, combine
from ..runs.reader import Run, load_run
from . import capacity


def run_line(run: Run) -> Markdown:
    """Which run the report is about, under the notebook's own `# title` cell (the title is printed once)."""
    m = run.manifest
    text = (f"Run `{m.run_id}` ({m.kind}, status **{run.status}**{': ' + run.reason if run.reason else ''}), "
            f"target {m.target.kind} `{m.target.base_url}`, model {m.target.model}.")
    if m.source:
        text += f"\n\nSource: {m.source}."
    return Markdown(text)


def manifest_facts(run: Run) -> pd.DataFrame:
    """Versions, hardware and engine arguments as a two-column table."""
    m = run.manifest
    gpus = ", ".join(f"{g.name} ({g.memory_total_mib:.0f} MiB, driver {g.driver})" for g in m.host.gpus) or f"none ({m.host.gpu_note})"
    facts = {
        "run_id": m.run_id, "status": run.status, "started (UTC)": m.created_at, "ended (UTC)": m.ended_at,
        "target": f"{m.target.kind} {m.target.base_url}", "model": m.target.model,
        "engine args": " ".join(m.target.engine_args) or "(server defaults / not started by inferlab)",
        "engine env": ", ".join(f"{k}={v}" for k, v in m.target.engine_env.items()) or "-",
        "engine startup (s)": m.target.startup_s, "vLLM": m.versions.vllm, "k6": m.versions.k6,
        "inferlab": f"{m.versions.inferlab} (git {(m.versions.git_sha or '-')[:10]}{' dirty' if m.versions.git_dirty else ''})",
        "python": m.versions.python, "host": f"{m.host.hostname}: {m.host.cpu_model}, {m.host.cores} cores, "
                                            f"{m.host.memory_gib or '?'} GiB, UTC{m.host.utc_offset_minutes:+d} min",
        "GPU": gpus, "client and server on one host": m.host.client_server_same_host,
        "cells": f"{sum(c.status == 'complete' for c in m.cells)}/{len(m.cells)} complete",
        "files": f"{len(m.files)} recorded with sha256",
    }
    return pd.DataFrame({"fact": list(facts), "value": [str(v) for v in facts.values()]})


def cell_status(run: Run) -> pd.DataFrame:
    cols = ["cell_id", "status", "reason", "k6_exit_code", "thresholds_passed", "warmup_requests", "probe_requests"]
    return run.cells_frame()[cols]


def data_quality_notes(run: Run) -> Markdown:
    """Lines read/used/skipped per file, partial cells, and manifest notes: nothing dropped silently."""
    dq = run.data_quality
    if "lines_read" in dq.columns:  # only line-based readers report counts (not e.g. telemetry CSVs)
        dq = dq[dq["lines_read"].notna()]
    lines = ["## Data quality"]
    if not dq.empty:
        lines.append(f"{len(dq)} files read: {int(dq['lines_read'].sum()):,} lines, "
                     f"{int(dq['lines_used'].sum()):,} used, {int(dq['lines_skipped'].sum()):,} skipped.")
        for notes in dq.get("notes", []):
            lines += [f"- {n}" for n in (notes if isinstance(notes, list) else [])]
    bad = [c for c in run.manifest.cells if c.status != "complete"]
    lines += [f"- cell `{c.cell_id}` is **{c.status}**: {c.reason}" for c in bad]
    lines += [f"- {n}" for n in run.manifest.notes]
    if len(lines) == 2 and not bad:
        lines.append("- no skipped lines, every cell complete.")
    return Markdown("\n".join(lines))


def utilization_series(run: Run) -> tuple[pd.DataFrame, str]:
    """GPU utilization (first telemetry source) or CPU % of engine/k6/system for the timeline."""
    gpu = run.gpu
    if not gpu.empty:
        src = gpu["source"].iloc[0]
        u = gpu[(gpu["source"] == src) & (gpu["metric"] == "utilization_gpu_pct")]
        return u.assign(series="GPU " + u["gpu_index"].astype(str))[["ts", "value", "series"]], "GPU utilization (%)"
    host = run.host
    if host.empty:
        return pd.DataFrame(columns=["ts", "value", "series"]), "no telemetry"
    h = host[host["metric"] == "cpu_pct"]
    return h.assign(series=h["process"])[["ts", "value", "series"]], "CPU (% of one core)"


def show(df: pd.DataFrame, precision: int = 1):
    """A table rendered without the index, numbers rounded."""
    return df.style.hide(axis="index").format(precision=precision, na_rep="-")


def headline_md(res: pd.DataFrame, what: str = "") -> Markdown:
    from ..analysis.compare import headline

    a = res.attrs
    runs = lambda ids: ", ".join(f"`{r}`" for r in ids)  # noqa: E731
    aa = f" Measured A/A beside every effect: comparison `{a['aa_comparison']}`." if a.get("aa_comparison") else ""
    return Markdown((f"{what}\n\n" if what else
                     f"**Baseline** {runs(a.get('baseline', []))} vs **tuned** {runs(a.get('tuned', []))}\n\n")
                    + "\n".join(f"- {line}" for line in headline(res).splitlines())
                    + f"\n\nMethod: the repeat is the unit (a run; `-r<n>` cells of one run are folded into one "
                      f"value); per repeat and cell each metric comes from the steady-state window (after the "
                      f"warm-up, before the drain; closed-loop throughput by Little's law: VUs x success share / "
                      f"mean latency); ratio = tuned/baseline of geometric means with a {a.get('level', 0.95):.0%} "
                      f"Welch t-interval on the logs; the interval beside each verdict is drawn at the level Holm's "
                      f"step-down gives its rank, so it excludes 1 exactly when the verdict is better or worse "
                      f"(`CI level`). A row with an INVALID repeat (analysis/validity.py) gets no verdict. The primary metric "
                      f"(`{a.get('primary')}`) carries the verdict, Holm-corrected across cells; the others are "
                      f"secondary, Holm-corrected within their family. A verdict needs 3 repeats a side and "
                      f"q < {a.get('alpha')}; a side that failed more requests is never better. The A/A spread is "
                      f"the half-width of an A/A interval at this design and the noise measured between repeats. "
                      f"Goodput SLO: e2e <= {a.get('slo_e2e_ms'):.0f} ms.{aa}")


def config_diff(a: Run, b: Run) -> pd.DataFrame:
    """Manifest facts that differ between two runs (engine args, versions, hardware...)."""
    fa, fb = manifest_facts(a).set_index("fact")["value"], manifest_facts(b).set_index("fact")["value"]
    skip = {"run_id", "started (UTC)", "ended (UTC)", "files"}
    rows = [{"fact": k, "baseline": fa[k], "tuned": fb[k]} for k in fa.index if k not in skip and fa[k] != fb[k]]
    return pd.DataFrame(rows, columns=["fact", "baseline", "tuned"])


def knee_md(ramp: RampAnalysis) -> Markdown:
    """The knee in one quotable line (or why there is none)."""
    return Markdown(ramp.sentence)


def ramp_table(ramp: RampAnalysis):
    """The ramp's windows, or a line saying the run has no ramp cell."""
    return show(ramp.windows) if ramp.cell_id is not None else "no ramp cell in this run"


def cell_table(cells: pd.DataFrame):
    """A ``cell_summary`` (one run) as a table; the run is in the title, not on every row."""
    return show(cells.drop(columns=["run_id"], errors="ignore")) if not cells.empty else "no such cells in this run"


def goodput_table(res: pd.DataFrame):
    """Goodput under the SLO per cell, from ``compare_sides`` (successful requests/s within the SLO)."""
    good = res[res["metric"].str.startswith("goodput")]
    cols = ["cell", "baseline", "tuned", "ratio", "ci_low_adj", "ci_high_adj", "q_value", "validity", "verdict"]
    return show(good[[c for c in cols if c in good.columns]], precision=2)


def repeats_table(res: pd.DataFrame):
    """Every repeat's window metrics: the values each side's interval is built from."""
    reps = res.attrs.get("repeats", pd.DataFrame())
    cols = ["side", "run_id", "cell_id", "window_requests", "window_s", "throughput", "goodput", "latency_p50",
            "latency_p95", "error_rate", "validity", "validity_reasons"]
    return show(reps[[c for c in cols if c in reps.columns]], precision=2) if not reps.empty else "no repeats"


def cells_by_config(baseline: Run | list[Run], tuned: Run | list[Run]) -> pd.DataFrame:
    """Both sides' cell summaries stacked, with ``config`` = baseline | tuned (for ``hue='config'``)."""
    one = lambda x: x if isinstance(x, list) else [x]  # noqa: E731
    return combine([cell_summary(r).assign(config=cfg) for cfg, runs in (("baseline", baseline), ("tuned", tuned))
                    for r in one(runs)])


def run_cells(run_id: str | None):
    """A sweep notebook's last cell: the run's cells and their status, or that a dry run ran nothing."""
    return load_run(run_id).cells_frame() if run_id else "dry run: nothing executed"


def capacity_md(run: Run) -> Markdown:
    """A capacity run's certified claim and boundary interval (report/capacity.py), a search cut
    short as "incomplete: no claim", a legacy record's bracket labelled as such, or that there
    is none (capacity.record_of: the run's record, or a cut run's steps re-judged)."""
    return Markdown(capacity.headline(capacity.record_of(run)))


def capacity_steps(run: Run):
    """Every decided step of a capacity search in the order it ran: n, t, the bounds and the
    decision (report/capacity.py)."""
    steps = capacity.step_table(capacity.record_of(run))
    return show(steps, precision=2) if not steps.empty else "no capacity steps"

