"""``make secrets``: random platform secrets in .secrets/ (0700/0600) for the kustomize secretGenerator."""

from __future__ import annotations

import secrets as rnd
from pathlib import Path

from .. import paths
from ..secrets import write_secret

PLATFORM_SECRETS = ("api-key", "grafana-admin-password")


def make_platform_secrets(rotate: bool = False) -> list[Path]:
    out = []
    for name in PLATFORM_SECRETS:
        p = paths.secrets_dir() / name
        if rotate or not p.is_file():
            write_secret(name, rnd.token_urlsafe(32))
        out.append(p)
    return out
