import re
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
    py = tomllib.loads((ROOT / "pyproject.toml").read_text())
    locked = {l.split("==")[0].lower().replace("_", "-") for l in (ROOT / "requirements.lock").read_text().splitlines() if "==" in l}
    for dep in py["project"]["dependencies"]:
        name = re.split(r"[<>=\[ ]", dep)[0].lower().replace("_", "-")
        assert name in locked, f"{name} not pinned in requirements.lock"


def test_makefile_targets_are_documented():
    text = (ROOT / "Makefile").read_text()
    assert ".DEFAULT_GOAL := help" in text
    for target in ("setup", "test", "perf", "report", "lab", "clean", "benchmark", "stress", "validate", "deploy"):
        assert re.search(rf"^{target}:.*## ", text, re.M), target
