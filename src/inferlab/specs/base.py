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
    bad field, dotted, with the line of ``p`` it sits on where the file has it (``slo.e2e_p95_ms:
    ... (line 12)``; a value given only as an override has no line)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        try:
            text = p.read_text()
        except OSError:
            text = ""
        lines = []
        for e in exc.errors():
            at = yaml_line(text, e["loc"])
            lines.append(f"  {'.'.join(str(x) for x in e['loc']) or f'({what})'}: {e['msg']}"
                         + (f" (line {at})" if at else ""))
        raise error(f"{p}: invalid {what}\n" + "\n".join(lines)) from None


def yaml_line(text: str, loc: tuple) -> int | None:
    """The 1-based line of the YAML ``text`` where the field at ``loc`` (pydantic's error location:
    keys and list indices) is written: the deepest part of ``loc`` the file has (a missing field:
    its parent's line); None for unparsable text or a location the file does not reach at all."""
    try:
        node = yaml.compose(text) if text.strip() else None
    except yaml.YAMLError:
        return None
    line = None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            hit = next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(key)), None)
            if hit is None:
                break
            line, node = hit[0].start_mark.line + 1, hit[1]  # the key's line: where the field is named
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            break
    return line
