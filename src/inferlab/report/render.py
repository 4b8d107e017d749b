"""Headless reports: papermill executes a notebook into reports/<report>-<run_id>/, nbconvert
renders self-contained HTML (code hidden, figures embedded, no external URLs), and Debian's
Chromium prints that HTML to an A4 PDF (print rules: PRINT_CSS). Without Chromium the HTML still
renders and we say why.

The executed .ipynb is kept beside the HTML (papermill stores the parameters in its metadata);
it is the record. Every output is scanned for known secret values before it is kept.
"""

from __future__ import annotations

import base64
import copy
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import papermill as pm
from nbconvert import HTMLExporter
from traitlets.config import Config

from .. import paths
from ..runs.comparison import comparison_runs, is_comparison, sample_comparisons
from ..runs.reader import list_runs, load_run
from ..runs.tune_record import find_tune
from ..credentials import known_secret_values
from ..offline import CHROMIUM_FLAGS

NOTEBOOKS = {"load-test": "20-load-test-report", "stress": "21-stress-report", "compare": "30-compare",
             "tune": "40-tune-report"}
EXTERNAL = re.compile(r"<(script|link)\b[^>]*\b(src|href)=[\"']https?://[^>]*>(\s*</script>)?", re.I)


@dataclass
class Job:
    report: str
    parameters: dict
    slug: str


def notebook_path(report: str) -> Path:
    root = paths.install_root() / "notebooks"
    return root / f"{NOTEBOOKS[report]}.ipynb"


# Printing (Chromium --print-to-pdf) on A4. The lab template puts an output wider than the page
# behind a scroll bar (`.jp-OutputArea-output { overflow: auto }`), which a PDF cuts off. In print
# nothing scrolls: tables take the page width in small type (headers wrap at `_`, short values never
# wrap); a cell whose table or figure is too wide for a portrait page is printed on a landscape page
# (with the markdown cell just before it, its heading), a table too wide even for that in smaller
# type, and no figure is scaled below MIN_FIGURE_SCALE. The screen view is the template's.
PAGE_MARGIN_MM = 10
PRINTABLE_MM = {"portrait": 210 - 2 * PAGE_MARGIN_MM, "landscape": 297 - 2 * PAGE_MARGIN_MM}
TABLE_PT = 7.5  # table type size in print
MIN_TABLE_PT = 5.0
CHAR_EM = 0.66  # a conservative mean advance (DejaVu Sans digits are 0.64 em, bold letters ~0.7)
CELL_PAD_EM = 1.0  # horizontal padding of a cell (2 x 0.5 em) plus slack
NOWRAP_CHARS = 12  # a one-word value up to this long (`short-c16`, `-1.25`) stays on one line
MIN_FIGURE_SCALE = 0.6  # figures are drawn at 90 dpi with ~11 pt text: >= 60 % keeps it >= ~6 pt
CSS_PX_PER_MM = 96 / 25.4
WIDE = "inferlab-wide"  # cell tag (nbconvert adds class celltag_<tag>) and @page name
PRINT_CSS = f"""
@page {{ size: A4 portrait; margin: {PAGE_MARGIN_MM}mm; }}
@page {WIDE} {{ size: A4 landscape; margin: {PAGE_MARGIN_MM}mm; }}
@media print {{
  body.jp-Notebook {{ padding: 0 !important; overflow: visible !important; }}
  .jp-Cell {{ padding: 2px 0 !important; }}
  .celltag_{WIDE} {{ page: {WIDE}; }}
  .jp-MarkdownCell, h1, h2, h3 {{ break-after: avoid-page; }}
  .jp-OutputArea, .jp-OutputArea-child, .jp-OutputArea-output, .jp-RenderedHTMLCommon, .jp-RenderedImage {{
    overflow: visible !important; }}
  .jp-OutputArea-child, .jp-OutputArea-output {{ display: block !important; width: auto !important; }}
  .jp-RenderedHTMLCommon table {{
    table-layout: auto !important; width: auto !important; max-width: 100% !important;
    font-size: var(--inferlab-print-pt, {TABLE_PT}pt); margin: 0 0 0.8em 0 !important; }}
  .jp-RenderedHTMLCommon th, .jp-RenderedHTMLCommon td {{
    padding: 0.2em 0.5em !important; white-space: normal !important; overflow-wrap: break-word; }}
  .jp-RenderedHTMLCommon .inferlab-nowrap {{ white-space: nowrap !important; }}
  .jp-RenderedHTMLCommon thead {{ display: table-header-group; }}
  .jp-RenderedHTMLCommon tr {{ break-inside: avoid; }}
  .jp-RenderedImage img, .jp-RenderedHTMLCommon img {{ max-width: 100% !important; height: auto !important; }}
}}
"""
_CELL = re.compile(r"(<t[hd]\b[^>]*>)([^<]*)(</t[hd]>)")
_THEAD = re.compile(r"<thead\b.*?</thead>", re.S)


class _Rows(HTMLParser):
    """The rows of a table (or of its <thead>) as lists of cell texts."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("th", "td"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("th", "td") and self._cell is not None:
            if not self.rows:
                self.rows.append([])
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _keep_whole(text: str) -> bool:
    return len(text) <= NOWRAP_CHARS and not re.search(r"\s", text)


def _table_pt(table: str) -> float:
    """Narrowest width (pt, at TABLE_PT) the table prints at: per column its longest word that
    cannot wrap (a header wraps at spaces, `-`, `/` and `_`; a value at spaces, `-` and `/`, unless
    it is kept whole), plus padding."""
    head = _THEAD.search(table)
    head_rows = len(_Rows(head.group(0)).rows) if head else 0
    widths: dict[int, int] = {}
    for r, row in enumerate(_Rows(table).rows):
        for i, text in enumerate(row):
            if r < head_rows:
                words = re.split(r"[\s/]+|(?<=[-_])", text)
            else:
                words = [text] if _keep_whole(text) else re.split(r"[\s/]+|(?<=-)", text)
            widths[i] = max(widths.get(i, 0), *(len(w) for w in words))
    return sum(w * CHAR_EM + CELL_PAD_EM for w in widths.values()) * TABLE_PT


def _header_cell(m: re.Match) -> str:
    return m.group(1) + m.group(2).replace("_", "_<wbr>") + m.group(3)


def header_wrap_points(html: str) -> str:
    """`<wbr>` after each `_` of a table header, for the printed copy only: a snake_case header may
    wrap there (and is still one word in the PDF's text); the kept HTML keeps its text as it is."""
    return _THEAD.sub(lambda m: _CELL.sub(_header_cell, m.group(0)), html)


def _value_cell(m: re.Match) -> str:
    tag, text, end = m.groups()
    if not _keep_whole(text.strip()):
        return m.group(0)
    if 'class="' in tag:
        return tag.replace('class="', 'class="inferlab-nowrap ', 1) + text + end
    return tag[:-1] + ' class="inferlab-nowrap">' + text + end


def _fit_table(table: str) -> tuple[str, bool]:
    """The table with short values kept whole, and whether it needs a landscape page (there in type
    small enough to fit, down to MIN_TABLE_PT, when even that page is too narrow at TABLE_PT). Headers
    are measured as wrapping at `_` (print_pdf adds those wrap points)."""
    need = _table_pt(table)
    head = _THEAD.search(table)
    a, b = head.span() if head else (0, 0)
    table = _CELL.sub(_value_cell, table[:a]) + table[a:b] + _CELL.sub(_value_cell, table[b:])
    page = {k: mm / 25.4 * 72 for k, mm in PRINTABLE_MM.items()}
    if need <= page["portrait"]:
        return table, False
    size = max(MIN_TABLE_PT, TABLE_PT * min(1.0, page["landscape"] / need))
    if size < TABLE_PT:  # a custom property: the screen view keeps its type size
        prop = f"--inferlab-print-pt: {size:.1f}pt;"
        opening = re.match(r"<table\b[^>]*>", table).group(0)
        style = re.sub(r'\bstyle="', f'style="{prop} ', opening, count=1) if 'style="' in opening else \
            opening[:-1] + f' style="{prop}">'
        table = style + table[len(opening):]
    return table, True


def _fit_html(html: str) -> tuple[str, bool]:
    wide = False

    def fit(m: re.Match) -> str:
        nonlocal wide
        table, w = _fit_table(m.group(0))
        wide |= w
        return table

    return re.sub(r"<table\b.*?</table>", fit, html, flags=re.S), wide


def _png_width(b64: str) -> int:
    head = base64.b64decode(b64.strip()[:32])
    return struct.unpack(">I", head[16:20])[0] if head[12:16] == b"IHDR" else 0


def printable(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of the executed notebook laid out for A4 (see PRINT_CSS); the record is not touched."""
    nb = copy.deepcopy(nb)
    portrait_px = PRINTABLE_MM["portrait"] * CSS_PX_PER_MM
    for i, cell in enumerate(nb.cells):
        wide = False
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "text/html" in data:
                data["text/html"], w = _fit_html(data["text/html"])
                wide |= w
            if "image/png" in data:
                wide |= _png_width(data["image/png"]) * MIN_FIGURE_SCALE > portrait_px
        if wide:
            heading = [nb.cells[i - 1]] if i and nb.cells[i - 1].cell_type == "markdown" else []
            for c in [*heading, cell]:
                c.metadata["tags"] = [*c.metadata.get("tags", []), WIDE]
    return nb


def notebook_title(nb: nbformat.NotebookNode) -> str | None:
    """The first markdown `# heading`: the report's title."""
    for cell in nb.cells:
        m = re.search(r"^#\s+(.+?)\s*$", cell.source, re.M) if cell.cell_type == "markdown" else None
        if m:
            return m.group(1)
    return None


def self_contained_html(executed: Path) -> str:
    exporter = HTMLExporter(template_name="lab")
    exporter.exclude_input = True
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    nb = nbformat.read(executed, as_version=4)
    # <title> (the PDF's Title too) is the report's heading, not the template's "Notebook"
    resources = {"metadata": {"name": notebook_title(nb) or executed.stem}}
    html, _ = exporter.from_notebook_node(printable(nb), resources=resources)
    # The lab template links MathJax/require.js from a CDN; reports have no math and no
    # widgets, so drop every external asset: the file must open offline.
    html = EXTERNAL.sub("", html)
    return html.replace("</head>", f'<style type="text/css">{PRINT_CSS}</style>\n</head>', 1)


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def print_pdf(html: Path, pdf: Path) -> str | None:
    """HTML -> PDF (A4, see PRINT_CSS) with headless Chromium; returns why not, or None on success.
    Chromium prints a copy with the headers' wrap points; the HTML is self-contained, so the copy
    can live elsewhere."""
    browser = chromium()
    if not browser:
        return "no PDF: Chromium not found (`make system-deps` or apt-get install chromium)"
    with tempfile.TemporaryDirectory() as profile, tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / html.name
        page.write_text(header_wrap_points(html.read_text()))
        argv = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--no-pdf-header-footer",
                f"--print-to-pdf={pdf}", page.as_uri()]
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
    compare report; RUNS=<tune_id> -> the tune report. ``local_run`` adds that run's load-test report (``latest``)."""
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
    return Job("compare", {"comparison": comparison_id, "baseline_run": "", "tuned_run": ""}, f"compare-{comparison_id}")


def render_all(runs: str = "sample", pdf: bool = True, local_run: str | None = None) -> list[Path]:
    made = []
    for job in jobs_for(runs, local_run):
        made += render(job, pdf)
    return made
