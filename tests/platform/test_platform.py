"""platform/: kustomize layout (base, components, overlays), plain-kubectl builds after `make
secrets`, what each overlay runs, policy, schemas, promtool, the deploy preflight, and the
opt-in live-cluster tests. Real kubectl and promtool throughout; the only stand-in is the
cluster's API discovery (FakeCluster), the boundary the preflight talks to."""

from __future__ import annotations

import base64
import copy
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from inferlab import credentials, paths
from inferlab.platform import checks, deploy, preflight, render, validate
from inferlab.platform.secrets_gen import make_platform_secrets

ROOT = Path(__file__).resolve().parents[2]
PLATFORM = ROOT / "platform"

needs_promtool = pytest.mark.skipif(not shutil.which("promtool"), reason="promtool not installed (make system-deps)")


def copy_platform(home: Path) -> None:
    """platform/ into ``home``, without the checkout's secrets folder."""
    def no_values(d: str, names: list[str]) -> list[str]:
        return ["values"] if Path(d) == PLATFORM / "secrets" else []

    shutil.copytree(PLATFORM, home / "platform", ignore=no_values)


@pytest.fixture
def platform_home(tmp_path, monkeypatch) -> Path:
    """A workspace (INFERLAB_HOME) holding a copy of platform/ without its secrets: render,
    deploy and `make secrets` use it, and the checkout's secrets folder is never touched."""
    copy_platform(tmp_path)
    monkeypatch.setenv("INFERLAB_HOME", str(tmp_path))
    monkeypatch.delenv("INFERLAB_API_KEY", raising=False)
    assert render.platform_dir() == tmp_path / "platform" and render.missing_secret_inputs()
    return tmp_path


def plain_build(path: Path) -> list[dict]:
    """``kubectl kustomize <path>`` with no flags, as a user types it."""
    proc = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def ids(docs: list[dict]) -> set[tuple[str, str]]:
    return {(d["kind"], render.HASH_SUFFIX.sub("", d["metadata"]["name"])) for d in docs}


# ---------------------------------------------------------------- layout and what each overlay deploys

HEAD = ["--model=$(MODEL)", "--served-model-name=$(SERVED_MODEL_NAME)", "--max-model-len=2048"]
COMMON_ENV = {"HF_HOME": "/models", "VLLM_API_KEY": "secretKeyRef:vllm-api-key/api-key",
              "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
# the tracing component's exporter settings (the local engine's: telemetry.otlp.OTEL_ENV), first
TRACED_ENV = {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf", "OTEL_METRICS_EXPORTER": "none",
              "OTEL_LOGS_EXPORTER": "none", "OTEL_TRACES_SAMPLER": "always_on", "OTEL_BSP_SCHEDULE_DELAY": "500",
              "OTEL_SDK_DISABLED": "false"}
GPU_ENV = {**TRACED_ENV, "MODEL": "TinyLlama/TinyLlama-1.1B-Chat-v1.0", "SERVED_MODEL_NAME": "tinyllama", **COMMON_ENV}
TUNED_ARGS = [*HEAD, "--gpu-memory-utilization=0.9", "--port=8000", "--max-num-seqs=256",
              "--max-num-batched-tokens=8192", "--enable-prefix-caching"]
EXPECTED_ENGINE = {
    "minikube-gpu": {"args": [*HEAD, "--gpu-memory-utilization=0.85", "--port=8000"], "env": GPU_ENV},
    "baseline": {"args": [*HEAD, "--gpu-memory-utilization=0.85", "--port=8000", "--enforce-eager",
                          "--no-enable-prefix-caching"], "env": GPU_ENV},
    "tuned": {"args": TUNED_ARGS, "env": GPU_ENV},
    "autoscale": {"args": TUNED_ARGS, "env": GPU_ENV},
    "cpu": {"args": [*HEAD, "--enforce-eager", "--port=8000"],
            "env": {"MODEL": "HuggingFaceTB/SmolLM2-135M-Instruct", "SERVED_MODEL_NAME": "smollm2",
                    "VLLM_CPU_KVCACHE_SPACE": "4", **COMMON_ENV}},
}

CORE = {("Namespace", "inferlab"), ("Secret", "vllm-api-key"), ("Secret", "chat-ui-auth"),
        ("PersistentVolumeClaim", "vllm-model-cache"), ("Deployment", "vllm"), ("Service", "vllm"), ("Ingress", "vllm")}
UI = {("ConfigMap", "chat-ui"), ("Deployment", "chat-ui"), ("Service", "chat-ui"), ("Ingress", "chat-ui")}
MONITORING = {("ServiceMonitor", "vllm"), ("PrometheusRule", "vllm-slo"),
              ("ConfigMap", "grafana-dashboard-inferlab-vllm")}
GPU_MONITORING = {("DaemonSet", "dcgm-exporter"), ("Service", "dcgm-exporter"), ("ServiceMonitor", "dcgm-exporter")}
TLS = {("Issuer", "inferlab-selfsigned")}
TRACING = {("Deployment", "otel-collector"), ("Service", "otel-collector"), ("ConfigMap", "otel-collector-config")}
GPU_OVERLAY = CORE | UI | MONITORING | GPU_MONITORING | TRACING | TLS
EXPECTED_OBJECTS = {"minikube-gpu": GPU_OVERLAY, "baseline": GPU_OVERLAY, "tuned": GPU_OVERLAY,
                    "autoscale": GPU_OVERLAY | {("ScaledObject", "vllm")}, "cpu": CORE | UI | MONITORING | TLS}


def test_overlays_are_the_known_ones():
    assert set(render.overlays()) == set(EXPECTED_ENGINE) == set(EXPECTED_OBJECTS)


@pytest.mark.parametrize("overlay", sorted(EXPECTED_ENGINE))
def test_effective_engine_args_and_env(overlay):
    """What vLLM runs with, per overlay, exactly; the key shown by reference only."""
    assert render.effective_engine(overlay) == EXPECTED_ENGINE[overlay]


@pytest.mark.parametrize("overlay", sorted(EXPECTED_OBJECTS))
def test_overlay_objects_images_and_tls(overlay):
    docs = render.kustomize_build(overlay)
    assert ids(docs) == EXPECTED_OBJECTS[overlay]
    vllm = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "vllm")
    c = vllm["spec"]["template"]["spec"]["containers"][0]
    gpu = overlay != "cpu"
    assert c["image"] == ("vllm/vllm-openai:v0.24.0" if gpu else
                          "public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo:v0.32.0")
    assert {k: "nvidia.com/gpu" in v for k, v in c["resources"].items()} == {"requests": gpu, "limits": gpu}
    tls = {d["metadata"]["name"]: (d["spec"].get("tls"), d["metadata"]["annotations"].get("cert-manager.io/issuer"))
           for d in docs if d["kind"] == "Ingress"}
    issuer = "inferlab-selfsigned"
    assert tls == {"vllm": ([{"hosts": ["llm.local"], "secretName": "llm-local-tls"}], issuer),
                   "chat-ui": ([{"hosts": ["chat.llm.local"], "secretName": "chat-llm-local-tls"}], issuer)}
    assert all(d["metadata"].get("namespace") == "inferlab" for d in docs if d["kind"] != "Namespace")


def test_base_needs_no_crd():
    """The base alone builds and holds only built-in kinds: no Prometheus-operator, cert-manager
    or KEDA object, no cert-manager annotation."""
    with render.buildable_tree(throwaway_secrets=True) as tree:
        docs = plain_build(tree / "base")
    assert ids(docs) == CORE
    assert {preflight.group_of(d["apiVersion"]) for d in docs} <= deploy.BUILTIN_GROUPS
    assert not [k for d in docs for k in (d["metadata"].get("annotations") or {}) if k.startswith("cert-manager.io/")]


def test_components_are_kustomize_components():
    names = {p.parent.name for p in (PLATFORM / "components").glob("*/kustomization.yaml")}
    assert names == {"monitoring", "gpu-monitoring", "tls", "ui", "autoscale", "engine-baseline", "engine-tuned", "cpu",
                     "autoscale-measured", "tracing"}
    for n in names:
        assert yaml.safe_load((PLATFORM / "components" / n / "kustomization.yaml").read_text())["kind"] == "Component"


def _patches(k: Path) -> list[tuple[Path, object]]:
    spec = yaml.safe_load(k.read_text())
    assert "patchesJson6902" not in spec and "patchesStrategicMerge" not in spec, k
    out = []
    for p in spec.get("patches", []):
        text = p["patch"] if "patch" in p else (k.parent / p["path"]).read_text()
        out.append((k, yaml.safe_load(text)))
    return out


def test_no_patch_points_into_a_list_by_position():
    """Every patch is strategic-merge (names what it changes); a JSON6902 patch (a list of
    ops with paths like containers/0/args/3) would shift with the base."""
    found = [pk for k in PLATFORM.rglob("kustomization.yaml") for pk in _patches(k)]
    assert len(found) >= 6
    for k, patch in found:
        assert isinstance(patch, dict) and patch.get("kind") and patch.get("metadata", {}).get("name"), (k, patch)


def test_profiles_survive_a_new_base_flag_and_variable(platform_home):
    """A flag and a variable inserted at the head of the base's lists change nothing an engine
    profile sets (positional patches once rewrote the wrong entries)."""
    f = platform_home / "platform" / "base" / "vllm-deployment.yaml"
    dep = yaml.safe_load(f.read_text())
    c = dep["spec"]["template"]["spec"]["containers"][0]
    c["args"].insert(0, "--disable-log-requests")
    c["env"].insert(0, {"name": "VLLM_LOGGING_LEVEL", "value": "INFO"})
    f.write_text(yaml.safe_dump(dep))
    for overlay in ("cpu", "tuned", "baseline"):
        eng = render.effective_engine(overlay)
        assert eng["args"] == EXPECTED_ENGINE[overlay]["args"]  # profiles give the whole list
        assert eng["env"] == {"VLLM_LOGGING_LEVEL": "INFO", **EXPECTED_ENGINE[overlay]["env"]}
    plain = render.effective_engine("minikube-gpu")["args"]  # no profile: the base's list, new flag included
    assert plain == ["--disable-log-requests", *EXPECTED_ENGINE["minikube-gpu"]["args"]]


# ---------------------------------------------------------------- secrets and plain kubectl (no flags)

def test_every_overlay_builds_with_plain_kubectl_after_make_secrets(platform_home):
    """`make secrets` writes the one secrets folder inside platform/, the local engine's key
    included, and then `kubectl kustomize platform/overlays/<name>` needs no flag."""
    values = platform_home / "platform" / "secrets" / "values"
    local_key = credentials.get_or_create("api-key")  # what the local engine uses
    made = make_platform_secrets()
    assert paths.secrets_dir() == values and {p.parent for p in made} == {values}
    assert stat.S_IMODE(values.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in values.iterdir()} == {0o600}
    assert render.missing_secret_inputs() == []
    for overlay in render.overlays():
        docs = plain_build(platform_home / "platform" / "overlays" / overlay)
        key = next(d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"].startswith("vllm-api-key-"))
        auth = next(d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == "chat-ui-auth")
        assert base64.b64decode(key["data"]["api-key"]).decode() == local_key
        assert base64.b64decode(auth["data"]["auth"]).decode() == (values / "chat-ui-htpasswd").read_text()


def test_build_without_secrets_fails_clearly_unless_throwaway(platform_home):
    with pytest.raises(RuntimeError, match="run `make secrets` first"):
        render.kustomize_build("cpu", throwaway_secrets=False)
    assert ids(render.kustomize_build("cpu")) == EXPECTED_OBJECTS["cpu"]  # validate's throwaway keys
    assert not (platform_home / "platform" / "secrets" / "values").exists()  # made in a temporary copy


def test_chat_page_and_server_block_are_kept_once():
    """One copy, in platform/components/ui/: the cluster's ConfigMap and `inferlab ui` read it."""
    from inferlab.ui import serve

    ui = PLATFORM / "components" / "ui"
    assert (serve.PAGE, serve.TEMPLATE) == (ui / "chat.html", ui / "server.conf.template")
    copies = [p for top in (ROOT / "src", PLATFORM) for p in top.rglob("*")
              if p.name in ("chat.html", "server.conf.template")]
    assert sorted(copies) == sorted([ui / "chat.html", ui / "server.conf.template"])
    cm = next(d for d in render.kustomize_build("cpu")
              if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("chat-ui-"))
    assert cm["data"] == {"chat.html": serve.PAGE.read_text(), "default.conf.template": serve.TEMPLATE.read_text()}


# ---------------------------------------------------------------- validation: schemas, policy, promtool

@needs_promtool
@pytest.mark.parametrize("overlay", sorted(EXPECTED_OBJECTS))
def test_overlay_builds_and_validates(overlay):
    n, errs = validate.validate_overlay(overlay)
    assert n == len(EXPECTED_OBJECTS[overlay]) and not errs, errs


@needs_promtool
def test_validate_all_prints_engines_and_runs_extra_checks(capsys):
    calls = []

    def extra() -> tuple[int, list[str]]:
        calls.append(1)
        return 2, ["[extra] broken"]

    assert validate.validate_all(verbose=True) is True
    out = capsys.readouterr().out
    for overlay, eng in EXPECTED_ENGINE.items():
        block = out.split(f"overlay {overlay}:", 1)[1].split("\n", 3)
        assert block[1] == "  vllm args: " + " ".join(eng["args"])
        assert block[2] == "  vllm env:  " + " ".join(f"{k}={v}" for k, v in eng["env"].items())
    assert validate.validate_all(verbose=True, extra_checks=[("extra thing", extra)]) is False and calls == [1]
    assert "FAIL extra thing: 2 objects\n  [extra] broken" in capsys.readouterr().out


def test_policy_catches_bad_manifests():
    bad = {"kind": "Deployment", "metadata": {"name": "x", "labels": {}}, "spec": {"template": {"spec": {"containers": [
        {"name": "c", "image": "vllm/vllm-openai:latest", "env": [{"name": "API_KEY", "value": "abc"}]}]}}}}
    errs = " ".join(checks.policy_errors(bad))
    for expected in ("pinned", "requests and limits", "readinessProbe", "secretKeyRef", "missing label",
                     "no namespace"):
        assert expected in errs


def _vllm_deployment(env: list[dict], image: str = "vllm/vllm-openai:v0.24.0") -> dict:
    probe = {"httpGet": {"path": "/health", "port": 8000}}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "v", "namespace": "n", "labels": dict.fromkeys(checks.REQUIRED_LABELS, "inferlab")},
            "spec": {"template": {"spec": {"containers": [
                {"name": "vllm", "image": image, "env": env,
                 "resources": {"requests": {"cpu": "1"}, "limits": {"cpu": "1"}},
                 "startupProbe": probe, "readinessProbe": probe, "livenessProbe": probe}]}}}}


def test_policy_requires_the_usage_stats_opt_out_on_vllm_containers():
    opted_out = [{"name": "VLLM_NO_USAGE_STATS", "value": "1"}, {"name": "DO_NOT_TRACK", "value": "1"},
                 {"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"}]
    assert checks.policy_errors(_vllm_deployment(opted_out)) == []
    errs = checks.policy_errors(_vllm_deployment([]))
    assert len(errs) == 3 and "VLLM_NO_USAGE_STATS=1" in errs[0] and "DO_NOT_TRACK=1" in errs[1], errs
    half = checks.policy_errors(_vllm_deployment([{"name": "VLLM_NO_USAGE_STATS", "value": "0"}, *opted_out[1:]],
                                                 image="public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo:v0.32.0"))
    assert len(half) == 1 and "VLLM_NO_USAGE_STATS=1" in half[0]
    assert checks.policy_errors(_vllm_deployment([], image="nginx:1.27.5-alpine")) == []  # not vLLM


def test_tls_check_catches_an_ingress_the_tls_component_missed():
    docs = render.kustomize_build("cpu")
    assert checks.tls_errors(docs) == []
    chat = next(d for d in docs if d["kind"] == "Ingress" and d["metadata"]["name"] == "chat-ui")
    del chat["spec"]["tls"]  # what listing tls before ui in an overlay produces
    errs = checks.tls_errors(docs)
    assert len(errs) == 1 and "Ingress/chat-ui" in errs[0] and "after ui" in errs[0]


def test_custom_resource_schema_catches_typos():
    doc = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": {"name": "x"},
           "spec": {"selector": {}, "endpoints": [{"port": "http", "intervall": "15s"}]}}
    assert any("intervall" in e for e in validate.schema_errors(doc))
    issuer = {"apiVersion": "cert-manager.io/v1", "kind": "Issuer", "metadata": {"name": "x", "namespace": "n"},
              "spec": {"selfSigned": {}, "selfsigned": {}}}
    assert validate.schema_errors(issuer)


def test_core_schema_catches_typos():
    doc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"portz": []}}
    assert validate.schema_errors(doc)


def test_no_plaintext_secrets_in_platform():
    assert checks.plaintext_secret_errors() == []


def test_project_crd_schemas_are_valid_json_schema():
    import jsonschema

    files = list(checks.SCHEMAS.glob("*.json"))
    assert {f.stem for f in files} == {"Issuer", "PrometheusRule", "ScaledObject", "ServiceMonitor", "TestRun"}
    for f in files:
        jsonschema.Draft202012Validator.check_schema(json.loads(f.read_text()))


def test_promql_checks_catch_renamed_metrics_and_bad_syntax():
    """A dashboard on vLLM's pre-0.10 name, a broken expression, and the shipped ones."""
    from inferlab.platform.promql import expressions, promql_errors

    if not shutil.which("promtool"):
        pytest.skip("promtool not installed (make system-deps)")
    dash = {"panels": [{"title": "KV", "targets": [{"expr": "max(vllm:gpu_cache_usage_perc)"}]},
                       {"title": "RPS",
                        "targets": [{"expr": "sum(rate(vllm:request_success_total[$__rate_interval])"}]},
                       {"title": "ok", "targets": [{"expr": "avg(DCGM_FI_DEV_GPU_UTIL)"}]}]}
    cm = {"kind": "ConfigMap", "metadata": {"name": "d", "labels": {"grafana_dashboard": "1"}},
          "data": {"d.json": json.dumps(dash)}}
    errs = promql_errors([cm])
    assert len(errs) == 2
    assert "panel 'RPS': PromQL does not parse" in errs[0]
    assert "unknown metric vllm:gpu_cache_usage_perc" in errs[1]
    shipped = render.kustomize_build("autoscale")
    exprs = expressions(shipped)
    kinds = {where.split("/")[0] for where, _ in exprs}
    assert kinds == {"PrometheusRule", "ConfigMap", "ScaledObject"} and len(exprs) >= 15
    assert promql_errors(shipped) == []


@needs_promtool
def test_alert_rule_unit_tests_run_and_catch_a_changed_threshold():
    rule = next(d for d in render.kustomize_build("cpu") if d["kind"] == "PrometheusRule")
    assert validate.platform_dir().joinpath(*validate.RULE_TESTS, "vllm-slo.test.yaml").is_file()
    assert validate.promtool_errors([rule]) == []  # check + the unit tests in components/monitoring/rule-tests
    broken = copy.deepcopy(rule)
    for r in broken["spec"]["groups"][0]["rules"]:
        if r["alert"] == "VllmQueueBuilding":
            r["expr"] = r["expr"].replace("> 50", "> 500")
    errs = validate.promtool_errors([broken])
    assert len(errs) == 1 and "promtool test rules" in errs[0] and "VllmQueueBuilding" in errs[0]


# ---------------------------------------------------------------- deploy: order and preflight

def test_apply_order_puts_namespaces_and_crds_before_custom_resources():
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "x.example.com"}}
    custom = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    docs = deploy.ordered([custom, *render.kustomize_build("autoscale"), crd])
    kinds = [d["kind"] for d in docs]
    assert kinds[:2] == ["Namespace", "CustomResourceDefinition"]
    builtin = [preflight.group_of(d["apiVersion"]) in deploy.BUILTIN_GROUPS for d in docs]
    assert builtin == sorted(builtin, reverse=True)  # every custom resource after every built-in object
    assert set(kinds[builtin.index(False):]) == {"Issuer", "ServiceMonitor", "PrometheusRule", "ScaledObject", "Widget"}
    assert kinds.index("Secret") < kinds.index("Deployment") < kinds.index("Ingress")


class FakeCluster:
    """Stand-in for the DynamicClient at the discovery boundary: serves the given API groups
    (``resources.get`` raises the client's own ResourceNotFoundError for any other) and
    records every apply; nothing past discovery is modelled."""

    def __init__(self, groups: set[str]) -> None:
        self.groups, self.applied, self.resources = groups, [], self

    def get(self, api_version: str, kind: str):
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        if preflight.group_of(api_version) not in self.groups:
            raise ResourceNotFoundError(f"No matches found for {{'api_version': {api_version!r}, 'kind': {kind!r}}}")
        return self

    def server_side_apply(self, body, **_):
        self.applied.append(body)


FRESH_MINIKUBE = set(deploy.BUILTIN_GROUPS)
WITH_OPERATORS = FRESH_MINIKUBE | {"cert-manager.io", "monitoring.coreos.com"}


def test_deploy_on_a_fresh_cluster_names_what_to_install_and_applies_nothing(platform_home, capsys):
    make_platform_secrets()
    cluster = FakeCluster(FRESH_MINIKUBE)
    assert deploy.deploy("autoscale", client=cluster) == deploy.MISSING_PREREQUISITES
    out = capsys.readouterr().out
    assert cluster.applied == [] and "nothing applied" in out
    lines = [line for line in out.splitlines() if line.startswith("  - ")]
    assert len(lines) == 3, out
    cert, prom, keda = (next(line for line in lines if group in line)
                        for group in ("cert-manager.io/v1", "monitoring.coreos.com/v1", "keda.sh/v1alpha1"))
    assert "Issuer (cert-manager.io/v1)" in cert and "install cert-manager" in cert
    assert "leave out component tls (the `components:` list of platform/overlays/minikube-gpu/kust" in cert
    assert "ServiceMonitor (monitoring.coreos.com/v1)" in prom and "PrometheusRule" in prom
    assert "kube-prometheus-stack" in prom and "leave out components gpu-monitoring, monitoring" in prom
    assert "ScaledObject (keda.sh/v1alpha1)" in keda and "install KEDA" in keda
    assert "leave out component autoscale (the `components:` list of platform/overlays/autoscale/kust" in keda


def test_deploy_names_the_k6_operator_when_its_crd_is_missing_and_goes_on(platform_home, capsys):
    """The TestRun kind is optional (in-cluster load falls back to an Indexed Job): a note that
    names the operator and how to install it, never a reason to stop."""
    from inferlab.kube import K6_OPERATOR_RELEASE

    make_platform_secrets()
    assert deploy.deploy("autoscale", client=FakeCluster(FRESH_MINIKUBE)) == deploy.MISSING_PREREQUISITES
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and "TestRun (k6.io/v1alpha1): not served" in notes[0]
    assert f"install the k6-operator {K6_OPERATOR_RELEASE} (kubectl apply --server-side -f " in notes[0]
    assert f"grafana/k6-operator/{K6_OPERATOR_RELEASE}/bundle.yaml" in notes[0] and "Indexed Job" in notes[0]
    assert preflight.optional_notes(FakeCluster(WITH_OPERATORS | {"k6.io"})) == []
    # the overlay's own kinds stay the only problems: the operator is not one
    assert not any("k6" in p for p in preflight.preflight(FakeCluster(WITH_OPERATORS), render.kustomize_build("cpu"), "cpu"))


def test_preflight_passes_when_the_cluster_serves_every_kind():
    docs = render.kustomize_build("autoscale")
    assert preflight.preflight(FakeCluster(WITH_OPERATORS | {"keda.sh"}), docs, "autoscale") == []
    only_keda_missing = preflight.preflight(FakeCluster(WITH_OPERATORS), docs, "autoscale")
    assert len(only_keda_missing) == 1 and "ScaledObject" in only_keda_missing[0]
    assert preflight.preflight(FakeCluster(WITH_OPERATORS), render.kustomize_build("cpu"), "cpu") == []


def test_deploy_without_secrets_applies_nothing(platform_home, capsys):
    cluster = FakeCluster(WITH_OPERATORS)
    assert deploy.deploy("cpu", client=cluster) == 1
    assert "run `make secrets` first" in capsys.readouterr().out and cluster.applied == []


def test_deploy_without_cluster_stops_cleanly(monkeypatch, tmp_path):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    assert deploy.deploy("cpu") == deploy.NO_CLUSTER
    assert deploy.deploy("cpu", dry_run=True) == 0


# ---------------------------------------------------------------- live cluster: opt-in only

LIVE_FLAG, LIVE_NS = "INFERLAB_LIVE_CLUSTER", "INFERLAB_LIVE_NAMESPACE"


def live_namespace() -> str:
    """The dedicated namespace for live tests, or a skip. A set KUBECONFIG is never enough:
    it may point at production."""
    if os.environ.get(LIVE_FLAG) != "1":
        pytest.skip(f"live-cluster test: runs only with {LIVE_FLAG}=1 and {LIVE_NS}=<dedicated namespace> "
                    "(KUBECONFIG alone never enables it)")
    ns = os.environ.get(LIVE_NS, "")
    if not ns:
        pytest.skip(f"{LIVE_FLAG}=1 needs {LIVE_NS}=<dedicated namespace> too")
    return ns


@pytest.fixture(scope="module")
def live_home(tmp_path_factory) -> Path:
    """A workspace with a copy of platform/, its own secrets, and overlay `live`: the cpu
    overlay in the live namespace, with Ingress hosts of its own (<ns>.llm.local)."""
    ns = live_namespace()
    home = tmp_path_factory.mktemp("live")
    copy_platform(home)
    ingress = [{"name": name, "host": host, "secret": secret} for name, host, secret in
               (("vllm", f"{ns}.llm.local", "llm-local-tls"),
                ("chat-ui", f"chat.{ns}.llm.local", "chat-llm-local-tls"))]
    patches = [{"target": {"kind": "Ingress", "name": i["name"]}, "patch": yaml.safe_dump({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": i["name"]},
        "spec": {"tls": [{"hosts": [i["host"]], "secretName": i["secret"]}],
                 "rules": [{"host": i["host"], "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
                     "service": {"name": i["name"], "port": {"name": "http"}}}}]}}]}})} for i in ingress]
    (home / "platform" / "overlays" / "live").mkdir()
    (home / "platform" / "overlays" / "live" / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "namespace": ns,
        "resources": ["../cpu"], "patches": patches}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INFERLAB_HOME", str(home))
        make_platform_secrets()
    return home


@pytest.mark.cluster
def test_live_deploy(live_home, monkeypatch):
    monkeypatch.setenv("INFERLAB_HOME", str(live_home))
    assert deploy.deploy("live", timeout_s=1200) == 0


@pytest.mark.cluster
def test_live_in_cluster_k6_job(live_home, monkeypatch):
    """After test_live_deploy: a tiny sweep whose k6 runs in the cluster in 2 pods: a k6-operator
    TestRun where the cluster serves it, else an Indexed Job (the run's note says which)."""
    from inferlab.targets.k8s import NAMESPACE

    if live_namespace() != NAMESPACE:
        pytest.skip(f"the k8s target reaches namespace {NAMESPACE!r} only (targets/k8s.py): "
                    f"run with {LIVE_NS}={NAMESPACE}")
    import inferlab
    from inferlab.specs import builtin_spec, load_spec
    from inferlab.sweep.runner import run

    monkeypatch.setenv("INFERLAB_HOME", str(live_home))
    spec = load_spec(builtin_spec("ci-tiny"), {"k6_segments": 2, "concurrency": [2], "model": "smollm2"})
    m = inferlab.load_run(run(spec, target="k8s", in_cluster=True)).manifest
    assert m.status == "complete", m.reason
    assert {f.path for f in m.files} >= {"cells/short-c2/k6.seg1of2.ndjson.gz", "cells/short-c2/k6.seg2of2.ndjson.gz"}
    assert any(n.startswith("k6 ran in the cluster as ") for n in m.notes), m.notes


def _run_live_tests(tmp_path, **env) -> str:
    kubeconfig = tmp_path / "kubeconfig"  # a plausible config whose server is closed
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "prod",
        "clusters": [{"name": "prod", "cluster": {"server": "https://127.0.0.1:1"}}],
        "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "t"}}]}))
    full = {k: v for k, v in os.environ.items() if k not in (LIVE_FLAG, LIVE_NS)}
    full.update(KUBECONFIG=str(kubeconfig), **env)
    # --tb=line: the failing deploy's full traceback is slow to format (docs/testing.md, "Session 17")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "--tb=line", "-p", "no:cacheprovider",
                           "-m", "cluster", str(Path(__file__))],
                          capture_output=True, text=True, env=full, cwd=ROOT, timeout=300)
    return proc.stdout + proc.stderr


def test_kubeconfig_alone_never_enables_live_tests(tmp_path):
    out = _run_live_tests(tmp_path)
    assert "2 skipped" in out and "passed" not in out and "failed" not in out, out
    assert out.count(f"runs only with {LIVE_FLAG}=1") == 2, out
    out = _run_live_tests(tmp_path, **{LIVE_FLAG: "1"})
    assert "2 skipped" in out and out.count(f"needs {LIVE_NS}") == 2, out
    # the gate does open: with both set the deploy test runs (and fails here: nothing listens)
    out = _run_live_tests(tmp_path, **{LIVE_FLAG: "1", LIVE_NS: "inferlab-live-test"})
    assert "1 failed" in out and "1 skipped" in out and "reaches namespace 'inferlab' only" in out, out


def test_port_forward_without_a_cluster_is_a_target_error(monkeypatch, tmp_path):
    """Real kubectl with no cluster: its error line names 127.0.0.1:8080, which must not be
    taken for the forwarded port (it once was)."""
    from inferlab.targets.k8s import port_forward
    from inferlab.targets.session import TargetError

    if not shutil.which("kubectl"):
        pytest.skip("kubectl not installed")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    with pytest.raises(TargetError, match="kubectl port-forward failed"):
        with port_forward():
            pass
