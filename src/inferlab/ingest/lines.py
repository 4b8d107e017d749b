"""Stream a (possibly gzip'd) line-oriented file in bounded chunks of whole lines.

Decision: chunks of whole lines keep peak memory flat (a 2 GB k6 file never sits in memory
whole) while letting the columnar engine see large batches. Compression is detected by magic
bytes, not by the file name, so a renamed file still reads.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

GZIP_MAGIC = b"\x1f\x8b"
DEFAULT_CHUNK_BYTES = 48 << 20


@dataclass
class Chunk:
    data: bytes  # whole lines; only the file's final chunk may lack the trailing newline
    first_line: int  # 1-based number of the chunk's first line
    n_lines: int
    complete: bool  # False: the file's last line had no newline (its writer may have died)


def open_maybe_gzip(path: str | Path) -> io.BufferedIOBase:
    """Open for binary reading, decompressing transparently when the file is gzip."""
    raw = open(path, "rb")  # noqa: SIM115 - ownership passes to the caller
    if raw.peek(2)[:2] == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
    return raw


def iter_line_chunks(path: str | Path, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Iterator[Chunk]:
    """Yield chunks of complete lines; the last chunk may end without a newline."""
    line_no = 1
    carry = b""
    with open_maybe_gzip(path) as fh:
        while True:
            block = fh.read(chunk_bytes)
            if not block:
                if carry:
                    yield Chunk(carry, line_no, 1, False)
                return
            buf = carry + block
            cut = buf.rfind(b"\n")
            if cut < 0:
                carry = buf
                continue
            body, carry = buf[: cut + 1], buf[cut + 1 :]
            n = body.count(b"\n")
            yield Chunk(body, line_no, n, True)
            line_no += n
