"""Is a run record still what its manifest says? By sha256 and size, never by file mode.

Modes cannot be trusted as evidence: a fresh clone's sample files are 0644 (git keeps no
0444), and root ignores them. So the manifest's inventory (path, sha256, bytes) is the only
witness, and it is checked three ways:

- :func:`verify_run` (``inferlab verify RUN``): every recorded file is there with the same size
  and hash, and nothing else is in the run directory but ``run.json`` (set-aside attempts,
  ``cells/.<cell>.attempt-<time>/``, are recorded under their new paths, so they count as
  recorded). Read-only: it never reconciles or writes.
- :func:`read_verified` / :func:`open_verified` (the run loader): a table is read from a
  recorded file while its bytes are hashed, in the same pass; a size or hash that differs from
  the manifest raises :class:`RecordMismatchError` naming the file.
- the writer (:func:`inferlab.runs.store.inventory`) keeps every recorded entry and refuses a
  recorded file that is missing or changed (:func:`check_recorded`).
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from ..ingest.errors import IngestError
from ..ingest.lines import RAW_OPENER
from .layout import MANIFEST
from .manifest import FileEntry, Manifest

BLOCK = 1 << 20
T = TypeVar("T")


def is_manifest_temp(rel: str) -> bool:
    """``.run.json.<pid>.tmp``: the manifest's own temp file (write + rename), never data."""
    return "/" not in rel and rel.startswith(f".{MANIFEST}.") and rel.endswith(".tmp")


def hash_file(path: Path) -> tuple[str, int]:
    """(sha256 hex, bytes) of a file, streamed."""
    h, n = hashlib.sha256(), 0
    with open(path, "rb", buffering=0) as fh:
        buf = bytearray(BLOCK)
        view = memoryview(buf)
        while k := fh.readinto(buf):
            h.update(view[:k])
            n += k
    return h.hexdigest(), n


@dataclass(frozen=True)
class Problem:
    """One difference between a run directory and its manifest."""

    kind: Literal["missing", "changed", "unrecorded"]
    path: str  # relative to the run directory
    expected_bytes: int | None = None
    expected_sha256: str | None = None
    actual_bytes: int | None = None
    actual_sha256: str | None = None
    note: str = ""

    @property
    def detail(self) -> str:
        def side(n, sha):
            return f"{n} bytes, sha256 {sha[:12]}" if sha else f"{n} bytes"

        if self.kind == "missing":
            return f"recorded: {side(self.expected_bytes, self.expected_sha256)}; not there"
        if self.kind == "changed":
            now = self.note or side(self.actual_bytes, self.actual_sha256)
            return f"recorded: {side(self.expected_bytes, self.expected_sha256)}; now: {now}"
        return f"{self.note or side(self.actual_bytes, self.actual_sha256)}; not in run.json"

    def __str__(self) -> str:
        return f"{self.kind} {self.path} ({self.detail})"


def _check_one(run_dir: Path, f: FileEntry) -> Problem | None:
    p = run_dir / f.path
    try:
        p.lstat()
    except FileNotFoundError:
        return Problem("missing", f.path, f.bytes, f.sha256)
    if not p.is_file() or p.is_symlink():
        return Problem("changed", f.path, f.bytes, f.sha256, note="not a regular file")
    sha, n = hash_file(p)
    if sha != f.sha256 or n != f.bytes:
        return Problem("changed", f.path, f.bytes, f.sha256, n, sha)
    return None


def check_recorded(run_dir: Path, files: Iterable[FileEntry]) -> list[Problem]:
    """Every recorded file: missing, or changed in size or sha256 (mode is not looked at)."""
    return [p for f in files if (p := _check_one(run_dir, f)) is not None]


def files_on_disk(run_dir: Path) -> Iterator[str]:
    """Every entry under the run that is not a directory (files, links, anything else),
    relative posix paths, but run.json and its temp file. Links are not followed."""
    for root, dirs, names in os.walk(run_dir, followlinks=False):
        base = Path(root)
        for d in list(dirs):
            if (base / d).is_symlink():
                names.append(d)  # a link to a directory is an entry, not a place to walk
                dirs.remove(d)
        for name in names:
            rel = (base / name).relative_to(run_dir).as_posix()
            if rel != MANIFEST and not is_manifest_temp(rel):
                yield rel


def unrecorded(run_dir: Path, files: Iterable[FileEntry]) -> list[Problem]:
    recorded = {f.path for f in files}
    out = []
    for rel in sorted(files_on_disk(run_dir)):
        if rel in recorded:
            continue
        p = run_dir / rel
        if p.is_file() and not p.is_symlink():
            sha, n = hash_file(p)
            out.append(Problem("unrecorded", rel, actual_bytes=n, actual_sha256=sha))
        else:
            out.append(Problem("unrecorded", rel, actual_bytes=p.lstat().st_size, note="not a regular file"))
    return out


def verify_run(run: Any) -> list[Problem]:
    """Every missing, changed or unrecorded file of a run: a ``Run`` or its directory (resolve
    a run id with :func:`inferlab.runs.reader.find_run_dir`). Read-only: the manifest is read
    as it is, nothing is reconciled or written. A run still being written shows the files its
    writer has not closed yet as unrecorded."""
    run_dir = Path(run.dir if hasattr(run, "dir") else run)
    m = Manifest.model_validate_json((run_dir / MANIFEST).read_text())
    return check_recorded(run_dir, m.files) + unrecorded(run_dir, m.files)


def format_report(run_id: str, status: str, problems: list[Problem], n_files: int) -> str:
    """What ``inferlab verify`` prints."""
    if not problems:
        return f"{run_id}: OK, {n_files} recorded files match run.json (sha256 and size)"
    counts = {k: sum(p.kind == k for p in problems) for k in ("missing", "changed", "unrecorded")}
    head = f"{run_id}: FAILED ({', '.join(f'{n} {k}' for k, n in counts.items() if n)} of {n_files} recorded)"
    tail = ["(the run is still being written: files its writer has not closed yet are unrecorded)"] \
        if status == "running" else []
    return "\n".join([head, *[f"  {p.kind:<11}{p.path}  ({p.detail})" for p in problems], *tail])


# --- reading with verification ------------------------------------------------------------


class RecordMismatchError(IngestError):
    """A file read for a table is not the file the manifest recorded (or is not recorded)."""

    def __init__(self, path: Path, expected: str, got: str) -> None:
        super().__init__(path, None, expected, "")
        self.args = (f"{path}: {got}, but run.json records {expected} "
                     "(`inferlab verify RUN` lists every difference)",)

    def __str__(self) -> str:
        return self.args[0]


def _describe(entry: FileEntry) -> str:
    return f"{entry.bytes} bytes, sha256 {entry.sha256[:12]}"


class HashingRaw(io.RawIOBase):
    """A raw, read-only, sequential file whose every byte read updates a sha256 and a count.
    Wrapped in ``io.BufferedReader`` it is what a reader (pandas, gzip, the ingest chunk loop)
    sees, so the hash is taken in the reader's own pass over the file."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._f = open(path, "rb", buffering=0)  # noqa: SIM115 - closed in close()
        self.name, self.mode = str(path), "rb"
        self.sha, self.count = hashlib.sha256(), 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self._f.readinto(b)
        if n:
            with memoryview(b) as view:
                self.sha.update(view[:n])
            self.count += n
        return n

    def drain(self) -> tuple[str, int]:
        """Hash what the consumer did not read (it may stop at a gzip trailer, or at a parse
        error and close the file): the rest from where it stopped; (sha256, bytes)."""
        if self._f.closed:
            self._f = open(self.path, "rb", buffering=0)  # noqa: SIM115 - closed below
            self._f.seek(self.count)
        buf = bytearray(BLOCK)
        while self.readinto(buf):
            pass
        self._f.close()
        return self.sha.hexdigest(), self.count

    def close(self) -> None:
        if not self.closed:
            self._f.close()
        super().close()


def _size_check(path: Path, entry: FileEntry) -> None:
    """Before any byte is parsed: a size that differs is a changed file (cheap, stat only)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise RecordMismatchError(path, _describe(entry), "missing") from None
    if size != entry.bytes:
        raise RecordMismatchError(path, _describe(entry), f"{size} bytes now (changed)")


def _compare(path: Path, entry: FileEntry, sha: str, n: int) -> RecordMismatchError | None:
    if sha == entry.sha256 and n == entry.bytes:
        return None
    return RecordMismatchError(path, _describe(entry), f"read {n} bytes, sha256 {sha[:12]} (changed)")


class _Session:
    """Hashing raws opened for one recorded file during one read."""

    def __init__(self, path: Path) -> None:
        self.path, self.raws = path, []

    def open(self, p) -> io.BufferedReader:
        if Path(p) != self.path:
            return open(p, "rb")  # noqa: SIM115 - not the file we verify; the caller owns it
        raw = HashingRaw(self.path)
        self.raws.append(raw)
        return io.BufferedReader(raw, buffer_size=BLOCK)

    def finish(self, entry: FileEntry) -> RecordMismatchError | None:
        """Compare every pass over the file; None when nothing opened it through us."""
        err = None
        for raw in self.raws:
            sha, n = raw.drain()
            raw.close()
            err = err or _compare(self.path, entry, sha, n)
        return err


@contextmanager
def open_verified(path: Path, entry: FileEntry) -> Iterator[io.BufferedReader]:
    """A recorded file opened for binary reading (pandas, json...); on leaving, the bytes that
    went through it (and the rest of the file, if the consumer stopped early) must be the
    recorded ones, else :class:`RecordMismatchError`. An error while parsing a file that turns
    out to be changed is reported as the change (the parse error is its cause)."""
    _size_check(path, entry)
    s = _Session(path)
    fh = s.open(path)
    try:
        yield fh
    except Exception as exc:
        if err := s.finish(entry):
            raise err from exc
        raise
    if err := s.finish(entry):
        raise err


def read_verified(path: Path, entry: FileEntry, reader: Callable[..., T], *args: Any, **kw: Any) -> T:
    """``reader(path, *args)`` for an ingest reader, with the file's bytes hashed as the reader
    pulls them (every ingest reader opens through :data:`inferlab.ingest.lines.RAW_OPENER`) and
    compared with the manifest's record afterwards. A reader that opens the file some other way
    (a plain ``json.loads(path.read_bytes())``) gets it hashed in a second, streamed pass right
    after (same bytes, page cache warm)."""
    _size_check(path, entry)
    s = _Session(path)
    token = RAW_OPENER.set(s.open)
    try:
        out = reader(path, *args, **kw)
    except Exception as exc:
        err = s.finish(entry) if s.raws else _compare(path, entry, *hash_file(path))
        if err:
            raise err from exc
        raise
    finally:
        RAW_OPENER.reset(token)
    err = s.finish(entry) if s.raws else _compare(path, entry, *hash_file(path))
    if err:
        raise err
    return out
