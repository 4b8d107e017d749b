"""Offline checks of the tracing component (platform/components/tracing) in a rendered overlay.

No Collector binary runs here, so its configuration is checked two ways:

- :func:`collector_config_errors`: the ``otelcol.yaml`` the ConfigMap holds against
  ``schemas/otelcol/config-<release>.json``, a JSON Schema of the fields the project uses, written
  from that release's component documentation (strict: a misspelled or misplaced key is an
  error naming its path), then what a schema cannot say: every component a pipeline names is
  defined, every defined one is used, ``memory_limiter`` comes first, the spike limit is below
  the limit.
- :func:`tracing_errors`: the wiring the k8s target relies on. The Collector runs the release
  the schema was written for (a bumped image without a reviewed schema fails), as one replica;
  its file exporter writes OTLP/JSON lines, uncompressed, to
  :data:`~inferlab.formats.otlp.COLLECTOR_SPANS_FILE` on a volume the ``reader`` sidecar mounts
  at the same path; vLLM's ``--otlp-traces-endpoint`` is the Collector Service's OTLP/HTTP
  port, with ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/protobuf`` and detailed traces. An
  overlay whose vLLM exports spans with no Collector to take them fails too.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

import yaml

from ..formats.otlp import COLLECTOR_SPANS_FILE
from .render import engine_argv, engine_container
from .schema import validator

RELEASE = "0.133.0"  # the Collector release the schema was written from; the image must match it
IMAGE = f"otel/opentelemetry-collector:{RELEASE}"
COLLECTOR, READER, CONFIG_KEY = "otel-collector", "reader", "otelcol.yaml"
HTTP_PORT_NAME, TRACES_PATH = "otlp-http", "/v1/traces"
FLAG, DETAILED = "--otlp-traces-endpoint", "--collect-detailed-traces"
SCHEMA = Path(__file__).with_name("schemas") / "otelcol" / f"config-{RELEASE}.json"


def collector_config_errors(config) -> list[str]:
    """Errors of a Collector configuration (parsed YAML): schema first (each with the key path),
    then the cross-references (only for a configuration the schema accepts)."""
    errs = [f"{'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
            for e in sorted(validator(SCHEMA).iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))]
    if errs:
        return errs
    defined = {kind: set(config.get(kind) or {}) for kind in ("receivers", "processors", "exporters")}
    used: dict[str, set[str]] = {kind: set() for kind in defined}
    for name, pipe in config["service"]["pipelines"].items():
        for kind in defined:
            for cid in pipe.get(kind, []):
                used[kind].add(cid)
                if cid not in defined[kind]:
                    errs.append(f"service.pipelines.{name}.{kind}: {cid!r} is not defined under {kind}")
        procs = pipe.get("processors", [])
        limiters = [i for i, p in enumerate(procs) if p.split("/")[0] == "memory_limiter"]
        if limiters and limiters != [0]:
            errs.append(f"service.pipelines.{name}.processors: memory_limiter must come first (it refuses data "
                        "before the others hold it)")
    errs += [f"{kind}.{cid}: defined but in no pipeline (it would do nothing)"
             for kind in defined for cid in sorted(defined[kind] - used[kind])]
    for cid, proc in (config.get("processors") or {}).items():
        if cid.split("/")[0] == "memory_limiter" and proc.get("spike_limit_mib", 0) >= proc.get("limit_mib", 1 << 32):
            errs.append(f"processors.{cid}: spike_limit_mib must be below limit_mib")
    return errs


def _named(docs: list[dict], kind: str, name: str) -> list[dict]:
    return [d for d in docs if d.get("kind") == kind and d["metadata"].get("name") == name]


def _flag_value(argv: list[str], flag: str) -> str | None:
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def _config(docs: list[dict], pod: dict, container: dict) -> tuple[dict | None, list[str]]:
    """(the parsed configuration file its --config names, errors) for the Collector container."""
    args = container.get("args") or []
    conf_arg = next((a.split("=", 1)[1] for a in args if a.startswith("--config=")), None)
    if conf_arg is None:
        return None, [f"container {COLLECTOR}: no --config=<file> argument"]
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    volume = next((v for v in pod.get("volumes", []) if v["name"] == mounts.get(posixpath.dirname(conf_arg))), None)
    cm_name = ((volume or {}).get("configMap") or {}).get("name")
    cms = _named(docs, "ConfigMap", cm_name) if cm_name else []
    if len(cms) != 1 or posixpath.basename(conf_arg) not in (cms[0].get("data") or {}):
        return None, [f"container {COLLECTOR}: --config={conf_arg} is not a key of a ConfigMap mounted there"]
    try:
        config = yaml.safe_load(cms[0]["data"][posixpath.basename(conf_arg)])
    except yaml.YAMLError as exc:
        return None, [f"ConfigMap/{cm_name} {posixpath.basename(conf_arg)}: not YAML ({exc})"]
    return config, []


def _file_exporter_errors(config: dict, pod: dict, container: dict) -> list[str]:
    """The traces pipeline ends in one file exporter writing uncompressed OTLP/JSON lines to
    COLLECTOR_SPANS_FILE, on a volume the reader sidecar mounts at the same path."""
    files = [(cid, e) for cid, e in config["exporters"].items() if cid.split("/")[0] == "file"]
    if len(files) != 1:
        return [f"exporters: expected one file exporter (the span file the k8s target reads), found {len(files)}"]
    cid, exp = files[0]
    errs = []
    if exp["path"] != COLLECTOR_SPANS_FILE:
        errs.append(f"exporters.{cid}.path: {exp['path']!r}; the k8s target reads {COLLECTOR_SPANS_FILE!r}")
    if exp.get("format", "json") != "json" or "compression" in exp:
        errs.append(f"exporters.{cid}: format json without compression (the reader reads JSON lines)")
    where = posixpath.dirname(COLLECTOR_SPANS_FILE)
    own = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    readers = [c for c in pod.get("containers", []) if c.get("name") == READER]
    theirs = {m["mountPath"]: m["name"] for m in (readers[0].get("volumeMounts", []) if readers else [])}
    if where not in own or own.get(where) != theirs.get(where):
        errs.append(f"{where}: the Collector and its {READER!r} sidecar must mount the same volume there")
    return errs


def _vllm_errors(docs: list[dict], pod_labels: dict) -> list[str]:
    """vLLM exports to the Collector Service's OTLP/HTTP port, over http/protobuf, detailed."""
    argv, env = engine_argv(docs), engine_container(docs).get("env", [])
    services = [d for d in _named(docs, "Service", COLLECTOR)
                if (d["spec"].get("selector") or {}).items() <= pod_labels.items()]
    ports = [p["port"] for s in services for p in s["spec"].get("ports", []) if p.get("targetPort") == HTTP_PORT_NAME]
    want = f"http://{COLLECTOR}:{ports[0]}{TRACES_PATH}" if ports else None
    errs = []
    if want is None:
        errs.append(f"Service/{COLLECTOR}: none selects the Collector's pods with a port to {HTTP_PORT_NAME!r}")
    elif _flag_value(argv, FLAG) != want:
        errs.append(f"vllm {FLAG} is {_flag_value(argv, FLAG)!r}, not the Collector's {want!r}")
    if _flag_value(argv, DETAILED) is None:
        errs.append(f"vllm: no {DETAILED} (the component turns detailed traces on)")
    if not any(e["name"] == "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL" and e.get("value") == "http/protobuf" for e in env):
        errs.append("vllm: OTEL_EXPORTER_OTLP_TRACES_PROTOCOL must be http/protobuf (vLLM's default is gRPC, "
                    f"the endpoint is the {HTTP_PORT_NAME} port)")
    return errs


def tracing_errors(docs: list[dict]) -> list[str]:
    """The tracing component's wiring in a rendered overlay (module docstring); [] without it,
    unless vLLM exports spans anyway."""
    deps = _named(docs, "Deployment", COLLECTOR)
    try:
        exports = _flag_value(engine_argv(docs), FLAG) is not None
    except ValueError as exc:
        return [str(exc)] if "command" in str(exc) else []  # no single vLLM container: policy's business
    if not deps:
        return [f"vllm exports spans ({FLAG}) but the overlay has no Deployment/{COLLECTOR} "
                "(add components/tracing)"] if exports else []
    dep = deps[0]
    pod = dep["spec"]["template"]["spec"]
    collector = next((c for c in pod.get("containers", []) if c.get("name") == COLLECTOR), None)
    if collector is None:
        return [f"Deployment/{COLLECTOR}: no container named {COLLECTOR!r}"]
    errs = []
    if collector.get("image") != IMAGE:
        errs.append(f"Deployment/{COLLECTOR}: image {collector.get('image')!r}; the configuration schema is "
                    f"written for {IMAGE} (bump both together)")
    if dep["spec"].get("replicas", 1) != 1:
        errs.append(f"Deployment/{COLLECTOR}: one replica (the run's spans are read from one pod's file)")
    config, conf_errs = _config(docs, pod, collector)
    errs += conf_errs
    if config is not None:
        config_errs = collector_config_errors(config)
        errs += [f"{COLLECTOR} {CONFIG_KEY}: {e}" for e in config_errs]
        if not config_errs:
            errs += _file_exporter_errors(config, pod, collector)
    return errs + _vllm_errors(docs, dep["spec"]["template"]["metadata"].get("labels") or {})
