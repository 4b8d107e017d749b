"""Secrets live in one git-ignored folder, ``platform/secrets/values/`` (:func:`inferlab.paths.secrets_dir`;
mode 0700, files 0600), and nowhere else; the platform's kustomize secretGenerator reads it.

They reach processes through the environment (``VLLM_API_KEY`` for the engine,
``INFERLAB_API_KEY`` for k6 and the probe), never argv, logs, manifests or reports.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from . import paths

API_KEY_ENV = "INFERLAB_API_KEY"
API_KEY_FILE = "api-key"


def secrets_dir() -> Path:
    d = paths.secrets_dir()
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    d.chmod(0o700)
    return d


def create_private(path: Path, text: str) -> Path:
    """A new file only this user can read (0600 from its first byte; an existing file is an
    error, never overwritten): throwaway generator inputs, configs that embed a key."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return path


def write_secret(name: str, value: str) -> Path:
    p = secrets_dir() / name
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    p.chmod(0o600)
    return p


def get_or_create(name: str, nbytes: int = 32) -> str:
    """Read a secret, creating a random one on first use."""
    p = secrets_dir() / name
    if p.is_file():
        return p.read_text().strip()
    value = secrets.token_urlsafe(nbytes)
    write_secret(name, value)
    return value


def api_key(target_kind: str) -> str | None:
    """The key for a target: ``$INFERLAB_API_KEY`` wins; the local engine's own key otherwise;
    for url/k8s targets, ``api-key`` in the secrets folder when ``make secrets`` made one; else None."""
    env = os.environ.get(API_KEY_ENV)
    if env:
        return env
    if target_kind == "local":
        return get_or_create(API_KEY_FILE)
    p = paths.secrets_dir() / API_KEY_FILE
    return p.read_text().strip() if p.is_file() else None


def known_secret_values() -> list[str]:
    """Every secret value on this machine (for leak scans in tests and report rendering)."""
    values = [os.environ[API_KEY_ENV]] if os.environ.get(API_KEY_ENV) else []
    d = paths.secrets_dir()
    if d.is_dir():
        for p in d.iterdir():  # the secrets themselves; subfolders hold generated configs (ui-*/)
            if p.is_file():
                values.extend(v.strip() for v in p.read_text(errors="ignore").splitlines() if len(v.strip()) >= 12)
    return values
