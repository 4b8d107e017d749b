import pytest

from inferlab.platform import validate


@pytest.mark.parametrize("overlay", validate.overlays())
def test_overlay_builds_and_validates(overlay):
    n, errs = validate.validate_overlay(overlay)
    assert n >= 10 and not errs, errs


def test_required_overlays_exist():
    assert {"minikube-gpu", "baseline", "tuned", "cpu", "autoscale"} <= set(validate.overlays())


def test_policy_catches_bad_manifests():
    bad = {"kind": "Deployment", "metadata": {"name": "x", "labels": {}}, "spec": {"template": {"spec": {"containers": [
        {"name": "c", "image": "vllm/vllm-openai:latest", "env": [{"name": "API_KEY", "value": "abc"}]}]}}}}
    errs = " ".join(validate.policy_errors(bad))
    for expected in ("pinned", "requests and limits", "readinessProbe", "secretKeyRef", "missing label"):
        assert expected in errs


def test_custom_resource_schema_catches_typos():
    doc = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": {"name": "x"},
           "spec": {"selector": {}, "endpoints": [{"port": "http", "intervall": "15s"}]}}
    assert any("intervall" in e for e in validate.schema_errors(doc))


def test_core_schema_catches_typos():
    doc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"portz": []}}
    assert validate.schema_errors(doc)


def test_no_plaintext_secrets_in_platform():
    assert validate.plaintext_secret_errors() == []


def test_deploy_without_cluster_stops_cleanly(monkeypatch, tmp_path):
    from inferlab.platform import deploy

    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    assert deploy.deploy("cpu") == deploy.NO_CLUSTER
    assert deploy.deploy("cpu", dry_run=True) == 0


@pytest.mark.cluster
def test_live_deploy():
    import os

    if not os.environ.get("KUBECONFIG"):
        pytest.skip("no KUBECONFIG: live-cluster test skipped")
    from inferlab.platform import deploy

    assert deploy.deploy("cpu", timeout_s=1200) == 0


def test_project_crd_schemas_are_valid_json_schema():
    import json

    import jsonschema

    for f in validate.SCHEMAS.glob("*.json"):
        jsonschema.Draft202012Validator.check_schema(json.loads(f.read_text()))


@pytest.mark.cluster
def test_live_in_cluster_k6_job(tmp_path, monkeypatch):
    """After test_live_deploy (cpu overlay): a tiny sweep whose k6 runs as a 2-pod Indexed Job."""
    import os

    if not os.environ.get("KUBECONFIG"):
        pytest.skip("no KUBECONFIG: live-cluster test skipped")
    import inferlab
    from inferlab.load.spec import builtin_spec, load_spec
    from inferlab.load.sweep import run

    monkeypatch.setenv("INFERLAB_HOME", str(tmp_path))
    spec = load_spec(builtin_spec("ci-tiny"), {"k6_segments": 2, "concurrency": [2], "model": "smollm2"})
    m = inferlab.load_run(run(spec, target="k8s", in_cluster=True)).manifest
    assert m.status == "complete", m.reason
    assert {f.path for f in m.files} >= {"cells/short-c2/k6.seg1of2.ndjson.gz", "cells/short-c2/k6.seg2of2.ndjson.gz"}


def test_promql_checks_catch_renamed_metrics_and_bad_syntax():
    """A dashboard on vLLM's pre-0.10 name, a broken expression, and the shipped ones."""
    import json

    from inferlab.platform.promql import expressions, promql_errors

    dash = {"panels": [{"title": "KV", "targets": [{"expr": "max(vllm:gpu_cache_usage_perc)"}]},
                       {"title": "RPS", "targets": [{"expr": "sum(rate(vllm:request_success_total[$__rate_interval])"}]},
                       {"title": "ok", "targets": [{"expr": "avg(DCGM_FI_DEV_GPU_UTIL)"}]}]}
    cm = {"kind": "ConfigMap", "metadata": {"name": "d", "labels": {"grafana_dashboard": "1"}},
          "data": {"d.json": json.dumps(dash)}}
    errs = promql_errors([cm])
    assert len(errs) == 2
    assert "panel 'RPS': PromQL does not parse" in errs[0]
    assert "unknown metric vllm:gpu_cache_usage_perc" in errs[1]
    shipped = validate.kustomize_build("autoscale")
    exprs = expressions(shipped)
    kinds = {where.split("/")[0] for where, _ in exprs}
    assert kinds == {"PrometheusRule", "ConfigMap", "ScaledObject"} and len(exprs) >= 15
    assert promql_errors(shipped) == []


def test_alert_rule_unit_tests_run_and_catch_a_changed_threshold():
    import copy
    import shutil

    if not shutil.which("promtool"):
        pytest.skip("promtool not installed (make system-deps)")
    rule = next(d for d in validate.kustomize_build("cpu") if d["kind"] == "PrometheusRule")
    assert validate.promtool_errors([rule]) == []  # check + the unit tests in platform/monitoring/rule-tests
    broken = copy.deepcopy(rule)
    for r in broken["spec"]["groups"][0]["rules"]:
        if r["alert"] == "VllmQueueBuilding":
            r["expr"] = r["expr"].replace("> 50", "> 500")
    errs = validate.promtool_errors([broken])
    assert len(errs) == 1 and "promtool test rules" in errs[0] and "VllmQueueBuilding" in errs[0]


def test_port_forward_without_a_cluster_is_a_target_error(monkeypatch, tmp_path):
    """Real kubectl with no cluster: its error line names 127.0.0.1:8080, which must not be
    taken for the forwarded port (it once was)."""
    import shutil

    from inferlab.targets.base import TargetError
    from inferlab.targets.k8s import port_forward

    if not shutil.which("kubectl"):
        pytest.skip("kubectl not installed")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    with pytest.raises(TargetError, match="kubectl port-forward failed"):
        with port_forward():
            pass
