"""Writing run records under the write-once contract.

Rules enforced here (tests: tests/runs/test_store.py, tests/runs/test_verify.py):
- a file, once written and closed, is never modified: new files are opened O_EXCL, and sealed
  (mode 0444) when registered. Mode 0444 only tells the writer a file is closed (ready to be
  recorded); once recorded, a file is judged by sha256 and size, never by mode
  (:mod:`inferlab.runs.verify`).
- a recorded file is never dropped from the inventory: at every checkpoint each one must still
  be there with its recorded size and sha256, else the writer refuses (write-once violated).
- ``run.json`` is the only file replaced, atomically (temp file + ``os.replace``), at cell
  boundaries.
- status ``running`` -> ``complete`` | ``partial`` | ``failed`` (+ reason). A ``running`` run
  whose writer process is gone is marked ``partial`` by :func:`reconcile`, an explicit step
  (``inferlab reconcile``; ``--resume`` does it first). Reading never reconciles: a reader
  shows such a run as :data:`INTERRUPTED` (:func:`interruption`) and writes nothing.
- a complete run is sealed: every file 0444, every directory 0555. Root ignores mode bits, so
  the writer also refuses to touch a sealed run in code, and ``--resume`` refuses a complete
  run before it changes any mode.
- ``--resume`` compares the spec it is given with the manifest's and refuses a difference
  unless allowed (:func:`spec_differences`).
"""

from __future__ import annotations

import hashlib
import os
import socket
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from .layout import MANIFEST, first_free
from .manifest import FileEntry, Manifest, WriterInfo
from .verify import Problem, check_recorded, files_on_disk, hash_file


class RunSealedError(PermissionError):
    """A write was attempted on a finished (sealed) run, or on one whose recorded files changed."""


class SpecMismatchError(RuntimeError):
    """``--resume`` was given a spec that differs from the one the run was made with."""


# not compared on resume: the spec's name is the run's label (already in its id); it measures nothing
SPEC_KEYS_NOT_COMPARED = ("name",)


def sha256_file(path: Path) -> str:
    return hash_file(path)[0]


def write_once(path: Path, data: bytes) -> Path:
    """Write a new file (O_EXCL: never overwrites one) and seal it (0444: closed for good)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    path.chmod(0o444)
    return path


def record_file(folder: Path, rel: str, data: bytes) -> FileEntry:
    """Write ``folder/rel`` once (:func:`write_once`, parents made) and return its entry (path,
    sha256, size) for a study record's inventory (answer passes, a bisect's steps)."""
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    write_once(path, data)
    return FileEntry(path=rel, sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))


def read_manifest(run_dir: Path) -> Manifest:
    return Manifest.model_validate_json((run_dir / MANIFEST).read_text())


def write_manifest(run_dir: Path, manifest: Manifest) -> None:
    """Atomically replace run.json (temp file in the same directory + rename)."""
    target = run_dir / MANIFEST
    tmp = run_dir / f".{MANIFEST}.{os.getpid()}.tmp"
    tmp.write_text(manifest.model_dump_json(indent=2) + "\n")
    if target.exists():
        target.chmod(0o644)
    os.replace(tmp, target)
    if manifest.status == "complete":
        target.chmod(0o444)


def current_writer() -> WriterInfo:
    proc = psutil.Process()
    return WriterInfo(pid=proc.pid, hostname=socket.gethostname(), process_started=proc.create_time())


def writer_alive(w: WriterInfo) -> bool:
    if w.hostname != socket.gethostname():
        return True  # cannot tell from here; assume alive rather than corrupt another host's run
    try:
        return abs(psutil.Process(w.pid).create_time() - w.process_started) < 1.0
    except psutil.Error:
        return False


def refuse_unresumable(what: str, status: str, writer: WriterInfo | None) -> None:
    """The one rule of every ``--resume`` (comparisons, bisects): RuntimeError for a record that is
    complete, or still ``running`` with its writer alive (or unnamed); ``what`` names it."""
    if status == "complete":
        raise RuntimeError(f"{what} is complete; nothing to resume")
    if status == "running" and (writer is None or writer_alive(writer)):
        who = f"pid {writer.pid} on {writer.hostname}" if writer else "a writer this record does not name"
        raise RuntimeError(f"{what} is still being written ({who}); nothing to resume")


# How a reader shows a ``running`` run whose writer is gone, until :func:`reconcile` records it
INTERRUPTED = "interrupted (not reconciled)"


def interruption(m: Manifest) -> str | None:
    """Why a ``running`` run can no longer finish (its writer process is gone), else None.
    Read-only: the one test of staleness, shared by :func:`reconcile` and the reader."""
    if m.status == "running" and m.writer and not writer_alive(m.writer):
        return f"writer pid {m.writer.pid} on {m.writer.hostname} exited before finishing"
    return None


def reconcile(run_dir: Path) -> Manifest:
    """The explicit write step for a dead writer's run: read the manifest; a ``running`` run
    whose writer is gone becomes ``partial`` (persisted: run.json replaced). Its writer can no
    longer close files, so every file is sealed and recorded now; recorded entries are kept as
    they are, also where a file changed (the record is the witness: reading that file, or
    ``inferlab verify``, then fails). Any other run is returned as read, untouched."""
    m = read_manifest(run_dir)
    why = interruption(m)
    if why is not None:
        m.status, m.reason = "partial", why
        for c in m.cells:
            if c.status == "running":
                c.status, c.reason = "partial", "interrupted: writer exited mid-cell"
        m.ended_at = m.ended_at or datetime.now(UTC)
        seal_files(run_dir)
        m.files = inventory(run_dir, m.files, strict=False)
        write_manifest(run_dir, m)
    return m


def seal_files(run_dir: Path) -> None:
    """Every file but run.json read-only (0444): closed for good, ready to be recorded."""
    for rel in files_on_disk(run_dir):
        p = run_dir / rel
        if p.is_file() and not p.is_symlink():
            p.chmod(0o444)


def describe_problems(run_dir: Path, problems: list[Problem]) -> str:
    return f"{run_dir}: recorded files changed after they were recorded (write-once violated): " + \
        "; ".join(map(str, problems))


def inventory(run_dir: Path, known: list[FileEntry], strict: bool = True) -> list[FileEntry]:
    """The manifest's file list: every recorded entry, kept as recorded, plus every closed
    (mode 0444) file not recorded yet, with sha256 and size. Files still being written
    (telemetry, k6 output) join at the next checkpoint after they close.

    A recorded file is never dropped: one that is missing or whose size or sha256 changed
    (whatever its mode) means raw data was rewritten: ``strict`` refuses (RunSealedError
    naming every such file); otherwise (a dead writer's run, see :func:`reconcile`) the entry
    stays as recorded."""
    problems = check_recorded(run_dir, known)
    if problems and strict:
        raise RunSealedError(describe_problems(run_dir, problems))
    recorded = {f.path: f for f in known}
    out = dict(recorded)
    for rel in files_on_disk(run_dir):
        p = run_dir / rel
        if rel in recorded or not p.is_file() or p.is_symlink() or p.stat().st_mode & 0o222:
            continue
        sha, n = hash_file(p)
        out[rel] = FileEntry(path=rel, sha256=sha, bytes=n)
    return [out[k] for k in sorted(out)]


def spec_differences(recorded: dict[str, Any], given: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two JSON-shaped specs, with both values."""
    out = []
    for key in sorted(set(recorded) | set(given)):
        dotted = f"{prefix}{key}"
        if not prefix and key in SPEC_KEYS_NOT_COMPARED:
            continue
        a, b = recorded.get(key, "(absent)"), given.get(key, "(absent)")
        if isinstance(a, dict) and isinstance(b, dict):
            out += spec_differences(a, b, dotted + ".")
        elif a != b:
            out.append(f"{dotted} ({_short(a)} -> {_short(b)})")
    return out


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


class RunWriter:
    """Owns one run directory while a sweep writes it."""

    def __init__(self, run_dir: Path, manifest: Manifest) -> None:
        self.dir, self.manifest = run_dir, manifest

    @classmethod
    def create(cls, run_dir: Path, manifest: Manifest) -> RunWriter:
        run_dir.mkdir(parents=True, exist_ok=False)
        manifest.writer = current_writer()
        w = cls(run_dir, manifest)
        w.checkpoint()
        return w

    @classmethod
    def resume(cls, run_dir: Path, spec: dict[str, Any] | None = None, allow_spec_change: bool = False) -> RunWriter:
        """Take a partial or failed run to add its missing cells. Refused, before any mode
        changes: a complete run, a run whose writer still runs, a ``spec`` (the resolved spec,
        JSON-shaped) that differs from the manifest's unless ``allow_spec_change``, and a run
        whose recorded files changed."""
        m = reconcile(run_dir)
        if m.status == "complete":
            raise RunSealedError(f"{run_dir}: run is complete and sealed; nothing to resume")
        if m.status == "running":
            raise RunSealedError(f"{run_dir}: its writer (pid {m.writer.pid if m.writer else '?'}) is still running")
        diff = spec_differences(m.spec, spec) if spec is not None else []
        if diff and not allow_spec_change:
            shown = "; ".join(diff[:8]) + (f"; and {len(diff) - 8} more" if len(diff) > 8 else "")
            raise SpecMismatchError(f"run {m.run_id} was made with a different spec ({len(diff)} differences, "
                                    f"recorded -> given): {shown}. Resume with the same spec and --set values, "
                                    "or pass --allow-spec-change")
        problems = check_recorded(run_dir, m.files)
        if problems:
            raise RunSealedError(describe_problems(run_dir, problems) + "; `inferlab verify` lists them")
        unseal_dirs(run_dir)
        m.status, m.reason, m.ended_at = "running", "", None
        m.writer = current_writer()
        m.notes.append(f"resumed at {datetime.now(UTC).isoformat()}")
        if diff:
            m.notes.append(f"resumed with a different spec (--allow-spec-change): {'; '.join(diff)}; "
                           "`spec` is still the one the run was made with")
        w = cls(run_dir, m)
        w.checkpoint()
        return w

    def path(self, rel: str) -> Path:
        """Absolute path for a new file; parents created; refuses existing files."""
        if self.manifest.status == "complete":
            raise RunSealedError(f"{self.dir}: sealed")
        p = self.dir / rel
        if p.exists():
            raise FileExistsError(f"{p}: already written (raw run files are write-once)")
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write_bytes(self, rel: str, data: bytes) -> Path:
        return write_once(self.path(rel), data)

    def write_text(self, rel: str, text: str) -> Path:
        return self.write_bytes(rel, text.encode())

    def note(self, text: str) -> None:
        """Add a note to the manifest once (a resumed run, or a second cell, does not repeat it)."""
        if text not in self.manifest.notes:
            self.manifest.notes.append(text)

    def seal_file(self, p: Path) -> None:
        """Mark a file that another process wrote as closed for good."""
        if p.exists():
            p.chmod(0o444)

    def set_aside(self, rel_dir: str, tag: str) -> str:
        """Move an earlier, unfinished attempt (e.g. a cell cut by Ctrl-C) out of the way so a
        retry can write the same names. Nothing is deleted: the directory becomes hidden sibling
        ``.<name>.<tag>`` and its recorded files move with it (same sha256, new paths)."""
        src = self.dir / rel_dir
        hidden = str(Path(rel_dir).with_name(f".{Path(rel_dir).name}.{tag}"))
        dst_rel = first_free(self.dir, hidden, lambda n: f"{hidden}-{n}")  # two attempts set aside in one second
        src.rename(self.dir / dst_rel)
        prefix = rel_dir.rstrip("/") + "/"
        for f in self.manifest.files:
            if f.path.startswith(prefix):
                f.path = dst_rel + "/" + f.path[len(prefix):]
        self.checkpoint()
        return dst_rel

    def checkpoint(self) -> None:
        """Refresh the file inventory and atomically replace run.json (a cell boundary)."""
        self.manifest.files = inventory(self.dir, self.manifest.files)
        write_manifest(self.dir, self.manifest)

    def finish(self, status: str, reason: str = "", ended_at: datetime | None = None) -> Manifest:
        seal_files(self.dir)
        self.manifest.status = status  # type: ignore[assignment]
        self.manifest.reason = reason
        self.manifest.ended_at = ended_at or datetime.now(UTC)
        self.checkpoint()
        if status == "complete":
            seal_tree(self.dir)
        return self.manifest


def seal_tree(run_dir: Path) -> None:
    """Files 0444 and directories 0555: a finished run reads, it does not change."""
    for p in sorted(run_dir.rglob("*"), reverse=True):
        p.chmod(0o555 if p.is_dir() else 0o444)
    run_dir.chmod(0o555)


def unseal_dirs(run_dir: Path) -> None:
    """Let a partial run take new cells (files stay 0444). Never a complete one."""
    if read_manifest(run_dir).status == "complete":
        raise RunSealedError(f"{run_dir}: run is complete and sealed; its directories stay read-only")
    run_dir.chmod(0o755)
    for p in run_dir.rglob("*"):
        if p.is_dir():
            p.chmod(p.stat().st_mode | stat.S_IWUSR)
