"""The import graph of ``src/inferlab`` (every import, lazy ones inside functions included):
no cycles, and the directions the README promises."""

from __future__ import annotations

import ast
import graphlib
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "inferlab"


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
                (own if a.name.startswith("inferlab") else other).add(
                    _resolve(a.name, None) or a.name if a.name.startswith("inferlab") else a.name.split(".")[0])
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


GRAPH = {m: imports_of(m)[0] for m in MODULES}


def reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in GRAPH[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _in(module: str, *packages: str) -> bool:
    return any(module == f"inferlab.{p}" or module.startswith(f"inferlab.{p}.") for p in packages)


def test_no_import_cycles():
    # package __init__ modules that only re-export their own submodules would show as trivial
    # cycles (pkg -> pkg.mod -> pkg via `from .. import`); none of ours imports its parent package
    try:
        tuple(graphlib.TopologicalSorter(GRAPH).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


@pytest.mark.parametrize(("stage", "forbidden"), [
    ("ingest", ("load", "targets", "sweep")),
    ("analysis", ("load", "targets", "sweep")),
    ("report", ("load", "targets", "sweep")),  # a report never starts an engine or a sweep
    ("platform", ("load", "targets", "sweep")),
    ("runs", ("load", "targets", "sweep", "analysis", "report")),
    ("specs", tuple(p.name for p in PKG.iterdir() if p.is_dir() and p.name not in ("specs", "__pycache__"))),
])
def test_stage_directions(stage, forbidden):
    bad = sorted(f"{m} -> {r}" for m in MODULES if _in(m, stage) for r in reachable(m) if _in(r, *forbidden))
    assert not bad, bad


def test_spec_models_are_a_leaf():
    """Spec models import only each other (specs/*), pydantic, yaml and the standard library."""
    for mod in (m for m in MODULES if _in(m, "specs")):
        own, other = imports_of(mod)
        assert all(_in(r, "specs") for r in own), (mod, own)
        assert other <= {"pydantic", "yaml", "__future__"} | set(sys.stdlib_module_names), (mod, other)


def test_k8s_target_needs_no_dev_package():
    """--target k8s and deploy must not need a dev-only extra (kubernetes_validate is one)."""
    for start in ("inferlab.targets.k8s", "inferlab.targets.open", "inferlab.sweep.runner", "inferlab.platform.deploy"):
        for m in {start} | reachable(start):
            assert "kubernetes_validate" not in imports_of(m)[1], f"{start} reaches {m}, which imports kubernetes_validate"


def test_checker_sees_a_cycle():
    """The cycle check is not vacuous: a two-module cycle in a copy of the graph is reported."""
    g = {k: set(v) for k, v in GRAPH.items()}
    g["inferlab.specs.models"].add("inferlab.runs.manifest")
    with pytest.raises(graphlib.CycleError):
        tuple(graphlib.TopologicalSorter(g).static_order())
