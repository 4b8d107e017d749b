"""The ingress-nginx controller's ConfigMap (platform/ingress-controller): built offline, in the
controller's namespace, with the access-log format the local edge uses (one source), accepted
by the real nginx, and naming exactly the fields the edge-log reader reads."""

from __future__ import annotations

import re
import shutil

import pytest
import yaml

from inferlab.ingest.edge_log import FIELDS
from inferlab.platform import checks, validate
from inferlab.specs import EdgeSpec
from inferlab.targets.edge import render_edge_config

from .test_platform import PLATFORM, copy_platform

needs_nginx = pytest.mark.skipif(not shutil.which("nginx") and not shutil.which("/usr/sbin/nginx"),
                                 reason="nginx not installed (`make system-deps`)")
CM_FILE = PLATFORM / "ingress-controller" / "ingress-nginx-controller-configmap.yaml"


@pytest.fixture
def home(tmp_path, monkeypatch):
    copy_platform(tmp_path)
    monkeypatch.setenv("INFERLAB_HOME", str(tmp_path))
    return tmp_path / "platform" / "ingress-controller"


@needs_nginx
def test_controller_configmap_validates():
    n, errs = validate.validate_ingress_controller()
    assert (n, errs) == (1, [])
    (cm,) = validate.ingress_controller_docs()
    assert (cm["kind"], cm["metadata"]["name"], cm["metadata"]["namespace"]) == (
        "ConfigMap", "ingress-nginx-controller", "ingress-nginx")
    assert cm["data"]["log-format-escape-json"] == "true"


def test_format_names_exactly_the_readers_fields():
    fmt = checks.edge_log_source()["log-format-upstream"]
    assert tuple(re.findall(r'"(\w+)":', fmt)) == FIELDS
    assert '"request_id":"$req_id"' in fmt  # the client's X-Request-Id, as k6 and vLLM know it


def test_local_edge_logs_with_the_same_format(tmp_path):
    """What the local edge hands nginx is the ConfigMap's format and time maps, byte for byte."""
    src = yaml.safe_load(CM_FILE.read_text())["data"]
    http = render_edge_config(EdgeSpec(tls=False), 1, "http://127.0.0.1:2", tmp_path / "a.log", None)
    assert f"log_format inferlab_edge escape=json '{src['log-format-upstream']}';" in http
    assert src["http-snippet"].rstrip("\n") in http


@needs_nginx
def test_a_patched_format_in_the_build_is_caught(home):
    k = home / "kustomization.yaml"
    spec = yaml.safe_load(k.read_text())
    spec["patches"] = [{"patch": yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap",
                                                 "metadata": {"name": "ingress-nginx-controller"},
                                                 "data": {"log-format-upstream": '{"status":$status}',
                                                          "log-format-escape-json": "false"}})}]
    k.write_text(yaml.safe_dump(spec))
    _, errs = validate.validate_ingress_controller()
    assert any("log-format-upstream differs from the local edge's" in e for e in errs), errs
    assert any('log-format-escape-json must be "true"' in e for e in errs), errs


@needs_nginx
def test_a_format_nginx_rejects_is_caught(home):
    f = home / "ingress-nginx-controller-configmap.yaml"
    f.write_text(f.read_text().replace('"uri":"$uri"}', '"uri":"$no_such_variable"}'))
    _, errs = validate.validate_ingress_controller()
    assert any("nginx -t rejects" in e and "no_such_variable" in e for e in errs), errs


def test_the_inferlab_namespace_is_refused(home):
    k = home / "kustomization.yaml"
    k.write_text(k.read_text().replace("namespace: ingress-nginx", "namespace: inferlab"))
    _, errs = validate.validate_ingress_controller()
    assert any("belongs in the controller's namespace" in e for e in errs), errs


@needs_nginx
def test_validate_all_reports_the_controller(capsys):
    validate.validate_all(verbose=True)
    assert "ok   ingress-nginx controller ConfigMap (access-log format = the local edge's): 1 objects" in \
        capsys.readouterr().out
