"""Shared fixtures. Tests that need the real engine use ONE session-scoped vLLM CPU engine."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Path:
    """An empty workspace (data/runs, data/sample copied) so tests never touch the real data/runs."""
    (tmp_path / "pyproject.toml").write_text("[project]\nname='ws'\n")
    (tmp_path / "data" / "runs").mkdir(parents=True)
    shutil.copytree(ROOT / "data" / "sample", tmp_path / "data" / "sample")
    monkeypatch.setenv("INFERLAB_HOME", str(tmp_path))
    monkeypatch.delenv("INFERLAB_API_KEY", raising=False)
    return tmp_path


@pytest.fixture(scope="session")
def engine():
    """The real vLLM CPU engine (ci-tiny engine args), started once for the whole session."""
    if os.environ.get("INFERLAB_SKIP_ENGINE") == "1":
        pytest.skip("INFERLAB_SKIP_ENGINE=1: engine tests skipped")
    from inferlab.specs import builtin_spec, load_spec
    from inferlab.targets.engine import ENGINE_VENV, LocalEngine

    if not (ROOT / ENGINE_VENV / "bin" / "python").is_file():
        pytest.skip(f"{ENGINE_VENV}/ missing: `make engine` (make test does it)")
    import secrets
    import tempfile

    spec = load_spec(builtin_spec("ci-tiny")).engine
    log = Path(tempfile.mkdtemp(prefix="inferlab-engine-")) / "engine.log"
    eng = LocalEngine(spec, secrets.token_urlsafe(24), log)
    eng.start()
    yield eng
    eng.stop()
