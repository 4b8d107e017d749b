"""The suite's tiers as make test runs them (Makefile ``test``, docs/testing.md "Tiers"): the
tests that only compute (marker ``background``: every test under tests/analysis/) run at idle CPU
priority beside the engine session, so none of them may start a process, open a connection or
judge wall-clock time; and the marker reaches exactly those tests."""

from __future__ import annotations

import ast
import subprocess
import sys

from .conftest import COMPUTE_ONLY, ROOT

#: What a compute-only test module may not import: child processes, servers, the engine, load
#: generation, network clients, and the drivers that start them (sweep/ab's width rule is pure).
FORBIDDEN = ("subprocess", "socket", "httpx", "requests", "websocket", "multiprocessing", "threading",
             "concurrent", "inferlab.procs", "inferlab.standin", "inferlab.targets", "inferlab.load",
             "inferlab.probe", "inferlab.telemetry", "inferlab.cli", "inferlab.ui", "tests.e2e")
ALLOWED_FROM_DRIVERS = {("inferlab.sweep.ab", "width_reached")}
#: wall-clock calls that would make a result depend on the machine's speed
CLOCKS = {("time", "sleep"), ("time", "monotonic"), ("time", "time"), ("time", "perf_counter")}


def _imports(tree: ast.Module) -> list[tuple[str, str]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, "") for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out += [(node.module, a.name) for a in node.names]
    return out


def test_compute_only_tests_start_nothing_and_read_no_clock():
    found = []
    for path in sorted(COMPUTE_ONLY.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for module, name in _imports(tree):
            if (module, name) in ALLOWED_FROM_DRIVERS:
                continue
            if module.startswith(("inferlab.sweep", "inferlab.runs.writer")) or \
                    any(module == f or module.startswith(f + ".") for f in FORBIDDEN):
                found.append(f"{path.name}: imports {module}{'.' + name if name else ''}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                    (node.value.id, node.attr) in CLOCKS:
                found.append(f"{path.name}:{node.lineno}: {node.value.id}.{node.attr}")
    assert found == [], "\n".join(found)


def test_the_background_marker_is_exactly_the_compute_only_folder():
    """Collected as make test collects: ``-m background`` selects every test under
    tests/analysis/ and none beside it (here: tests/test_cli.py's); no module marks itself."""
    def collected(*args: str) -> set[str]:
        out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                              "-p", "no:xdist", *args], cwd=ROOT, capture_output=True, text=True).stdout
        return {line for line in out.splitlines() if "::" in line}

    background = collected("-m", "background", "tests/analysis", "tests/test_cli.py")
    assert len(background) > 100 and background == collected("tests/analysis")
    marking = [p.name for p in ROOT.glob("tests/**/*.py") if "mark.background" in p.read_text()
               and p.name not in ("conftest.py", "test_tiers.py")]
    assert marking == [], marking
