"""Spec files: a spec by path or by built-in name, with ``--set KEY=VALUE`` overrides and a run
label merged in, validated; every error names the file and each bad field (:class:`SpecError`)."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from .base import read_mapping, validate_file
from .models import LoadSpec


class SpecError(ValueError):
    """A spec file is invalid; the message names the file and every bad field."""


def load_spec(path: str | Path, overrides: dict | None = None) -> LoadSpec:
    p = Path(path)
    data = read_mapping(p, "spec", SpecError)
    _deep_merge(data, overrides or {})
    return validate_file(LoadSpec, data, p, "spec", SpecError)


def _deep_merge(base: dict, extra: dict) -> None:
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _deep_merge(base[k], v)
        else:
            base[k] = v


def parse_overrides(items: list[str]) -> dict:
    """``["model=smollm2", "slo.e2e_ms=5000", "concurrency=[1, 8]"]`` -> nested dict; values
    are YAML (numbers, lists, booleans), dotted keys reach nested fields. Validation happens
    with the spec, so an unknown key fails there, by name."""
    out: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"--set {item!r}: expected KEY=VALUE (e.g. model=smollm2, slo.e2e_ms=5000)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise SpecError(f"--set {item!r}: value is not YAML: {exc}") from None
        node = out
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def builtin_spec(name: str) -> Path:
    """Path of a spec shipped in the package (``inferlab/specs/<name>.yaml``)."""
    p = Path(__file__).resolve().parent / f"{name}.yaml"
    if not p.is_file():
        raise SpecError(f"no built-in spec {name!r} (have: {', '.join(sorted(x.stem for x in p.parent.glob('*.yaml')))})")
    return p


def resolve_spec(name_or_path: str, overrides: dict | None = None, sets: list[str] | None = None,
                 label: str | None = None) -> LoadSpec:
    """A spec by path, or by built-in name (``matrix-local``, ``stress-local``, ``ci-tiny``, ...),
    with ``--set KEY=VALUE`` items and a run label merged in: the one place the CLI, make and
    the notebooks combine them (precedence: file < overrides < sets < label)."""
    p = Path(name_or_path)
    if not p.exists() and not p.suffix:
        p = builtin_spec(name_or_path)
    merged: dict = {}
    _deep_merge(merged, overrides or {})
    _deep_merge(merged, parse_overrides(sets or []))
    if label:
        merged["name"] = label
    return load_spec(p, merged or None)


def spec_from_record(recorded: dict, run_json: Path, sets: list[str] | None = None) -> LoadSpec:
    """A run's recorded spec (``run.json``'s ``spec``) with ``--set KEY=VALUE`` items merged in:
    what ``--resume RUN_ID`` runs when no spec is named. A recorded spec that this version no
    longer validates is a SpecError naming ``run_json`` and each bad field."""
    merged = copy.deepcopy(recorded)
    _deep_merge(merged, parse_overrides(sets or []))
    return validate_file(LoadSpec, merged, run_json, "recorded spec", SpecError)
