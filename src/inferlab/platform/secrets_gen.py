"""``make secrets``: random secrets in the one secrets folder, ``platform/secrets/values/``
(0700/0600, git-ignored), which ``platform/secrets/kustomization.yaml`` turns into Secrets.

- ``api-key``: vLLM's key (``VLLM_API_KEY``), also used by the chat UI's nginx server-side;
- ``chat-ui-password`` and its htpasswd line ``chat-ui-htpasswd`` (user ``inferlab``, {SSHA},
  a scheme nginx's auth_basic reads) for the chat UI Ingress's basic auth;
- ``grafana-admin-password``.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from pathlib import Path

from .. import paths
from ..credentials import write_secret

PLATFORM_SECRETS = ("api-key", "chat-ui-password", "grafana-admin-password")
UI_USER = "inferlab"


def htpasswd_line(user: str, password: str, salt: bytes | None = None) -> str:
    """``user:{SSHA}base64(sha1(password + salt) + salt)``."""
    salt = salt if salt is not None else secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return f"{user}:{{SSHA}}{base64.b64encode(digest + salt).decode()}\n"


def make_platform_secrets(rotate: bool = False) -> list[Path]:
    out = []
    for name in PLATFORM_SECRETS:
        p = paths.secrets_dir() / name
        if rotate or not p.is_file():
            write_secret(name, secrets.token_urlsafe(32))
        out.append(p)
    password = (paths.secrets_dir() / "chat-ui-password").read_text().strip()
    out.append(write_secret("chat-ui-htpasswd", htpasswd_line(UI_USER, password)))
    return out
