"""Writing run records under the write-once contract.

Rules enforced here (tests: tests/runs/test_store.py):
- a file, once written and closed, is never modified: new files are opened O_EXCL, and sealed
  (mode 0444) when registered; registering a file whose recorded sha256 changed is an error.
- ``run.json`` is the only file replaced, atomically (temp file + ``os.replace``), at cell
  boundaries.
- status ``running`` -> ``complete`` | ``partial`` | ``failed`` (+ reason). A ``running`` run
  whose writer process is gone is marked ``partial`` on next access (:func:`reconcile`).
- a complete run is sealed: every file 0444, every directory 0555. Root ignores mode bits, so
  the writer also refuses to touch a sealed run in code.
"""

from __future__ import annotations

import hashlib
import os
import socket
import stat
from datetime import UTC, datetime
from pathlib import Path

import psutil

from .layout import MANIFEST
from .manifest import FileEntry, Manifest, WriterInfo


class RunSealedError(PermissionError):
    """A write was attempted on a finished (sealed) run."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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


def reconcile(run_dir: Path) -> Manifest:
    """Read a manifest; a ``running`` run whose writer is gone becomes ``partial`` (persisted)."""
    m = read_manifest(run_dir)
    if m.status == "running" and m.writer and not writer_alive(m.writer):
        m.status = "partial"
        m.reason = f"writer pid {m.writer.pid} on {m.writer.hostname} exited before finishing"
        for c in m.cells:
            if c.status == "running":
                c.status, c.reason = "partial", "interrupted: writer exited mid-cell"
        m.ended_at = m.ended_at or datetime.now(UTC)
        m.files = inventory(run_dir, m.files)
        write_manifest(run_dir, m)
    return m


def inventory(run_dir: Path, known: list[FileEntry]) -> list[FileEntry]:
    """Every closed (sealed, mode 0444) file under the run but run.json, with sha256 and size.
    Files still being written (telemetry, k6 output) join at the next checkpoint after they
    close. A recorded file whose hash changed means raw data was rewritten: refuse."""
    recorded = {f.path: f for f in known}
    out = []
    for p in sorted(run_dir.rglob("*")):
        rel = p.relative_to(run_dir).as_posix()
        if not p.is_file() or rel == MANIFEST or p.name.startswith(".") or p.stat().st_mode & 0o222:
            continue
        digest = sha256_file(p)
        old = recorded.get(rel)
        if old and old.sha256 != digest:
            raise RunSealedError(f"{run_dir / rel}: changed after it was recorded (write-once violated)")
        out.append(FileEntry(path=rel, sha256=digest, bytes=p.stat().st_size))
    return out


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
    def resume(cls, run_dir: Path) -> RunWriter:
        m = reconcile(run_dir)
        if m.status == "complete":
            raise RunSealedError(f"{run_dir}: run is complete and sealed; nothing to resume")
        if m.status == "running":
            raise RunSealedError(f"{run_dir}: its writer (pid {m.writer.pid if m.writer else '?'}) is still running")
        m.status, m.reason, m.ended_at = "running", "", None
        m.writer = current_writer()
        m.notes.append(f"resumed at {datetime.now(UTC).isoformat()}")
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
        p = self.path(rel)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        p.chmod(0o444)
        return p

    def write_text(self, rel: str, text: str) -> Path:
        return self.write_bytes(rel, text.encode())

    def seal_file(self, p: Path) -> None:
        """Mark a file that another process wrote as closed for good."""
        if p.exists():
            p.chmod(0o444)

    def set_aside(self, rel_dir: str, tag: str) -> str:
        """Move an earlier, unfinished attempt (e.g. a cell cut by Ctrl-C) out of the way so a
        retry can write the same names. Nothing is deleted: the directory becomes hidden sibling
        ``.<name>.<tag>`` and its recorded files move with it (same sha256, new paths)."""
        src = self.dir / rel_dir
        dst_rel = str(Path(rel_dir).with_name(f".{Path(rel_dir).name}.{tag}"))
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
        for p in self.dir.rglob("*"):
            if p.is_file() and p.name != MANIFEST:
                p.chmod(0o444)
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
    """Let a partial run take new cells (files stay 0444)."""
    run_dir.chmod(0o755)
    for p in run_dir.rglob("*"):
        if p.is_dir():
            p.chmod(p.stat().st_mode | stat.S_IWUSR)
