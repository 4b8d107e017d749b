"""The README's layout table names every stage folder of src/inferlab and nothing that is gone."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "inferlab"


def _section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"## {title}")
    return text[start:text.index("\n## ", start + 1)]


def test_layout_table_matches_the_tree():
    section = _section("Pipeline and layout")
    listed = set(re.findall(r"^\| `([a-z_]+)/` \|", section, re.M))
    folders = {p.name for p in PKG.iterdir() if p.is_dir() and any(p.glob("*.py"))}
    assert listed == folders, f"README lists {sorted(listed - folders)} that do not exist; misses {sorted(folders - listed)}"


def test_leaf_modules_named_in_the_layout_exist():
    section = _section("Pipeline and layout")
    modules = set(re.findall(r"`([a-z_]+\.py)`", section))
    top = {p.name for p in PKG.glob("*.py")} - {"__init__.py"}
    nested = {p.name for p in PKG.glob("*/*.py")}
    assert modules, "the layout names no modules"
    assert modules <= top | nested, sorted(modules - top - nested)
    assert top <= modules, f"top-level modules missing from the README: {sorted(top - modules)}"


def test_pipeline_order_names_real_stages():
    section = _section("Pipeline and layout")
    stages = re.search(r"`([a-z >-]+)`", section).group(1).split(" -> ")
    assert all((PKG / s).is_dir() for s in stages), stages
