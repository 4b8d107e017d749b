"""Offline validation of platform/ (``make validate``), no cluster needed.

Every overlay: ``kubectl kustomize`` build; core objects against the Kubernetes 1.32 schemas
(``kubernetes-validate --strict``); custom resources against the schemas the project keeps for
the fields it uses (``schemas/<Kind>.json``); policy (resources and probes on every container,
no ``:latest`` or untagged images, no plaintext secrets in git, standard labels); alert rules
with ``promtool check rules``; every PromQL expression (rules, dashboards, KEDA) parses and names
real metrics (promql.py). Where ``.secrets/api-key`` is missing, a throwaway one is made
for the build and removed after.
"""

from __future__ import annotations

import contextlib
import json
import secrets as rnd
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

from .. import paths
from ..secrets import create_private
from .promql import promql_errors, run_promtool

K8S_VERSION = "1.32"
SCHEMAS = Path(__file__).with_name("schemas")
REQUIRED_LABELS = ("app.kubernetes.io/part-of", "app.kubernetes.io/managed-by")


def platform_dir() -> Path:
    return paths.install_root() / "platform"


def overlays() -> list[str]:
    return sorted(p.name for p in (platform_dir() / "overlays").iterdir() if (p / "kustomization.yaml").is_file())


GENERATOR_INPUTS = ("api-key", "chat-ui-htpasswd")  # files the secretGenerators read from .secrets/


@contextlib.contextmanager
def generator_inputs() -> Iterator[None]:
    """A fresh clone has no .secrets/: create throwaway generator inputs for the build, then
    remove them (real ones come from `make secrets` and are left alone)."""
    d = paths.install_root() / ".secrets"
    made = []
    for name in GENERATOR_INPUTS:
        f = d / name
        if not f.exists():
            d.mkdir(mode=0o700, exist_ok=True)
            made.append(create_private(f, rnd.token_urlsafe(24)))
    try:
        yield
    finally:
        for f in made:
            f.unlink()


def kustomize_build(overlay: str) -> list[dict]:
    kubectl = shutil.which("kubectl")
    if not kubectl:
        raise RuntimeError("kubectl (with built-in kustomize) not found: install kubectl (Debian: kubernetes-client)")
    with generator_inputs():
        proc = subprocess.run([kubectl, "kustomize", "--load-restrictor", "LoadRestrictionsNone",
                               str(platform_dir() / "overlays" / overlay)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"kustomize build of overlay {overlay!r} failed:\n{proc.stderr[-2000:]}")
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def schema_errors(doc: dict) -> list[str]:
    kind = doc.get("kind", "?")
    custom = SCHEMAS / f"{kind}.json"
    if custom.is_file():
        v = jsonschema.Draft202012Validator(json.loads(custom.read_text()))
        return [f"{kind}/{doc['metadata'].get('name')}: {'.'.join(map(str, e.path))}: {e.message}" for e in v.iter_errors(doc)]
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{kind}/{doc['metadata'].get('name')}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError:
        return [f"{kind} ({doc.get('apiVersion')}): no Kubernetes {K8S_VERSION} schema and no project schema in {SCHEMAS}"]
    return []


def policy_errors(doc: dict) -> list[str]:
    kind, name = doc.get("kind"), doc.get("metadata", {}).get("name")
    where = f"{kind}/{name}"
    errs = [f"{where}: missing label {label}" for label in REQUIRED_LABELS
            if label not in (doc.get("metadata", {}).get("labels") or {})]
    pod = doc.get("spec", {}).get("template", {}).get("spec") if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job") else None
    for c in [*(pod or {}).get("initContainers", []), *(pod or {}).get("containers", [])]:
        image = c.get("image", "")
        tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
        if not tag or tag == "latest":
            errs.append(f"{where}: container {c['name']} image {image!r} must be pinned to a tag (not latest)")
        res = c.get("resources", {})
        if not res.get("requests") or not res.get("limits"):
            errs.append(f"{where}: container {c['name']} needs resource requests and limits")
        if kind != "Job" and c in (pod or {}).get("containers", []):
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                if probe not in c:
                    errs.append(f"{where}: container {c['name']} has no {probe}")
        for env in c.get("env", []):
            if any(s in env["name"].upper() for s in ("KEY", "TOKEN", "PASSWORD", "SECRET")) and "value" in env:
                errs.append(f"{where}: env {env['name']} holds a literal; use secretKeyRef")
    return errs


def plaintext_secret_errors() -> list[str]:
    """No Secret object with data in tracked platform files: secrets come from the generator."""
    errs = []
    for f in platform_dir().rglob("*.yaml"):
        for doc in yaml.safe_load_all(f.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "Secret" and (doc.get("data") or doc.get("stringData")):
                errs.append(f"{f}: a Secret with data is committed; use the secretGenerator and .secrets/")
    return errs


def promtool_errors(docs: list[dict]) -> list[str]:
    """``promtool check rules`` on every PrometheusRule, then ``promtool test rules`` with its
    unit tests (``platform/monitoring/rule-tests/<name>.test.yaml``, rules written beside it)."""
    rules = [d for d in docs if d.get("kind") == "PrometheusRule"]
    if rules and not shutil.which("promtool"):
        return ["promtool not found: `make system-deps` (Debian package prometheus)"]
    errs = []
    for d in rules:
        name = d["metadata"]["name"]
        files = {"rules.yaml": yaml.safe_dump(d["spec"])}
        steps = [["check", "rules", "rules.yaml"]]
        unit_tests = platform_dir() / "monitoring" / "rule-tests" / f"{name}.test.yaml"
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


def validate_overlay(overlay: str) -> tuple[int, list[str]]:
    docs = kustomize_build(overlay)
    errs = object_errors(docs) + promtool_errors(docs) + promql_errors(docs)
    return len(docs), [f"[{overlay}] {e}" for e in errs]


def validate_load_job(spec_name: str = "matrix-gpu") -> tuple[int, list[str]]:
    """The in-cluster k6 Job (rendered from code, not kept as YAML) passes the same checks."""
    from ..load.incluster import render
    from ..load.spec import builtin_spec, load_spec, plan_cells

    spec = load_spec(builtin_spec(spec_name), {"k6_segments": 2, "concurrency": [64]})
    docs = render(spec, plan_cells(spec)[-1], "20261126T000000Z-k8s-validate", "inferlab",
                  "http://vllm.inferlab.svc:8000", "vllm-api-key")
    return len(docs), [f"[k6 Job] {e}" for e in object_errors(docs)]


def validate_all(verbose: bool = False) -> bool:
    ok = True
    for e in plaintext_secret_errors():
        print(e)
        ok = False
    checks = [("in-cluster k6 Job (ConfigMap + Indexed Job, 2 segments)", validate_load_job)]
    checks += [(f"overlay {name}", lambda name=name: validate_overlay(name)) for name in overlays()]
    for label, check in checks:
        n, errs = check()
        ok = ok and not errs
        if verbose:
            print(f"{'ok  ' if not errs else 'FAIL'} {label}: {n} objects" + "".join(f"\n  {e}" for e in errs))
    return ok
