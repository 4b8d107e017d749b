"""Answer files (:mod:`inferlab.formats.answers`) -> their lines, checked field by field.

Contract as every ingest reader's: the lines, or an IngestError naming file, line and what was
expected (a line that is not an answer line, a prompt id twice)."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from ..formats.answers import AnswerLine
from .errors import IngestError, LineStats
from .lines import iter_json_lines

EXPECTED = "an answer line (inferlab.answers/1: prompt_id, status, tokens, ...)"


def read_answers(path: str | Path) -> list[AnswerLine]:
    stats = LineStats(path=str(path))
    out: list[AnswerLine] = []
    seen: set[str] = set()
    for line_no, obj, line in iter_json_lines(path, stats, EXPECTED):
        try:
            a = AnswerLine.model_validate(obj)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(x) for x in err["loc"])
            raise IngestError(path, line_no, f"{EXPECTED}; field {field!r}: {err['msg']}", line) from None
        if a.prompt_id in seen:
            raise IngestError(path, line_no, f"each prompt once; {a.prompt_id!r} again", line)
        seen.add(a.prompt_id)
        out.append(a)
        stats.lines_used += 1
    return out
