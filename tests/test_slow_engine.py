"""scripts/slow-engine.sh, the developers' rehearsal of a slower CPU for the engine (docs/testing.md,
"Slow engine"): an engine-venv process runs in the script's start group, and the venv's link and
the cgroups are put back when the command ends, also when it fails."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "slow-engine.sh"
LINK = ROOT / ".venv-engine" / "bin" / "python"
CGROUP_BASES = (Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup"))

# it swaps .venv-engine/bin/python for the command's duration: never beside an engine test
pytestmark = pytest.mark.serial


def _writable_cgroup() -> bool:
    v2 = Path("/sys/fs/cgroup/cgroup.controllers").is_file()
    base = CGROUP_BASES[1] if v2 else CGROUP_BASES[0]
    return os.geteuid() == 0 and base.is_dir() and os.access(base, os.W_OK)


def _leftovers() -> list[str]:
    return [p.name for base in CGROUP_BASES if base.is_dir() for p in base.iterdir()
            if p.name.startswith("inferlab-slow-engine-")]


@pytest.fixture
def rehearsal():
    if not _writable_cgroup():
        pytest.skip("needs root and a writable cpu cgroup (the script's own requirement)")
    if not LINK.is_symlink():
        pytest.skip(f"{LINK} is not the venv's link (make engine makes it)")
    before = _leftovers()
    yield
    assert LINK.is_symlink() and os.readlink(LINK) == "python3"
    assert _leftovers() == before


def test_an_engine_venv_process_runs_in_the_start_group(rehearsal):
    code = "import sys; print(sys.prefix); print(open('/proc/self/cgroup').read())"
    res = subprocess.run([str(SCRIPT), "4", str(LINK), "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    prefix, groups = res.stdout.split("\n", 1)
    assert prefix == str(ROOT / ".venv-engine")  # the venv is still found through the wrapper
    assert any(line.split(":")[-1].startswith("/inferlab-slow-engine-") and line.endswith("-start")
               for line in groups.splitlines() if ":cpu" in line or line.startswith("0::")), groups
    assert "1/4 of the machine once healthy, 1/4 while it starts" in res.stderr


def test_a_failing_command_keeps_its_exit_status_and_restores_everything(rehearsal):
    res = subprocess.run([str(SCRIPT), "2", "sh", "-c", "exit 7"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "START_FACTOR": "1"})
    assert res.returncode == 7 and "1/2 of the machine once healthy, 1/1 while it starts" in res.stderr


def test_a_factor_below_one_is_refused(rehearsal):
    res = subprocess.run([str(SCRIPT), "0.5", "true"], capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and "FACTOR >= 1" in res.stderr
