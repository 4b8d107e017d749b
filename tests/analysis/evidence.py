"""Shared by the golden tests of shipped GPU evidence: a workspace that holds a shipped
record folder's runs and comparisons as links, so the product's readers find them by id."""

from __future__ import annotations

from pathlib import Path


def link_workspace(home: Path, data: Path) -> Path:
    """``home/data/{runs,comparisons}/<id>`` -> ``data/{runs,comparisons}/<id>`` (read-only use)."""
    for kind in ("runs", "comparisons"):
        (home / "data" / kind).mkdir(parents=True, exist_ok=True)
        for r in (data / kind).iterdir() if (data / kind).is_dir() else ():
            (home / "data" / kind / r.name).symlink_to(r)
    return home
