"""The one file prologue and the one JSON-lines loop of every ingest reader.

Every raw file goes through the same steps, whichever reader asks:

1. **read**: through :data:`RAW_OPENER` when set (the run loader hashes the bytes as they are
   read, :mod:`inferlab.runs.verify`), else ``open(path, "rb")``;
2. **gunzip** when the bytes start with gzip's magic (the name is not trusted: a renamed file
   still reads). A stream cut short (a writer killed mid-file) decodes up to its last flush,
   with a note;
3. **check UTF-8**: the first bad byte is an :class:`IngestError` naming file, line and column;
4. **drop a cut last line**: a file not ending in a newline was cut off by its writer; that
   line is dropped (even when it parses: a number cut short still reads as a number), counted
   as skipped and noted (:class:`TruncatedLineWarning`). It is the one defect tolerated.

Whole files (:func:`read_bytes`, :func:`read_lines`, :func:`read_json`) serve the readers of
small files; :func:`iter_line_chunks` streams the same rules in bounded chunks of whole lines
for k6's output, which can be gigabytes. :func:`iter_json_lines` is the one JSON-lines loop:
blank lines are skipped with a note, a line that is not JSON is an error naming file and line.
Every function here keeps ``stats.lines_read`` (cut line included): the reader sets
``lines_used`` and adds its own skips.
"""

from __future__ import annotations

import codecs
import gzip
import io
import json
import zlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from .errors import IngestError, LineStats

GZIP_MAGIC = b"\x1f\x8b"
DEFAULT_CHUNK_BYTES = 16 << 20  # measured: 16 MB beat 8, 32 and 48 MB on speed, and on RSS all but 8

# Who opens a raw file for the readers: ``open(path, "rb")`` unless set. The run loader
# (inferlab.runs.verify) sets an opener whose reads also hash the bytes, so a recorded file is
# checked against run.json in the reader's own pass (no second read). It must return a
# buffered binary reader (``peek`` is used below).
RAW_OPENER: ContextVar[Callable[[str | Path], io.BufferedReader] | None] = ContextVar("RAW_OPENER", default=None)


def _open_raw(path: str | Path) -> io.BufferedReader:
    opener = RAW_OPENER.get()
    return opener(path) if opener else open(path, "rb")  # noqa: SIM115 - ownership passes to the caller


def open_maybe_gzip(path: str | Path) -> io.BufferedIOBase:
    """Open for binary reading, decompressing transparently when the file is gzip."""
    raw = _open_raw(path)
    if raw.peek(2)[:2] == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
    return raw


# --- whole files ---------------------------------------------------------------------------


def read_bytes(path: str | Path, stats: LineStats) -> bytes:
    """Steps 1-2: the file's bytes, gunzipped. A gzip stream cut short decodes up to its last
    sync flush (what the sampler and the span receiver flush), noted in ``stats``; a corrupt
    one is an IngestError. Concatenated gzip members are read one after another, as gzip does."""
    with _open_raw(path) as fh:
        raw = fh.read()
    if raw[:2] != GZIP_MAGIC:
        return raw
    parts = []
    while raw[:2] == GZIP_MAGIC:
        d = zlib.decompressobj(wbits=31)
        try:
            parts.append(d.decompress(raw))
        except zlib.error as exc:
            raise IngestError(path, None, "a gzip stream", str(exc)) from exc
        if not d.eof:
            stats.notes.append(f"{path}: gzip stream ends early (writer stopped mid-file): read up to its last flush")
            break
        raw = d.unused_data
    return b"".join(parts)


def split_lines(data: bytes, stats: LineStats) -> list[str]:
    """Steps 3-4 on bytes already read: the complete lines, without their newlines. Sets
    ``stats.lines_read`` (the cut line included). An empty file has no lines."""
    complete = not data or data.endswith(b"\n")
    check_utf8(data, stats.path, 1, complete)
    lines = data.decode("utf-8", errors="replace").split("\n")  # "replace" only reaches a cut last line
    lines.pop()  # "" after the final newline, or the cut last line
    stats.lines_read = len(lines) + (not complete)
    if not complete:
        stats.skip_truncated_tail(stats.lines_read)
    return lines


def read_lines(path: str | Path, stats: LineStats) -> list[str]:
    """The whole prologue (read, gunzip, check UTF-8, drop a cut last line): complete lines."""
    return split_lines(read_bytes(path, stats), stats)


def read_json(path: str | Path, stats: LineStats, expected: str) -> Any:
    """A whole-file JSON document, gzip or plain (steps 1-3)."""
    return parse_json(read_bytes(path, stats), stats, expected)


def parse_json(data: bytes, stats: LineStats, expected: str) -> Any:
    """A JSON document from bytes already read: bad UTF-8 or not JSON is an IngestError naming
    the line. ``stats.lines_read`` is the caller's to count (a document, or its lines)."""
    check_utf8(data, stats.path, 1)
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise IngestError(stats.path, exc.lineno, expected, str(exc)) from exc


# --- the JSON-lines loop -------------------------------------------------------------------


def iter_json_lines(path: str | Path, stats: LineStats, expected: str, *,
                    foreign: Callable[[str], bool] | None = None, foreign_what: str = "") -> Iterator[tuple[int, Any, str]]:
    """(line number, decoded value, the line) of every record line of a JSON-lines file (the whole
    prologue first). Blank lines are skipped, counted and noted one by one; lines ``foreign``
    picks (another program's lines mixed in, e.g. a controller's klog) are skipped, counted and
    summed up in one note as ``foreign_what``. A line that is not JSON is an IngestError naming
    file, line and ``expected``; the caller checks the fields (and names them in its errors).

    Decision: whole files, not chunks: the JSON-lines files (probe, edge log, spans) are MBs;
    the one large input, k6's output, streams through :func:`iter_line_chunks`."""
    n_foreign = 0
    for line_no, line in enumerate(read_lines(path, stats), start=1):
        if foreign is not None and foreign(line):
            stats.lines_skipped += 1
            n_foreign += 1
            continue
        obj = parse_json_line(line, line_no, stats, expected)
        if obj is not None:
            yield line_no, obj, line
    if n_foreign:
        stats.notes.append(f"{stats.path}: {n_foreign} {foreign_what} skipped")


def parse_json_line(line: str, line_no: int, stats: LineStats, expected: str) -> Any:
    """One line of a JSON-lines file: None for a blank line (skipped, counted, noted), else its
    value; not JSON is an IngestError naming file, line and ``expected``."""
    if not line.strip():
        stats.lines_skipped += 1
        stats.notes.append(f"{stats.path}:{line_no}: blank line skipped")
        return None
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        raise IngestError(stats.path, line_no, expected, line) from None


# --- streaming -----------------------------------------------------------------------------


def iter_line_chunks(path: str | Path, stats: LineStats,
                     chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Iterator[tuple[int, bytes]]:
    """The prologue, streamed: (number of the chunk's first line, about ``chunk_bytes`` of
    complete UTF-8 lines, each ending in a newline). Keeps ``stats.lines_read``; a cut last
    line is checked for UTF-8 (up to the cut), then dropped with a note.

    Decision: chunks of whole lines keep peak memory flat (a 2 GB k6 file never sits in memory
    whole) while letting the columnar engine see large batches. Read, then ``readline()`` to
    finish the last line, costs one copy per chunk; carrying a remainder over (``carry +
    block``, then slicing) cost two and was 2x slower."""
    with open_maybe_gzip(path) as fh:
        while block := fh.read(chunk_bytes):
            if not block.endswith(b"\n"):
                block += fh.readline()
            cut = block.rfind(b"\n") + 1
            whole = block if cut == len(block) else block[:cut]  # no copy in the common case
            if whole:
                first = stats.lines_read + 1
                check_utf8(whole, path, first)
                stats.lines_read += whole.count(b"\n")
                yield first, whole
            if cut < len(block):  # the file's unterminated last line (its writer may have died)
                check_utf8(block[cut:], path, stats.lines_read + 1, complete=False)
                stats.lines_read += 1
                stats.skip_truncated_tail(stats.lines_read)
                return


# --- UTF-8 ---------------------------------------------------------------------------------

_UTF8_SLICE = 1 << 20
def check_utf8(data: bytes, path: str | Path, first_line: int, complete: bool = True) -> int:
    """Raise IngestError at the first line of ``data`` (numbered from ``first_line``) that is not
    valid UTF-8. Returns the number of bytes valid; less than ``len(data)`` only when ``complete``
    is False and the data ends inside a multi-byte character (a writer killed mid-character: the
    caller treats that as a truncated final line).

    Decision: ``bytes.isascii()`` answers the common case at memory speed (~1 ms per 16 MB chunk);
    only non-ASCII data is decoded, in 1 MB slices so no 16 MB str is ever built, and the line
    number is worked out only on failure."""
    if data.isascii():
        return len(data)
    view, pos, n = memoryview(data), 0, len(data)
    try:
        while pos < n:
            end = min(pos + _UTF8_SLICE, n)
            _, used = codecs.utf_8_decode(view[pos:end], "strict", end == n and complete)
            if used == 0 and end == n:  # an incomplete character at the very end
                return pos
            pos += used
    except UnicodeDecodeError as exc:
        bad = pos + exc.start
        start = data.rfind(b"\n", 0, bad) + 1
        stop = data.find(b"\n", bad)
        line = data[start: stop if stop >= 0 else n]
        raise IngestError(
            path, first_line + data.count(b"\n", 0, bad),
            f"valid UTF-8, but byte 0x{data[bad]:02x} at column {bad - start + 1} is not",
            line.decode("utf-8", errors="replace"),
        ) from None
    return n
