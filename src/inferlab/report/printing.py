"""Fitting an executed report notebook for reading and print: self-contained HTML (code hidden,
figures embedded, no external URLs) with print rules for A4 (PRINT_CSS), and a PDF printed from
that HTML by headless Chromium. The executed notebook (the record) is never changed: the layout
works on a copy.
"""

from __future__ import annotations

import base64
import copy
import re
import struct
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter

from ..offline import CHROMIUM_FLAGS
from ..tools import ToolNotFound, find_tool

EXTERNAL = re.compile(r"<(script|link)\b[^>]*\b(src|href)=[\"']https?://[^>]*>(\s*</script>)?", re.I)

# Printing (Chromium --print-to-pdf) on A4. The lab template puts an output wider than the page
# behind a scroll bar (`.jp-OutputArea-output { overflow: auto }`), which a PDF cuts off. In print
# nothing scrolls: tables take the page width in small type (headers wrap at `_`, short values never
# wrap); a cell whose table or figure is too wide for a portrait page is printed on a landscape page
# (with the markdown cell just before it, its heading), a table too wide even for that in smaller
# type, and no figure is scaled below MIN_FIGURE_SCALE. A report's front page (FRONT) fills the
# first page in compact type and the body starts on the next. The screen view is the template's.
PAGE_MARGIN_MM = 10
PRINTABLE_MM = {"portrait": 210 - 2 * PAGE_MARGIN_MM, "landscape": 297 - 2 * PAGE_MARGIN_MM}
TABLE_PT = 7.5  # table type size in print
MIN_TABLE_PT = 5.0
FRONT_TABLE_PT = 7.0  # a front page's tables: one page holds what ran, ~16 cells and the verdicts
CHAR_EM = 0.66  # a conservative mean advance (DejaVu Sans digits are 0.64 em, bold letters ~0.7)
CELL_PAD_EM = 1.0  # horizontal padding of a cell (2 x 0.5 em) plus slack
NOWRAP_CHARS = 12  # a one-word value up to this long (`short-c16`, `-1.25`) stays on one line
MIN_FIGURE_SCALE = 0.6  # figures are drawn at 90 dpi with ~11 pt text: >= 60 % keeps it >= ~6 pt
CSS_PX_PER_MM = 96 / 25.4
WIDE = "inferlab-wide"  # cell tag (nbconvert adds class celltag_<tag>) and @page name
FRONT = "inferlab-front"  # the class of a report's front page (report/front.py): a page of its own
PRINT_CSS = f"""
@page {{ size: A4 portrait; margin: {PAGE_MARGIN_MM}mm; }}
@page {WIDE} {{ size: A4 landscape; margin: {PAGE_MARGIN_MM}mm; }}
@media print {{
  body.jp-Notebook {{ padding: 0 !important; overflow: visible !important; }}
  .jp-Cell {{ padding: 2px 0 !important; }}
  .celltag_{WIDE} {{ page: {WIDE}; }}
  .jp-MarkdownCell, h1, h2, h3 {{ break-after: avoid-page; }}
  .{FRONT} {{ break-after: page; }}
  .jp-OutputArea-child:has(.{FRONT}) {{ break-inside: auto !important; }}  /* the lab template's avoid-page
     would move a front page taller than what is left of page 1 to page 2 */
  .{FRONT} h3 {{ font-size: 11pt !important; margin: 0.7em 0 0.3em 0 !important; }}
  .{FRONT} li, .{FRONT} p {{ font-size: 8.5pt !important; line-height: 1.3 !important; margin: 0 !important; }}
  .{FRONT} ul {{ margin: 0.2em 0 !important; }}
  .{FRONT} table {{ --inferlab-print-pt: {FRONT_TABLE_PT}pt; }}
  .{FRONT} th, .{FRONT} td {{ padding: 0.1em 0.4em !important; }}
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
    """The executed notebook as one HTML file: code hidden, figures embedded, laid out for A4 in
    print (:func:`printable`, PRINT_CSS), no external asset; titled by the report's heading."""
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


def print_pdf(html: Path, pdf: Path) -> str | None:
    """HTML -> PDF (A4, see PRINT_CSS) with headless Chromium; returns why not, or None on success.
    Chromium prints a copy with the headers' wrap points; the HTML is self-contained, so the copy
    can live elsewhere."""
    try:
        browser = find_tool("chromium")
    except ToolNotFound as exc:  # the HTML is the report; the PDF is a print of it
        return f"no PDF: {exc}"
    with tempfile.TemporaryDirectory() as profile, tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / html.name
        page.write_text(header_wrap_points(html.read_text()))
        argv = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--no-pdf-header-footer",
                f"--print-to-pdf={pdf}", page.as_uri()]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=180)
    if proc.returncode != 0 or not pdf.is_file():
        return f"no PDF: Chromium failed ({proc.returncode}): {proc.stderr[-300:]}"
    return None
