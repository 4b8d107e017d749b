"""platform/components/tracing offline: what vLLM runs with in every overlay that has it, that it
composes with the engine profiles in either order, that its exporter settings are the local
engine's, and that the Collector configuration check (a schema of the fields used, written from
the 0.133.0 documentation, plus cross-references: platform/tracing.py) refuses misspelled and
misplaced keys and a miswired component. No Collector binary runs here."""

from __future__ import annotations

import copy
import json

import jsonschema
import pytest
import yaml

from inferlab.platform import checks, render, tracing
from inferlab.telemetry.otlp import OTEL_ENV, OtlpReceiver

from .test_platform import EXPECTED_ENGINE, PLATFORM, TRACED_ENV, platform_home  # noqa: F401 (a fixture)

TRACE_FLAGS = ["--otlp-traces-endpoint", "http://otel-collector:4318/v1/traces", "--collect-detailed-traces", "all"]
TRACED = ("minikube-gpu", "baseline", "tuned", "autoscale")
CONFIG = yaml.safe_load((PLATFORM / "components" / "tracing" / "otelcol.yaml").read_text())


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    return render.kustomize_build("baseline")


@pytest.mark.parametrize("overlay", sorted(EXPECTED_ENGINE))
def test_what_vllm_runs_after_vllm_serve(overlay):
    """Every GPU overlay exports detailed spans to the Collector; the profile's args follow, whole."""
    argv = render.engine_argv(render.kustomize_build(overlay))
    assert argv == ([*TRACE_FLAGS] if overlay in TRACED else []) + EXPECTED_ENGINE[overlay]["args"]


def test_exporter_settings_are_the_local_engines():
    """Same flag form and OTEL_* switches as the local target's receiver gives its engine (the
    form vLLM 0.24 ran with on the GPU host: data/legacy-evidence/2026-11-27-h100x2-vllm0.24-spans-msr)."""
    with OtlpReceiver(detailed=True) as rx:
        local = rx.engine_args()
        url = [a if "://" not in a else "URL" for a in TRACE_FLAGS]
        assert [a if a != rx.endpoint else "URL" for a in local] == url
    assert TRACED_ENV == OTEL_ENV


def test_tracing_composes_with_a_profile_listed_before_or_after(platform_home):  # noqa: F811
    """The component writes the container's command, profiles its args: either order, same argv."""
    base = platform_home / "platform" / "overlays"
    for name, order in (("first", ["tracing", "engine-tuned"]), ("last", ["engine-tuned", "tracing"])):
        (base / name).mkdir()
        (base / name / "kustomization.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "namespace": "inferlab",
            "labels": [{"pairs": {"app.kubernetes.io/part-of": "inferlab", "app.kubernetes.io/managed-by": "inferlab"},
                        "includeSelectors": False}],
            "resources": ["../../base"], "components": [f"../../components/{c}" for c in order]}))
    got = {name: render.engine_argv(render.kustomize_build(name)) for name in ("first", "last")}
    assert got["first"] == got["last"] == [*TRACE_FLAGS, *EXPECTED_ENGINE["tuned"]["args"]]
    assert tracing.tracing_errors(render.kustomize_build("first")) == []


def test_shipped_overlays_pass_the_tracing_checks():
    for overlay in render.overlays():
        docs = render.kustomize_build(overlay)
        assert tracing.tracing_errors(docs) == [], overlay
        assert checks.deploy_errors(docs) == [], overlay  # deploy checks the same before applying
    assert tracing.collector_config_errors(CONFIG) == []


def test_config_schema_is_a_valid_json_schema_named_by_the_image_release(docs):
    jsonschema.Draft202012Validator.check_schema(json.loads(tracing.SCHEMA.read_text()))
    dep = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "otel-collector")
    images = {c["name"]: c["image"] for c in dep["spec"]["template"]["spec"]["containers"]}
    assert images == {"otel-collector": f"otel/opentelemetry-collector:{tracing.RELEASE}", "reader": "busybox:1.37.0"}


def _set(config: dict, path: str, value=None, delete: bool = False) -> dict:
    config = copy.deepcopy(config)
    *head, last = path.split(".")
    node = config
    for key in head:
        node = node[key]
    if delete:
        del node[last]
    else:
        node[last] = value
    return config


def _move(config: dict, src: str, dst: str) -> dict:
    """``src``'s value moved to ``dst`` (a key put where it does not belong)."""
    *head, last = src.split(".")
    node = config
    for key in head:
        node = node[key]
    return _set(_set(config, dst, copy.deepcopy(node[last])), src, delete=True)


@pytest.mark.parametrize(("change", "where"), [
    # misspelled
    (lambda c: _move(c, "exporters.file.path", "exporters.file.pathh"), "exporters.file"),
    (lambda c: _move(c, "exporters.file.rotation.max_megabytes", "exporters.file.rotation.max_megabyte"),
     "exporters.file.rotation"),
    (lambda c: _move(c, "processors.batch.send_batch_size", "processors.batch.send_batch_sise"), "processors.batch"),
    (lambda c: _move(c, "receivers.otlp.protocols.http", "receivers.otlp.protocols.htpp"), "receivers.otlp.protocols"),
    (lambda c: _move(c, "service.pipelines", "service.pipeline"), "service"),
    (lambda c: _move(c, "exporters.file", "exporters.files"), "exporters"),
    # misplaced
    (lambda c: _move(c, "processors.batch", "receivers.batch"), "receivers"),
    (lambda c: _move(c, "exporters.file.rotation.max_backups", "exporters.file.max_backups"), "exporters.file"),
    (lambda c: _move(c, "exporters.file.path", "exporters.file.rotation.path"), "exporters.file"),
    (lambda c: _move(c, "receivers.otlp.protocols.http.endpoint", "receivers.otlp.protocols.endpoint"),
     "receivers.otlp.protocols"),
    (lambda c: _move(c, "service.pipelines.traces", "service.traces"), "service"),
    (lambda c: _move(c, "processors", "service.processors"), "service"),
    # values the Collector would refuse or read otherwise
    (lambda c: _set(c, "exporters.file.format", "ndjson"), "exporters.file.format"),
    (lambda c: _set(c, "processors.batch.timeout", "200"), "processors.batch.timeout"),  # no unit: nanoseconds
    (lambda c: _set(c, "receivers.otlp.protocols.grpc.endpoint", "4317"), "receivers.otlp.protocols.grpc.endpoint"),
    (lambda c: _set(c, "processors.memory_limiter.limit_mib", None, delete=True), "processors.memory_limiter"),
])
def test_schema_refuses_misspelled_and_misplaced_keys(change, where):
    errs = tracing.collector_config_errors(change(CONFIG))
    assert errs and any(e.startswith(f"{where}: ") for e in errs), errs


@pytest.mark.parametrize(("change", "words"), [
    (lambda c: _set(c, "service.pipelines.traces.exporters", ["file/spans"]), "'file/spans' is not defined"),
    (lambda c: _set(c, "service.pipelines.traces.processors", ["batch"]), "memory_limiter: defined but in no pipeline"),
    (lambda c: _set(c, "service.pipelines.traces.processors", ["batch", "memory_limiter"]), "must come first"),
    (lambda c: _set(c, "processors.memory_limiter.spike_limit_mib", 400), "spike_limit_mib must be below"),
])
def test_cross_references_a_schema_cannot_state(change, words):
    errs = tracing.collector_config_errors(change(CONFIG))
    assert any(words in e for e in errs), errs


def _named(docs: list[dict], kind: str, name: str) -> dict:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"].startswith(name))


def _containers(docs: list[dict], name: str) -> dict[str, dict]:
    return {c["name"]: c for c in _named(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"]}


def _config_change(docs: list[dict], path: str, value) -> None:
    cm = _named(docs, "ConfigMap", "otel-collector-config")
    cm["data"]["otelcol.yaml"] = yaml.safe_dump(_set(yaml.safe_load(cm["data"]["otelcol.yaml"]), path, value))


def _endpoint(docs: list[dict], url: str) -> None:
    _containers(docs, "vllm")["vllm"]["command"][3] = url


@pytest.mark.parametrize(("change", "words"), [
    (lambda d: _containers(d, "otel-collector")["otel-collector"].update(image="otel/opentelemetry-collector:0.140.0"),
     "schema is written for otel/opentelemetry-collector:0.133.0"),
    (lambda d: _named(d, "Deployment", "otel-collector")["spec"].update(replicas=2), "one replica"),
    (lambda d: _endpoint(d, "http://otel-collector:4317/v1/traces"), "not the Collector's 'http://otel-collector:4318"),
    (lambda d: _containers(d, "vllm")["vllm"]["env"].pop(0),
     "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL must be http/protobuf"),
    (lambda d: _containers(d, "vllm")["vllm"]["command"].__delitem__(slice(4, 6)), "no --collect-detailed-traces"),
    (lambda d: _containers(d, "otel-collector")["reader"].update(volumeMounts=[]), "must mount the same volume"),
    (lambda d: _config_change(d, "exporters.file.path", "/tmp/spans.jsonl"), "the k8s target reads"),
    (lambda d: _config_change(d, "exporters.file.compression", "zstd"), "format json without compression"),
    (lambda d: _config_change(d, "exporters.file.rotation.max_backup", 3), "'max_backup' was unexpected"),
    (lambda d: _containers(d, "otel-collector")["otel-collector"].update(args=["--config=/etc/otelcol/other.yaml"]),
     "is not a key of a ConfigMap mounted there"),
    (lambda d: _containers(d, "vllm")["vllm"]["command"].__setitem__(1, "run"), "does not start with 'vllm serve'"),
    (lambda d: d.remove(_named(d, "Deployment", "otel-collector")), "no Deployment/otel-collector"),
])
def test_miswired_component_is_refused(docs, change, words):
    broken = copy.deepcopy(docs)
    change(broken)
    errs = tracing.tracing_errors(broken)
    assert any(words in e for e in errs), errs
    assert errs == [e for e in checks.deploy_errors(broken) if e in errs]  # deploy refuses it too


def test_no_tracing_no_errors():
    assert tracing.tracing_errors(render.kustomize_build("cpu")) == []
