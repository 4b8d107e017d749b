"""Headless reports: papermill executes a notebook into reports/<report>-<run_id>/, nbconvert
renders self-contained HTML (code hidden, figures embedded, no external URLs), and Debian's
Chromium prints that HTML to PDF. Without Chromium the HTML still renders and we say why.

The executed .ipynb is kept beside the HTML (papermill stores the parameters in its metadata);
it is the record. Every output is scanned for known secret values before it is kept.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nbformat
import papermill as pm
from nbconvert import HTMLExporter
from traitlets.config import Config

from .. import paths
from ..runs.comparison import comparison_runs, is_comparison, sample_comparisons
from ..runs.reader import list_runs, load_run
from ..credentials import known_secret_values
from ..offline import CHROMIUM_FLAGS

NOTEBOOKS = {"load-test": "20-load-test-report", "stress": "21-stress-report", "compare": "30-compare"}
EXTERNAL = re.compile(r"<(script|link)\b[^>]*\b(src|href)=[\"']https?://[^>]*>(\s*</script>)?", re.I)


@dataclass
class Job:
    report: str
    parameters: dict
    slug: str


def notebook_path(report: str) -> Path:
    root = paths.install_root() / "notebooks"
    return root / f"{NOTEBOOKS[report]}.ipynb"


def self_contained_html(executed: Path) -> str:
    exporter = HTMLExporter(template_name="lab")
    exporter.exclude_input = True
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    html, _ = exporter.from_notebook_node(nbformat.read(executed, as_version=4))
    # The lab template links MathJax/require.js from a CDN; reports have no math and no
    # widgets, so drop every external asset: the file must open offline.
    return EXTERNAL.sub("", html)


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def print_pdf(html: Path, pdf: Path) -> str | None:
    """HTML -> PDF with headless Chromium; returns why not, or None on success."""
    browser = chromium()
    if not browser:
        return "no PDF: Chromium not found (`make system-deps` or apt-get install chromium)"
    with tempfile.TemporaryDirectory() as profile:
        argv = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--no-pdf-header-footer", f"--print-to-pdf={pdf}", html.as_uri()]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=180)
    if proc.returncode != 0 or not pdf.is_file():
        return f"no PDF: Chromium failed ({proc.returncode}): {proc.stderr[-300:]}"
    return None


def check_no_secrets(*files: Path) -> None:
    secrets = known_secret_values()
    for f in files:
        text = f.read_text(errors="ignore")
        for s in secrets:
            if s in text:
                f.unlink()
                raise RuntimeError(f"{f}: contains a secret value; deleted. Find what printed it.")


def render(job: Job, pdf: bool = True) -> list[Path]:
    out = paths.reports_dir() / job.slug
    out.mkdir(parents=True, exist_ok=True)
    executed = out / f"{NOTEBOOKS[job.report]}.ipynb"
    # The kernel talks over Unix sockets in a private directory, not loopback TCP: no port for
    # another local user to reach the kernel (whose environment may hold the API key)
    with tempfile.TemporaryDirectory(prefix="inferlab-kernel-") as sockets:
        ipc = Config({"KernelManager": {"transport": "ipc", "ip": str(Path(sockets) / "kernel")}})
        pm.execute_notebook(str(notebook_path(job.report)), str(executed), parameters=job.parameters,
                            kernel_name="python3", cwd=str(paths.install_root() / "notebooks"), progress_bar=False,
                            log_output=False, config=ipc)
    html = out / f"{job.slug}.html"
    html.write_text(self_contained_html(executed))
    made = [executed, html]
    if pdf:
        why = print_pdf(html, out / f"{job.slug}.pdf")
        if why:
            print(f"{job.slug}: {why}", file=sys.stderr)
        else:
            made.append(out / f"{job.slug}.pdf")
    check_no_secrets(executed, html)
    return made


def _latest_local_run() -> str:
    runs = list_runs()
    runs = runs[runs["where"] == "runs"].sort_values("created_at")
    if runs.empty:
        raise FileNotFoundError("no run in data/runs: `make benchmark` first")
    return runs["run_id"].iloc[-1]


def jobs_for(runs: str, local_run: str | None = None) -> list[Job]:
    """RUNS=sample -> every sample report (the shipped comparison records' too); RUNS=a[,b] -> a
    report per run (+ compare when two: the first is the baseline); RUNS=<comparison_id> -> its
    compare report. ``local_run`` adds that run's load-test report (``latest``)."""
    jobs: list[Job] = []
    if local_run:
        rid = _latest_local_run() if local_run == "latest" else local_run
        jobs.append(_run_job(rid))
    if runs == "sample":
        sample = list_runs()
        sample = sample[(sample["where"] == "sample") & ~sample["run_id"].isin(comparison_runs(sample_comparisons()))]
        sweeps = sample[sample["kind"] == "sweep"]["run_id"].tolist()
        jobs += [_run_job(r) for r, kind in zip(sample["run_id"], sample["kind"]) if not local_run or kind == "stress"]
        base = next((r for r in sweeps if "baseline" in r), None)
        tuned = next((r for r in sweeps if "tuned" in r), None)
        if base and tuned:
            jobs.append(_compare_job(base, tuned))
        jobs += [_comparison_job(c) for c in sample_comparisons()]
        return jobs
    ids = [r.strip() for r in runs.split(",") if r.strip()]
    if len(ids) == 1 and is_comparison(ids[0]):
        return [*jobs, _comparison_job(ids[0])]
    jobs += [_run_job(r) for r in ids]
    if len(ids) == 2:
        jobs.append(_compare_job(*ids))
    return jobs


def _run_job(run_id: str) -> Job:
    run = load_run(run_id)
    report = "stress" if run.manifest.kind == "stress" else "load-test"
    return Job(report, {"run_id": run.run_id}, f"{report}-{run.run_id}")


def _compare_job(baseline: str, tuned: str) -> Job:
    b, t = load_run(baseline), load_run(tuned)
    return Job("compare", {"comparison": "", "baseline_run": b.run_id, "tuned_run": t.run_id},
               f"compare-{b.run_id}-vs-{t.run_id}")


def _comparison_job(comparison_id: str) -> Job:
    return Job("compare", {"comparison": comparison_id, "baseline_run": "", "tuned_run": ""}, f"compare-{comparison_id}")


def render_all(runs: str = "sample", pdf: bool = True, local_run: str | None = None) -> list[Path]:
    made = []
    for job in jobs_for(runs, local_run):
        made += render(job, pdf)
    return made
