"""The one strict base of the project's own configs and records (public as ``inferlab.specs.StrictModel``), and
the one way a YAML config file is read: errors name the file and every bad field."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError


class StrictModel(BaseModel):
    """Unknown fields are errors; assignments are validated too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


M = TypeVar("M", bound=BaseModel)


def read_mapping(p: Path, what: str, error: type[Exception]) -> dict:
    """The YAML mapping in ``p`` ({} for an empty file); ``error`` names the file otherwise."""
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise error(f"{p}: cannot read YAML {what}: {exc}") from exc
    if not isinstance(data, dict):
        raise error(f"{p}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def validate_file(model: type[M], data: dict, p: Path, what: str, error: type[Exception]) -> M:
    """``model`` from ``data`` read from ``p``; a ValidationError becomes ``error`` listing every
    bad field, dotted (``slo.e2e_p95_ms: ...``)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(x) for x in e['loc']) or f'({what})'}: {e['msg']}" for e in exc.errors()]
        raise error(f"{p}: invalid {what}\n" + "\n".join(lines)) from None
