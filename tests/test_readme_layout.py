"""The README is a short front door and docs/ holds the rest: every relative link in README.md and
docs/*.md resolves (file and #anchor), every doc is reachable from the index, and docs/layout.md
names every folder and top-level module of src/inferlab and nothing that is gone.

Who may import whom is not checked here: that is docs/architecture.md's table of layers, which
tests/test_import_graph.py reads.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "inferlab"
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PAGES = [README, *sorted(DOCS.glob("*.md"))]

README_MAX_LINES = 220  # issue 18: a front door of about 200 lines
IMAGE_MAX_BYTES = 150_000  # pictures in docs/img stay small: the repository carries every version
HOURGLASS = ("sweep", "targets", "load", "probe", "telemetry", "runs", "ingest", "analysis", "report")

# [text](target) and ![alt](target), with an optional "title"; targets have no spaces
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
INLINE_CODE = re.compile(r"`[^`\n]*`")


def _prose(text: str) -> list[str]:
    """The lines outside fenced code blocks (a ``` line opens or closes one)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    """Anchors of a page's headings; a repeated heading gets -1, -2, ... as on GitHub."""
    anchors: set[str] = set()
    times: dict[str, int] = {}
    for line in _prose(page.read_text()):
        if m := re.match(r"#{1,6} (.+)", line):
            slug = _slug(m.group(1))
            n = times.get(slug, 0)
            times[slug] = n + 1
            anchors.add(f"{slug}-{n}" if n else slug)
    return anchors


def _links(page: Path) -> list[str]:
    """Relative link targets on a page (code blocks and inline code are not links)."""
    targets = []
    for line in _prose(page.read_text()):
        targets += LINK.findall(INLINE_CODE.sub("", line))
    return [t for t in targets if not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path):
    broken = []
    for target in _links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading with that anchor in {dest.relative_to(ROOT)}")
    assert not broken, broken


def test_readme_is_a_front_door():
    lines = len(README.read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail into docs/"


def test_every_doc_is_reachable_from_the_index():
    index = DOCS / "README.md"
    linked = {(index.parent / t.partition("#")[0]).resolve() for t in _links(index)}
    orphans = [p.name for p in DOCS.glob("*.md") if p != index and p.resolve() not in linked]
    assert not orphans, f"docs/README.md does not link {orphans}"


def test_pictures_stay_small():
    sizes = {p.name: p.stat().st_size for p in (DOCS / "img").iterdir()}
    big = {name: size for name, size in sizes.items() if size > IMAGE_MAX_BYTES}
    assert not big, big


def test_readme_hourglass_names_real_stages():
    text = README.read_text()
    start = text.index("## The shape: an hourglass")
    figure = text[text.index("```", start):text.index("```", text.index("```", start) + 3)]
    words = set(re.findall(r"[a-z]+", figure))
    assert set(HOURGLASS) <= words, f"the hourglass misses {sorted(set(HOURGLASS) - words)}"
    assert all((PKG / s).is_dir() for s in HOURGLASS), [s for s in HOURGLASS if not (PKG / s).is_dir()]


def _layout() -> str:
    return (DOCS / "layout.md").read_text()


def test_layout_table_matches_the_tree():
    listed = set(re.findall(r"^\| `([a-z_]+)/` \|", _layout(), re.M))
    folders = {p.name for p in PKG.iterdir() if p.is_dir() and any(p.glob("*.py"))}
    assert listed == folders, (f"docs/layout.md lists {sorted(listed - folders)} that do not exist; "
                               f"misses {sorted(folders - listed)}")


def test_modules_named_in_the_layout_exist():
    modules = set(re.findall(r"`([a-z_]+\.py)`", _layout()))
    top = {p.name for p in PKG.glob("*.py")} - {"__init__.py"}
    nested = {p.name for p in PKG.glob("*/*.py")}
    assert modules, "docs/layout.md names no modules"
    assert modules <= top | nested, sorted(modules - top - nested)
    assert top <= modules, f"top-level modules missing from docs/layout.md: {sorted(top - modules)}"
