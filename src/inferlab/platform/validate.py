"""Offline validation of platform/ (``make validate``), no cluster needed.

Every overlay: plain ``kubectl kustomize`` build (render.py); core objects against the
Kubernetes 1.32 schemas (``kubernetes-validate --strict``, a dev dependency, hence not
reachable from deploy); custom resources against the schemas the project keeps for the fields
it uses (``schemas/<Kind>.json``); policy and cross-object checks (checks.py); the ingress-nginx
controller's ConfigMap (``platform/ingress-controller``, its own namespace): its access-log format
is the local edge's and ``nginx -t`` accepts it; the tracing component's Collector
configuration against its release's schema, and its wiring (tracing.py); alert rules with
``promtool check rules`` and their unit tests with ``promtool test rules``; every PromQL
expression parses and names real metrics (promql.py). Without ``make secrets`` the build uses
throwaway keys in a temporary copy. Checks of objects rendered elsewhere (the in-cluster k6 Job,
which lives in ``inferlab.load``, which platform must not import) come in as ``extra_checks``.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import yaml

from ..nginx import main_config
from ..tools import ToolNotFound, find_tool, missing_tool, which_tool
from .checks import (INGRESS_CONTROLLER_DIR, custom_schema_errors, edge_log_source, ingress_controller_errors,
                     plaintext_secret_errors, policy_errors, tls_errors)
from .promql import promql_errors, run_promtool
from .render import SERVE, engine_of, kustomize_build, overlays, platform_dir, engine_container
from .tracing import tracing_errors

K8S_VERSION = "1.32"
RULE_TESTS = ("components", "monitoring", "rule-tests")  # under platform/: <PrometheusRule name>.test.yaml

Check = Callable[[], tuple[int, list[str]]]


def schema_errors(doc: dict) -> list[str]:
    """The project's schema for custom kinds it keeps one for, else Kubernetes 1.32 (strict)."""
    custom = custom_schema_errors(doc)
    if custom is not None:
        return custom
    import kubernetes_validate  # on first use: it imports jsonschema (~1 s; platform/schema.py)

    kind, name = doc.get("kind", "?"), doc.get("metadata", {}).get("name")
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{kind}/{name}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError:
        return [f"{kind} ({doc.get('apiVersion')}): no Kubernetes {K8S_VERSION} schema and no project schema"]
    return []


def promtool_errors(docs: list[dict]) -> list[str]:
    """``promtool check rules`` on every PrometheusRule, then ``promtool test rules`` with its
    unit tests (``platform/components/monitoring/rule-tests/<name>.test.yaml``)."""
    rules = [d for d in docs if d.get("kind") == "PrometheusRule"]
    if rules and not which_tool("promtool"):
        return [missing_tool("promtool")]
    errs = []
    for d in rules:
        name = d["metadata"]["name"]
        files = {"rules.yaml": yaml.safe_dump(d["spec"])}
        steps = [["check", "rules", "rules.yaml"]]
        unit_tests = platform_dir().joinpath(*RULE_TESTS, f"{name}.test.yaml")
        if unit_tests.is_file():
            files[unit_tests.name] = unit_tests.read_text()
            steps.append(["test", "rules", unit_tests.name])
        for step in steps:
            ok, out = run_promtool(step, files)
            if not ok:
                errs.append(f"PrometheusRule/{name}: promtool {step[0]} rules: {out[-800:]}")
    return errs


def object_errors(docs: list[dict]) -> list[str]:
    """Schema (Kubernetes 1.32 or the project's CRD schemas) and policy, per object."""
    return [e for d in docs for e in schema_errors(d) + policy_errors(d)]


def overlay_errors(overlay: str, docs: list[dict]) -> list[str]:
    errs = object_errors(docs) + tls_errors(docs) + tracing_errors(docs) + promtool_errors(docs) + promql_errors(docs)
    return [f"[{overlay}] {e}" for e in errs]


def validate_overlay(overlay: str) -> tuple[int, list[str]]:
    docs = kustomize_build(overlay)
    return len(docs), overlay_errors(overlay, docs)


def engine_lines(docs: list[dict]) -> list[str]:
    """The effective vLLM arguments and environment, references shown as such."""
    try:
        eng, command = engine_of(docs), engine_container(docs).get("command")
    except ValueError as exc:
        return [f"  vllm: {exc}"]
    return ["  vllm args: " + " ".join(eng["args"]),
            "  vllm env:  " + " ".join(f"{k}={v}" for k, v in eng["env"].items()),
            *(["  vllm command (replaces the image's `" + " ".join(SERVE) + "`): " + " ".join(command)]
              if command else [])]


def _overlay_check(name: str) -> tuple[int, list[str], list[str]]:
    try:
        docs = kustomize_build(name)
    except RuntimeError as exc:  # a broken kustomization fails its overlay, not the whole run
        return 0, [f"[{name}] {exc}"], []
    return len(docs), overlay_errors(name, docs), engine_lines(docs)


def ingress_controller_docs() -> list[dict]:
    """``kubectl kustomize platform/ingress-controller`` (no secrets in it, no overlay)."""
    path = platform_dir() / INGRESS_CONTROLLER_DIR
    proc = subprocess.run([find_tool("kubectl"), "kustomize", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"kustomize build of {path} failed:\n{proc.stderr[-2000:]}")
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def controller_nginx_errors(data: dict) -> list[str]:
    """``nginx -t`` (Debian's nginx) on the http-level lines the controller makes of the
    ConfigMap: its ``$req_id`` map, the ``http-snippet`` and ``log_format upstreaminfo
    escape=json '<log-format-upstream>'``, as ingress-nginx's template writes them."""
    try:
        nginx = find_tool("nginx")
    except ToolNotFound as exc:
        return [str(exc)]
    with tempfile.TemporaryDirectory(prefix="inferlab-ingress-log-") as tmp:
        d = Path(tmp)
        (d / "temp").mkdir()  # main_config's temp paths
        conf = d / "nginx.conf"
        conf.write_text(main_config(d, '  map $http_x_request_id $req_id { default $http_x_request_id; "" $request_id; }\n'
                                       f"{data.get('http-snippet', '')}\n"
                                       f"  log_format upstreaminfo escape=json '{data.get('log-format-upstream', '')}';\n"
                                       f"  access_log {d}/access.log upstreaminfo;"))
        proc = subprocess.run([nginx, "-t", "-p", tmp, "-e", str(d / "error.log"), "-c", str(conf)],
                              capture_output=True, text=True)
    return [] if proc.returncode == 0 else [f"nginx -t rejects the controller's log format: {proc.stderr.strip()[-600:]}"]


def validate_ingress_controller() -> tuple[int, list[str]]:
    """The controller's kustomization (its own namespace): Kubernetes schema, policy, the
    access-log format equal to the local edge's (one source) and accepted by nginx."""
    try:
        docs = ingress_controller_docs()
        errs = object_errors(docs) + ingress_controller_errors(docs)
        cm = next((d for d in docs if d.get("kind") == "ConfigMap"), None)
        errs += controller_nginx_errors(cm.get("data") or {}) if cm and not errs else []
        edge_log_source()  # the local edge can read it
    except (RuntimeError, ValueError, OSError) as exc:
        return 0, [f"[{INGRESS_CONTROLLER_DIR}] {exc}"]
    return len(docs), [f"[{INGRESS_CONTROLLER_DIR}] {e}" for e in errs]


def validate_all(verbose: bool = False, extra_checks: Iterable[tuple[str, Check]] = ()) -> bool:
    """Every overlay, then each ``(label, check)`` of ``extra_checks`` (a check returns
    ``(n_objects, errors)``); True when nothing failed. ``verbose`` prints one line per check
    and each overlay's effective vLLM arguments and environment."""
    ok = True
    for e in plaintext_secret_errors():
        print(e)
        ok = False
    checks = [(f"overlay {name}", lambda name=name: _overlay_check(name)) for name in overlays()]
    checks += [("ingress-nginx controller ConfigMap (access-log format = the local edge's)",
                lambda: (*validate_ingress_controller(), []))]
    checks += [(label, lambda check=check: (*check(), [])) for label, check in extra_checks]
    for label, check in checks:
        n, errs, notes = check()
        ok = ok and not errs
        if verbose:
            print(f"{'ok  ' if not errs else 'FAIL'} {label}: {n} objects" + "".join(f"\n  {e}" for e in errs))
            for line in notes:
                print(line)
    return ok
