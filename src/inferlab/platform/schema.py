"""JSON Schema validators for the schema files kept under ``platform/schemas`` (the Collector's
config, the project's own kinds), one per file, built on first use.

Decision: ``jsonschema`` is imported here on first use, not at module import: its import takes
~1 s (rfc3987-syntax builds a grammar), which every command that merely imports the deploy or
validate modules (ab, bisect, tune) would otherwise pay.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any


@cache
def validator(path: Path) -> Any:
    """A Draft 2020-12 validator of the schema in ``path`` (cached per path)."""
    import jsonschema

    return jsonschema.Draft202012Validator(json.loads(path.read_text()))
