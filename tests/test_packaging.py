import os
import re
import subprocess
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_environment_yml_agrees_with_pyproject():
    py = tomllib.loads((ROOT / "pyproject.toml").read_text())
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    python = next(d for d in deps if isinstance(d, str) and d.startswith("python="))
    minimum = re.search(r">=\s*([\d.]+)", py["project"]["requires-python"]).group(1)
    assert python.split("=")[1].startswith(minimum)
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    assert any(re.match(r"-e\s+\"?\.", line) for line in pip), "environment.yml must install the package itself"
    assert "-c requirements.lock" in pip


def test_lock_pins_every_direct_dependency():
    """The package's dependencies and its ``dev`` extra (what make setup installs)."""
    py = tomllib.loads((ROOT / "pyproject.toml").read_text())
    locked = {l.split("==")[0].lower().replace("_", "-") for l in (ROOT / "requirements.lock").read_text().splitlines() if "==" in l}
    for dep in py["project"]["dependencies"] + py["project"]["optional-dependencies"]["dev"]:
        name = re.split(r"[<>=\[ ]", dep)[0].lower().replace("_", "-")
        assert name in locked, f"{name} not pinned in requirements.lock"


def test_makefile_targets_are_documented():
    text = (ROOT / "Makefile").read_text()
    assert ".DEFAULT_GOAL := help" in text
    for target in ("setup", "test", "perf", "report", "lab", "clean", "benchmark", "stress", "validate", "deploy"):
        assert re.search(rf"^{target}:.*## ", text, re.M), target


def test_make_test_and_report_set_up_side_by_side():
    """``make test`` and ``make report`` run their set-up steps in one ``make -j3`` (pip into both
    venvs and apt at once; docs/testing.md, "Tiers"); ``make report`` leaves the engine out where
    it renders given runs or drives another target. Read from ``make -n`` (a dry run: the sub-make
    only prints), outside any make that runs this test and with TARGET and RUNS unset."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "GNUMAKEFLAGS", "TARGET", "RUNS")}

    def setup_steps(*args: str) -> list[str]:
        out = subprocess.run(["make", "--no-print-directory", "-n", *args], cwd=ROOT, env=env, capture_output=True,
                             text=True, check=True).stdout
        head, _, steps = out.splitlines()[0].partition(" -j3 --output-sync=target ")
        assert head.endswith("make --no-print-directory"), out
        return steps.split()

    assert setup_steps("test") == ["setup", "engine", "system-deps"]
    assert setup_steps("report") == ["setup", "system-deps", "engine"]
    assert setup_steps("report", "RUNS=sample") == setup_steps("report", "TARGET=url") == ["setup", "system-deps"]
