"""Which reports exist, the notebook behind each, and the jobs (notebook + papermill parameters +
output folder name) that ``inferlab report --runs ...`` asks for.

A job's parameters are exactly ones its notebook declares, with the type of the notebook's
default (tests/report/test_notebooks.py checks every shape of job against the notebooks).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import nbformat

from .. import paths
from ..runs.comparison import comparison_runs, is_comparison, sample_comparisons
from ..runs.reader import list_runs, load_run
from ..runs.tune_record import find_tune

NOTEBOOKS = {"load-test": "20-load-test-report", "stress": "21-stress-report", "compare": "30-compare",
             "tune": "40-tune-report"}


@dataclass
class Job:
    """One report to render: which report, the parameters papermill injects, the output folder's name."""

    report: str
    parameters: dict
    slug: str


def notebook_path(report: str) -> Path:
    return paths.install_root() / "notebooks" / f"{NOTEBOOKS[report]}.ipynb"


def section_titles(report: str) -> list[str]:
    """The report's `## ` headings in the order the notebook shows them (its table of contents)."""
    nb = nbformat.read(notebook_path(report), as_version=4)
    return [m.group(1) for cell in nb.cells if cell.cell_type == "markdown"
            for m in re.finditer(r"^##\s+(.+?)\s*$", cell.source, re.M)]


def _latest_local_run() -> str:
    runs = list_runs()
    runs = runs[runs["where"] == "runs"].sort_values("created_at")
    if runs.empty:
        raise FileNotFoundError("no run in data/runs: `make benchmark` first")
    return runs["run_id"].iloc[-1]


def jobs_for(runs: str, local_run: str | None = None) -> list[Job]:
    """RUNS=sample -> every sample report (the shipped comparison records' too); RUNS=a[,b] -> a
    report per run (+ compare when two: the first is the baseline); RUNS=<comparison_id> -> its
    compare report; RUNS=<tune_id> -> the tune report. ``local_run`` adds that run's load-test report (``latest``)."""
    jobs: list[Job] = []
    if local_run:
        rid = _latest_local_run() if local_run == "latest" else local_run
        jobs.append(_run_job(rid))
    if runs == "sample":
        sample = list_runs()
        sample = sample[(sample["where"] == "sample") & ~sample["run_id"].isin(comparison_runs(sample_comparisons()))]
        sweeps = sample[sample["kind"] == "sweep"]["run_id"].tolist()
        # beside a local run (make report): the sample's stress and capacity reports, not its sweeps
        jobs += [_run_job(r) for r, kind in zip(sample["run_id"], sample["kind"])
                 if not local_run or kind in ("stress", "capacity")]
        base = next((r for r in sweeps if "baseline" in r), None)
        tuned = next((r for r in sweeps if "tuned" in r), None)
        if base and tuned:
            jobs.append(_compare_job(base, tuned))
        jobs += [_comparison_job(c) for c in sample_comparisons()]
        return jobs
    ids = [r.strip() for r in runs.split(",") if r.strip()]
    if len(ids) == 1 and is_comparison(ids[0]):
        return [*jobs, _comparison_job(ids[0])]
    if len(ids) == 1 and is_tune(ids[0]):
        return [*jobs, tune_job(ids[0])]
    jobs += [_run_job(r) for r in ids]
    if len(ids) == 2:
        jobs.append(_compare_job(*ids))
    return jobs


def is_tune(name: str) -> bool:
    """Whether ``name`` is a tune record (data/tunes/<tune_id>/tune.json)."""
    try:
        find_tune(name)
        return True
    except FileNotFoundError:
        return False


def tune_job(tune_id: str) -> Job:
    return Job("tune", {"tune_id": tune_id}, f"tune-{tune_id}")


def _run_job(run_id: str) -> Job:
    run = load_run(run_id)
    report = "stress" if run.manifest.kind in ("stress", "capacity") else "load-test"
    return Job(report, {"run_id": run.run_id}, f"{report}-{run.run_id}")


def _compare_job(baseline: str, tuned: str) -> Job:
    b, t = load_run(baseline), load_run(tuned)
    return Job("compare", {"comparison": "", "baseline_run": b.run_id, "tuned_run": t.run_id},
               f"compare-{b.run_id}-vs-{t.run_id}")


def _comparison_job(comparison_id: str) -> Job:
    return Job("compare", {"comparison": comparison_id, "baseline_run": "", "tuned_run": ""},
               f"compare-{comparison_id}")
