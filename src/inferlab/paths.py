"""Where the workspace keeps things. One place, so tests and users can relocate it.

The workspace root is ``$INFERLAB_HOME`` when set, else the nearest parent of the current
directory holding ``pyproject.toml`` and ``data/``, else the current directory.
"""

from __future__ import annotations

import os
from pathlib import Path


def workspace_root() -> Path:
    env = os.environ.get("INFERLAB_HOME")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for p in (here, *here.parents):
        if (p / "pyproject.toml").is_file() and (p / "data").is_dir():
            return p
    return here


def install_root() -> Path:
    """The checkout holding this package (for .venv-engine and the model cache), else the workspace."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / "pyproject.toml").is_file() else workspace_root()


def runs_dir() -> Path:
    return workspace_root() / "data" / "runs"


def sample_dir() -> Path:
    return workspace_root() / "data" / "sample"


def tidy_dir() -> Path:
    return workspace_root() / "data" / "tidy"


def reports_dir() -> Path:
    return workspace_root() / "reports"


def platform_dir() -> Path:
    """The workspace's own ``platform/`` when it has overlays (so a relocated workspace, and its
    secrets folder, are used together), else the checkout's."""
    own = workspace_root() / "platform"
    return own if (own / "overlays").is_dir() else install_root() / "platform"


def secrets_dir() -> Path:
    """The one secrets folder (git-ignored, 0700, files 0600): ``platform/secrets/values/``,
    inside the kustomization that turns it into Secrets (kustomize reads no file outside it)."""
    return workspace_root() / "platform" / "secrets" / "values"


def cache_dir() -> Path:
    return install_root() / ".cache"
