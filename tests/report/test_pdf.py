"""Rendered PDFs (Chromium --print-to-pdf of the report HTML) are complete on A4: every column header
of every table is in the PDF's text (none lost behind a scroll bar), each report's title appears
once, its front page is page 1 alone, and every figure prints whole, inside the printable width, at
>= MIN_FIGURE_SCALE.

The sample's load-test, stress and compare reports and a tune report are rendered once for the session
(tests/conftest.py, ``rendered_reports``).
"""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

from inferlab.report import catalog, printing
from inferlab.tools import which_tool

ROOT = Path(__file__).resolve().parents[2]
POPPLER = ("pdftotext", "pdfimages", "pdfinfo")



class _Headers(HTMLParser):
    """The <th> texts in each table's <thead>, one list per table."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tables: list[list[str]] = []
        self._head = False
        self._th: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "thead":
            self._head = True
        elif tag == "th" and self._head:
            self._th = []

    def handle_endtag(self, tag):
        if tag == "thead":
            self._head = False
        elif tag == "th" and self._th is not None:
            text = " ".join("".join(self._th).split())
            if text and self.tables:
                self.tables[-1].append(text)
            self._th = None

    def handle_data(self, data):
        if self._th is not None:
            self._th.append(data)


def table_headers(executed: Path) -> list[list[str]]:
    """Column headers of every table among the executed notebook's HTML outputs (the record)."""
    tables = []
    for cell in nbformat.read(executed, as_version=4).cells:
        for out in cell.get("outputs", []):
            html = out.get("data", {}).get("text/html")
            if html:
                parser = _Headers()
                parser.feed(html)
                tables += [t for t in parser.tables if t]
    return tables


def pdf_tokens(pdf: Path) -> list[str]:
    """The PDF's words in content order (`pdftotext -raw`: a table cell's lines stay together, where
    `-layout` interleaves the wrapped headers of neighbouring columns); a line that ends in a word and
    `_` or `-` (a header or value wrapped there; not a lone `-`, a missing value) is joined to the next."""
    raw = subprocess.run(["pdftotext", "-raw", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    return re.sub(r"(?<=\w[_-])\s*\n\s*", "", raw).split()


def pdf_lines(pdf: Path) -> list[str]:
    raw = subprocess.run(["pdftotext", "-raw", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    return [" ".join(line.split()) for line in raw.splitlines()]


def contains_run(tokens: list[str], words: list[str]) -> bool:
    n = len(words)
    return any(tokens[i:i + n] == words for i in range(len(tokens) - n + 1))


def page_widths_pt(pdf: Path) -> dict[int, float]:
    info = subprocess.run(["pdfinfo", "-f", "1", "-l", "999", str(pdf)], capture_output=True, text=True, check=True)
    return {int(m[1]): float(m[2]) for m in re.finditer(r"Page\s+(\d+) size:\s+([\d.]+) x", info.stdout)}


def images(pdf: Path) -> list[dict]:
    """pdfimages -list rows: page, width (px), x-ppi."""
    out = subprocess.run(["pdfimages", "-list", str(pdf)], capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines()[2:]:
        f = line.split()
        if len(f) >= 13 and f[2] == "image":
            rows.append({"page": int(f[0]), "width": int(f[3]), "x_ppi": float(f[12])})
    return rows


@pytest.fixture(scope="module")
def reports(rendered_reports) -> dict[str, tuple[Path, Path]]:
    """report -> (executed notebook, PDF): one load-test, the stress and one compare report of the
    sample and the tune report, rendered once for the session (tests/conftest.py)."""
    if which_tool("chromium") is None:
        pytest.skip("no Chromium to print PDFs: `make system-deps` (apt-get install chromium)")
    if not all(shutil.which(t) for t in POPPLER):
        pytest.skip("no pdftotext/pdfimages/pdfinfo to read PDFs: `make system-deps` (apt-get install poppler-utils)")
    made = {}
    for report in catalog.NOTEBOOKS:
        executed, pdf = rendered_reports.file(report, ".ipynb"), rendered_reports.file(report, ".pdf")
        assert pdf, f"{report}: no PDF (see stderr)"
        made[report] = (executed, pdf)
    return made


@pytest.mark.parametrize("report", list(catalog.NOTEBOOKS))
def test_every_table_header_is_in_the_pdf(reports, report):
    executed, pdf = reports[report]
    tables = table_headers(executed)
    assert tables, f"{report}: no table found in the executed notebook"
    tokens = pdf_tokens(pdf)
    missing = [h for t in tables for h in t if not contains_run(tokens, h.split())]
    assert not missing, f"{pdf.name}: column headers not in the PDF's text: {missing}"
    for headers in tables:  # each header row whole and in order: no column cut off in between
        assert contains_run(tokens, [w for h in headers for w in h.split()]), (pdf.name, headers)


@pytest.mark.parametrize("report", list(catalog.NOTEBOOKS))
def test_the_title_appears_once(reports, report):
    executed, pdf = reports[report]
    title = printing.notebook_title(nbformat.read(executed, as_version=4))
    assert title
    printed = pdf_lines(pdf).count(title)
    assert printed == 1, f"{pdf.name}: the title {title!r} is printed {printed} times"


def pdf_page_text(pdf: Path, page: int) -> str:
    return subprocess.run(["pdftotext", "-raw", "-f", str(page), "-l", str(page), str(pdf), "-"], capture_output=True,
                          text=True, check=True).stdout


@pytest.mark.parametrize("report", list(catalog.NOTEBOOKS))
def test_the_front_page_is_the_first_page_alone(reports, report):
    """Page 1: the title and the whole front page (what ran, headline numbers, verdicts, the
    contents); the body's first section starts page 2."""
    _, pdf = reports[report]
    first, second = pdf_page_text(pdf, 1), pdf_page_text(pdf, 2)
    for part in ("What ran", "Headline numbers", "Verdicts", "In this report"):
        assert part in first and part not in second, (pdf.name, part)
    assert second.lstrip().startswith(catalog.section_titles(report)[0]), (pdf.name, second[:200])


@pytest.mark.parametrize("report", list(catalog.NOTEBOOKS))
def test_figures_print_whole_and_legible(reports, report):
    """Figures are embedded at their pixel size; x-ppi gives the printed scale (96 ppi = 100 %, a CSS px
    being 1/96 in) and width; none wider than the page's printable width (else it is cropped), none
    scaled below MIN_FIGURE_SCALE."""
    _, pdf = reports[report]
    pages = page_widths_pt(pdf)
    figures = [i for i in images(pdf) if i["width"] >= 200]
    assert figures, f"{pdf.name}: no figure"
    for img in figures:
        printed_pt = img["width"] / img["x_ppi"] * 72
        printable_pt = pages[img["page"]] - 2 * printing.PAGE_MARGIN_MM / 25.4 * 72
        assert printed_pt <= printable_pt + 1, (pdf.name, img, printed_pt, printable_pt)
        assert 96 / img["x_ppi"] >= printing.MIN_FIGURE_SCALE - 0.01, (pdf.name, img)


def _png(width: int) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, 10), "white").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_tables_and_figures_too_wide_for_portrait_go_landscape():
    """No Chromium needed: the layout decisions, on a copy of the notebook."""
    cols = [f"metric_{i}_value" for i in range(30)]
    wide = "<table><thead><tr>" + "".join(f"<th>{c}</th>" for c in cols) + "</tr></thead><tbody><tr>" + \
        "".join("<td>12345.6</td>" for _ in cols) + "</tr></tbody></table>"
    narrow = "<table><thead><tr><th>cell_id</th><th>rps</th></tr></thead><tbody><tr><td>short-c1</td>" \
             "<td>1.5</td></tr></tbody></table>"
    out = lambda data: [nbformat.v4.new_output("display_data", data)]  # noqa: E731
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Title\n\n## Wide table"),
        nbformat.v4.new_code_cell(outputs=out({"text/html": wide})),
        nbformat.v4.new_code_cell(outputs=out({"text/html": narrow})),
        nbformat.v4.new_code_cell(outputs=out({"image/png": _png(900)})),  # 80 % on a portrait page
        nbformat.v4.new_markdown_cell("## Wide figure"),
        nbformat.v4.new_code_cell(outputs=out({"image/png": _png(1500)})),  # 48 % there: landscape
    ])
    printed = printing.printable(nb)
    land = [printing.WIDE]  # printed on a landscape page
    assert [c.metadata.get("tags", []) for c in printed.cells] == [land, land, [], [], land, land]
    html = printed.cells[1].outputs[0].data["text/html"]
    assert 'style="--inferlab-print-pt: ' in html  # 30 columns: smaller type too (in print only)
    assert "metric_<wbr>0_<wbr>value" in printing.header_wrap_points(html) and "<wbr>" not in html
    assert 'class="inferlab-nowrap">short-c1<' in printed.cells[2].outputs[0].data["text/html"]
    assert "tags" not in nb.cells[1].metadata and nb.cells[1].outputs[0].data["text/html"] == wide  # a copy
    assert printing.notebook_title(nb) == "Title"
