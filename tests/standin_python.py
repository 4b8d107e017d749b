"""A vLLM build's interpreter played by the stand-in, for tests that start "engines" through the
local target (``INFERLAB_ENGINE_PYTHON``, ``--engine-python``, ``--build``, ``LocalEngine(python=...)``):
``python -m vllm.entrypoints.openai.api_server ARGS`` runs ``python -m inferlab.standin EXTRA ARGS``
(the stand-in takes vLLM's arguments, ignoring those it does not model); anything else exits 64."""

from __future__ import annotations

import sys
from pathlib import Path


def standin_python(path: Path, *, extra: str = "", before: str = "", what: str = "a vLLM build") -> Path:
    """Write the interpreter at ``path`` (its folders made) and return it. ``extra``: stand-in
    options put before vLLM's arguments; ``before``: shell lines run first (a delay, a per-start
    choice that may ``set --`` more arguments); ``what``: the comment naming what it plays."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"""#!/bin/sh
# {what}'s interpreter, played by the stand-in
[ "$1 $2" = "-m vllm.entrypoints.openai.api_server" ] || exit 64
shift 2
{before}
exec {sys.executable} -m inferlab.standin {extra} "$@"
""")
    path.chmod(0o755)
    return path
