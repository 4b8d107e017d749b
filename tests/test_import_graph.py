"""The import graph of ``src/inferlab`` (every import, lazy ones inside functions included)
against THE table of layers in docs/architecture.md, parsed here: every module is in one layer,
every import is one its layer's row allows, and there are no cycles."""

from __future__ import annotations

import ast
import graphlib
import itertools
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "inferlab"
DOC = ROOT / "docs" / "architecture.md"
HEADING = "## The table of layers"
VERSION = "inferlab.__version__"  # the constant in inferlab/__init__.py: a helper, unlike the package root


def _modules() -> dict[str, Path]:
    out = {}
    for f in PKG.rglob("*.py"):
        parts = ["inferlab", *f.relative_to(PKG).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


MODULES = _modules()


def _resolve(base: str, name: str | None) -> str | None:
    """The inferlab module an import names: ``X.name`` when that is a module, else ``X``."""
    if base == "inferlab" and name == "__version__":
        return VERSION
    if name and f"{base}.{name}" in MODULES:
        return f"{base}.{name}"
    return base if base in MODULES else None


def imports_of(module: str) -> tuple[set[str], set[str]]:
    """(inferlab modules, top-level third-party/stdlib packages) that ``module`` imports."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    own, other = set(), set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("inferlab"):
                    own.add(_resolve(a.name, None) or a.name)
                else:
                    other.add(a.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if not base.startswith("inferlab"):
                other.add(base.split(".")[0])
                continue
            for a in node.names:
                target = _resolve(base, a.name)
                assert target, f"{path}: cannot resolve import of {a.name} from {base}"
                own.add(target)
    own.discard(module)
    return own, other


GRAPH = {m: imports_of(m)[0] for m in MODULES} | {VERSION: set()}


# --- the table ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Layer:
    name: str
    patterns: tuple[str, ...]  # `inferlab.x` (that module) or `inferlab.x.*` (the package and all under it)
    may_import: frozenset[str]  # other layers; a layer may always import itself


def parse_layers(text: str) -> dict[str, Layer]:
    """The rows of the one table under :data:`HEADING`: ``| layer | `modules` | may import |``.
    The last column names layers, comma-separated; ``all layers`` and ``(nothing else)`` as said."""
    after = text.split(HEADING, 1)[1].splitlines()
    start = next(i for i, line in enumerate(after) if line.startswith("|"))
    rows = [[c.strip() for c in line.strip("|").split("|")]
            for line in itertools.takewhile(lambda line: line.startswith("|"), after[start:])][2:]  # header, ---
    names = frozenset(name for name, _, _ in rows)
    return {name: Layer(name, tuple(re.findall(r"`([^`]+)`", modules)), _allowed(cell, names))
            for name, modules, cell in rows}


def _allowed(cell: str, names: frozenset[str]) -> frozenset[str]:
    if cell == "all layers":
        return names
    return frozenset() if cell == "(nothing else)" else frozenset(a.strip() for a in cell.split(","))


LAYERS = parse_layers(DOC.read_text())


def _matches(pattern: str, module: str) -> bool:
    return module == pattern.removesuffix(".*") or (pattern.endswith(".*") and module.startswith(pattern[:-1]))


def layer_of(module: str, layers: dict[str, Layer]) -> list[str]:
    return [la.name for la in layers.values() for p in la.patterns if _matches(p, module)]


def unassigned(graph: dict[str, set[str]], layers: dict[str, Layer]) -> list[str]:
    """One message per module in no layer (or in two)."""
    out = []
    for m in sorted(graph):
        where = layer_of(m, layers)
        if len(where) != 1:
            found = "no layer" if not where else "layers " + ", ".join(where)
            out.append(f"{m} is in {found} of {DOC.relative_to(ROOT)}: give it one row entry there")
    return out


def forbidden_edges(graph: dict[str, set[str]], layers: dict[str, Layer]) -> list[str]:
    """One message per import its layer's row does not allow (modules in no layer are skipped:
    :func:`unassigned` names them)."""
    out = []
    for m, deps in sorted(graph.items()):
        src = layer_of(m, layers)
        for d in sorted(deps):
            dst = layer_of(d, layers)
            if len(src) == 1 and len(dst) == 1 and dst[0] != src[0] and dst[0] not in layers[src[0]].may_import:
                out.append(f"{m} ({src[0]}) imports {d} ({dst[0]}): {src[0]} may import "
                           f"{', '.join(sorted(layers[src[0]].may_import)) or 'nothing else'}")
    return out


def test_the_table_parses():
    assert {"helpers", "specs", "runs", "ingest", "analysis", "report", "sweep", "top"} <= set(LAYERS)
    assert LAYERS["sweep"].may_import >= {"targets", "load", "probe", "telemetry", "runs"}
    assert LAYERS["top"].may_import == frozenset(LAYERS) and not LAYERS["specs"].may_import
    for la in LAYERS.values():
        assert la.patterns and la.may_import <= set(LAYERS), la


def test_every_module_is_in_one_layer():
    bad = unassigned(GRAPH, LAYERS)
    assert not bad, "\n".join(bad)


def test_every_table_entry_names_a_module():
    stale = [p for la in LAYERS.values() for p in la.patterns if not any(_matches(p, m) for m in GRAPH)]
    assert not stale, f"{DOC.relative_to(ROOT)} names modules that do not exist: {stale}"


def test_every_import_is_allowed_by_the_table():
    bad = forbidden_edges(GRAPH, LAYERS)
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    # package __init__ modules that only re-export their own submodules would show as trivial
    # cycles (pkg -> pkg.mod -> pkg via `from .. import`); none of ours imports its parent package
    try:
        tuple(graphlib.TopologicalSorter(GRAPH).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


# --- the checkers are not vacuous --------------------------------------------------------------

def test_checker_flags_a_forbidden_edge():
    g = {k: set(v) for k, v in GRAPH.items()}
    g["inferlab.runs.store"].add("inferlab.sweep.runner")  # the record reaching up into the orchestrator
    g["inferlab.targets.k8s"].add("inferlab.load.incluster")  # a write-side stage importing a sibling
    new = sorted(set(forbidden_edges(g, LAYERS)) - set(forbidden_edges(GRAPH, LAYERS)))
    assert [m.partition(": ")[0] for m in new] == [
        "inferlab.runs.store (runs) imports inferlab.sweep.runner (sweep)",
        "inferlab.targets.k8s (targets) imports inferlab.load.incluster (load)",
    ]
    assert all(": runs may import " in m or ": targets may import " in m for m in new), new


def test_checker_flags_an_unassigned_module():
    g = {**GRAPH, "inferlab.newthing": set()}
    assert sorted(set(unassigned(g, LAYERS)) - set(unassigned(GRAPH, LAYERS))) == [
        "inferlab.newthing is in no layer of docs/architecture.md: give it one row entry there"]


def test_checker_sees_a_cycle():
    """The cycle check is not vacuous: a two-module cycle in a copy of the graph is reported."""
    g = {k: set(v) for k, v in GRAPH.items()}
    g["inferlab.specs.models"].add("inferlab.runs.manifest")
    with pytest.raises(graphlib.CycleError):
        tuple(graphlib.TopologicalSorter(g).static_order())


# --- dependencies outside inferlab -------------------------------------------------------------

def _in(module: str, *packages: str) -> bool:
    return any(module == f"inferlab.{p}" or module.startswith(f"inferlab.{p}.") for p in packages)


def reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in GRAPH[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_spec_models_are_a_leaf():
    """Spec models import only each other (specs/*), pydantic, yaml and the standard library."""
    for mod in (m for m in MODULES if _in(m, "specs")):
        own, other = imports_of(mod)
        assert all(_in(r, "specs") for r in own), (mod, own)
        assert other <= {"pydantic", "yaml", "__future__"} | set(sys.stdlib_module_names), (mod, other)


def test_k8s_target_needs_no_dev_package():
    """--target k8s and deploy must not need a dev-only extra (kubernetes_validate is one)."""
    for start in ("inferlab.targets.k8s", "inferlab.targets.open", "inferlab.sweep.runner", "inferlab.platform.deploy"):
        for m in {start} | reachable(start) - {VERSION}:
            assert "kubernetes_validate" not in imports_of(m)[1], \
                f"{start} reaches {m}, which imports kubernetes_validate"
