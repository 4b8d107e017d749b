"""platform/schema.py: one cached validator per schema file, and jsonschema (with
kubernetes-validate, which imports it) loaded only when a document is validated."""

from __future__ import annotations

import subprocess
import sys

from inferlab.platform.schema import validator
from inferlab.platform.tracing import SCHEMA


def test_one_validator_per_file_that_finds_errors():
    v = validator(SCHEMA)
    assert validator(SCHEMA) is v
    assert list(v.iter_errors({"receivers": "not a mapping"}))


def test_importing_the_deploy_and_validate_modules_loads_no_jsonschema():
    code = ("import sys, inferlab.platform.validate, inferlab.platform.deploy, inferlab.sweep.bisect, inferlab.cli.commands; "
            "print(sorted(m for m in ('jsonschema', 'kubernetes_validate') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
