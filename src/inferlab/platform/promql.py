"""Every PromQL expression the platform ships parses and names only metrics that exist.

Why: an alert on a misspelt or renamed metric never fires and a dashboard panel on one stays
empty, and neither says so. Expressions come from PrometheusRules, Grafana dashboard
ConfigMaps (label ``grafana_dashboard``) and KEDA Prometheus triggers. Syntax: ``promtool
check rules`` on them as recording rules (Grafana's ``$__rate_interval`` and friends replaced
by durations). Names: against the families a real vLLM 0.24 /metrics scrape exposes and the
DCGM exporter's default device fields (``schemas/*.txt``, origins noted in their headers).
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from pathlib import Path

import yaml

from ..tools import missing_tool, which_tool

SCHEMAS = Path(__file__).with_name("schemas")
KNOWN_FILES = ("vllm-0.24.0-metrics.txt", "dcgm-exporter-fields.txt")
GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
METRIC = re.compile(r"\b(vllm:[A-Za-z0-9_:]+|DCGM_FI_[A-Z0-9_]+)")


def known_metrics() -> set[str]:
    """Series names: each family, plus _bucket/_sum/_count for histograms."""
    names = set()
    for f in KNOWN_FILES:
        for line in (SCHEMAS / f).read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                name, kind = line.split()
                names.add(name)
                if kind == "histogram":
                    names.update(f"{name}{s}" for s in ("_bucket", "_sum", "_count"))
    return names


def expressions(docs: list[dict]) -> list[tuple[str, str]]:
    """(where, expr) for every PromQL expression in the rendered objects."""
    out = []
    for d in docs:
        kind, name = d.get("kind"), d.get("metadata", {}).get("name")
        if kind == "PrometheusRule":
            for g in d["spec"].get("groups", []):
                out += [(f"PrometheusRule/{name} {r.get('alert') or r.get('record')}", r["expr"]) for r in g["rules"]]
        elif kind == "ConfigMap" and "grafana_dashboard" in (d["metadata"].get("labels") or {}):
            for key, text in (d.get("data") or {}).items():
                for panel in json.loads(text).get("panels", []):
                    out += [(f"ConfigMap/{name} {key} panel {panel.get('title')!r}", t["expr"])
                            for t in panel.get("targets", []) if t.get("expr")]
        elif kind == "ScaledObject":
            out += [(f"ScaledObject/{name} trigger", t["metadata"]["query"])
                    for t in d["spec"].get("triggers", []) if t.get("type") == "prometheus"]
    return out


def name_errors(exprs: list[tuple[str, str]]) -> list[str]:
    known = known_metrics()
    return [f"{where}: unknown metric {m} (not exposed by vLLM 0.24 / DCGM defaults; see {SCHEMAS.name}/)"
            for where, expr in exprs for m in METRIC.findall(expr) if m not in known]


def run_promtool(args: list[str], files: dict[str, str]) -> tuple[bool, str]:
    """``promtool <args>`` in a scratch directory holding ``files`` (name -> text), so rule
    files and the unit tests that name them sit side by side. Returns (ok, output)."""
    promtool = which_tool("promtool")
    if not promtool:
        return False, missing_tool("promtool")
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in files.items():
            (Path(tmp) / name).write_text(text)
        proc = subprocess.run([promtool, *args], capture_output=True, text=True, cwd=tmp)
    return proc.returncode == 0, (proc.stdout + proc.stderr).strip()


def _parses(exprs: list[str]) -> tuple[bool, str]:
    rules = {"groups": [{"name": "inferlab-check", "rules": [
        {"record": f"inferlab_check:e{i}", "expr": e} for i, e in enumerate(exprs)]}]}
    return run_promtool(["check", "rules", "rules.yaml"], {"rules.yaml": yaml.safe_dump(rules)})


def syntax_errors(exprs: list[tuple[str, str]]) -> list[str]:
    """promtool on all at once; on failure, one by one to name the culprit(s)."""
    if not exprs:
        return []
    if not which_tool("promtool"):
        return [missing_tool("promtool")]
    resolved = []
    for where, expr in exprs:
        for var, value in GRAFANA_VARS.items():
            expr = expr.replace(var, value)
        resolved.append((where, expr))
    if _parses([e for _, e in resolved])[0]:
        return []
    errs = []
    for where, expr in resolved:
        ok, out = _parses([expr])
        if not ok:
            errs.append(f"{where}: PromQL does not parse: {out[-300:]}")
    return errs


def promql_errors(docs: list[dict]) -> list[str]:
    exprs = expressions(docs)
    return syntax_errors(exprs) + name_errors(exprs)
