"""Headless reports: papermill executes a report's notebook (report/catalog.py: which one, with
which parameters) into reports/<slug>/, then report/printing.py makes the self-contained HTML
and, with Chromium, the A4 PDF. Without Chromium the HTML still renders and we say why.

The executed .ipynb is kept beside the HTML (papermill stores the parameters in its metadata);
it is the record. Every output is scanned for known secret values before it is kept.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import papermill as pm
from traitlets.config import Config

from .. import paths
from ..credentials import known_secret_values
from .catalog import NOTEBOOKS, Job, jobs_for, notebook_path
from .printing import print_pdf, self_contained_html


def check_no_secrets(*files: Path) -> None:
    secrets = known_secret_values()
    for f in files:
        text = f.read_text(errors="ignore")
        for s in secrets:
            if s in text:
                f.unlink()
                raise RuntimeError(f"{f}: contains a secret value; deleted. Find what printed it.")


def render(job: Job, pdf: bool = True) -> list[Path]:
    """Execute ``job``'s notebook and print it; the files made: executed notebook, HTML (, PDF)."""
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


def render_all(runs: str = "sample", pdf: bool = True, local_run: str | None = None) -> list[Path]:
    """Every report ``jobs_for(runs, local_run)`` names, rendered; the files made."""
    made = []
    for job in jobs_for(runs, local_run):
        made += render(job, pdf)
    return made
