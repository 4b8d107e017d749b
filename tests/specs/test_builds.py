"""The builds of ``inferlab bisect`` (specs/builds.py): the strict builds file with errors that
name the file, the field and its line, and ``--build NAME=PYTHON|IMAGE``; plus the line numbers
every YAML config's errors now carry (specs/base.py yaml_line)."""

from __future__ import annotations

import pytest

from inferlab.specs import SpecError, load_spec
from inferlab.specs.base import yaml_line
from inferlab.specs.builds import BuildsError, build_from_option, build_list, load_builds


def write(tmp_path, text: str):
    p = tmp_path / "builds.yaml"
    p.write_text(text)
    return p


def test_a_builds_file_of_local_interpreters_and_one_of_images(tmp_path):
    b = load_builds(write(tmp_path, "# oldest first\nbuilds:\n  - {name: v0.30.0, python: /opt/a/bin/python, "
                                    "device: cpu}\n  - {name: v0.31.0, python: /opt/b/bin/python}\n"))
    assert b.kind == "local" and [x.name for x in b.builds] == ["v0.30.0", "v0.31.0"]
    assert b.builds[0].device == "cpu" and b.builds[1].device is None
    assert load_builds(write(tmp_path, "builds:\n  - {name: a, image: v0.31.0}\n  - {name: b, image: "
                                       "ghcr.io/me/vllm-cpu:dev}\n  - {name: c, image: reg:5000/x/vllm@sha256:"
                                       + "a" * 64 + "}\n")).kind == "k8s"
    assert load_builds(write(tmp_path, b.yaml())) == b  # what the bisect record keeps reads back the same


@pytest.mark.parametrize("text, error", [
    ("builds:\n  - {name: a, python: /x}\n  - name: b\n    pyhton: /x\n", "builds.1.pyhton: Extra inputs are not "
                                                                          "permitted (line 4)"),
    ("builds:\n  - {name: a, python: /x}\n  - name: b\n    device: cpu\n", "builds.1: Value error, give exactly one of "
                                                                          "python (a local build) and image (a k8s "
                                                                          "build) (line 3)"),
    ("builds:\n  - {name: a, python: /x}\n", "builds: List should have at least 2 items after validation, not 1 "
                                             "(line 1)"),
    ("builds:\n  - {name: a, python: /x}\n  - {name: a, python: /y}\n", "name 'a' is builds.0's too"),
    ("builds:\n  - {name: a, python: /x}\n  - {name: b, image: v1}\n", "builds.1 is a k8s build (image) but builds.0 "
                                                                       "a local one"),
    ("builds:\n  - {name: a, image: v1}\n  - {name: b, image: vllm/vllm-openai}\n", "image 'vllm/vllm-openai': expected "
                                                                                   "a tag"),
    ("builds:\n  - {name: a, image: v1, device: cpu}\n  - {name: b, image: v2}\n", "device applies to a local build"),
    ("builds:\n  - {name: a, python: /x, device: gpu}\n  - {name: b, python: /y}\n", "builds.0.device: String should "
                                                                                     "match pattern"),
    ("builds:\n  - {name: 'a b', python: /x}\n  - {name: b, python: /y}\n", "builds.0.name: String should match"),
    ("builds: [a, b\n", "cannot read YAML builds file"),
    ("- a\n- b\n", "expected a mapping at the top level"),
])
def test_a_bad_builds_file_names_the_file_the_field_and_its_line(tmp_path, text, error):
    p = write(tmp_path, text)
    with pytest.raises(BuildsError) as exc:
        load_builds(p)
    assert str(exc.value).startswith(str(p)) and error in str(exc.value), str(exc.value)
    assert isinstance(exc.value, SpecError)  # a usage error: the CLI exits 2


def test_build_options_and_their_errors():
    a = build_from_option("v1=/opt/v1/bin/python", "local", "cpu")
    assert (a.name, a.python, a.device, a.kind) == ("v1", "/opt/v1/bin/python", "cpu", "local")
    assert build_from_option("v2=v0.31.0", "k8s").image == "v0.31.0"
    with pytest.raises(BuildsError, match="expected NAME=PYTHON"):
        build_from_option("/opt/v1/bin/python", "local")
    with pytest.raises(BuildsError, match="--build 'v1=v 1'"):
        build_from_option("v1=v 1", "k8s")
    with pytest.raises(BuildsError, match=r"^--build: builds: .*at least 2 items"):
        build_list([a])


def test_every_yaml_config_error_now_names_its_line(tmp_path):
    p = tmp_path / "spec.yaml"
    p.write_text("kind: sweep\nname: x\nconcurrency: [1]\nslo:\n  e2e_ms: 5000\n  ttft_pp: 9\n")
    with pytest.raises(SpecError, match=r"slo\.ttft_pp: Extra inputs are not permitted \(line 6\)"):
        load_spec(p)
    assert yaml_line("a:\n  - x\n  - {b: 1}\n", ("a", 1, "b")) == 3
    assert yaml_line("a:\n  b: 1\n", ("a", "missing")) == 1  # a missing field: its parent's line
    assert yaml_line("a: [\n", ("a",)) is None and yaml_line("", ("a",)) is None
