"""`inferlab ui`: the chat UI on this machine, Debian's nginx in front of an OpenAI server.

The page and the server block are kept once, in ``platform/components/ui/`` (``chat.html``,
``server.conf.template``), where the cluster's ConfigMap is generated from them; there the
official nginx image substitutes ``${VAR}`` from the environment at start, here Python does.
The API key goes only into the generated config (mode 0600, in a private directory in the
secrets folder, deleted on stop): never argv, never the page, never a log.
"""

from __future__ import annotations

import shutil

from .. import paths
from ..credentials import create_private, secrets_dir
from ..nginx import NginxProcess, main_config

UI_DIR = paths.install_root() / "platform" / "components" / "ui"  # one copy, shared with the cluster's ConfigMap
TEMPLATE = UI_DIR / "server.conf.template"
PAGE = UI_DIR / "chat.html"


class UIError(RuntimeError):
    pass


def render_server_block(listen: str, root: str, upstream: str, api_key: str, rate_limit: str = "2r/s") -> str:
    """The template with its variables filled (a missing one is an error, not a blank)."""
    text = TEMPLATE.read_text()
    for name, value in {"UI_LISTEN": listen, "UI_ROOT": root, "VLLM_UPSTREAM": upstream.rstrip("/"),
                        "VLLM_API_KEY": api_key, "UI_RATE_LIMIT": rate_limit}.items():
        text = text.replace("${" + name + "}", value)
    if "${" in text:
        raise UIError(f"{TEMPLATE}: unfilled variable near {text[text.index('${'):][:30]!r}")
    return text


class ChatUI(NginxProcess):
    """``with ChatUI(upstream, key, port) as ui: ui.url`` serves the page and proxies /v1;
    stopping it removes the config that holds the key."""

    def __init__(self, upstream: str, api_key: str, port: int = 8080, htpasswd: str | None = None) -> None:
        """``htpasswd``: lines (``make secrets`` writes chat-ui-htpasswd) to require basic
        auth, as the chat Ingress does in the cluster; None on loopback."""
        self.upstream, self.api_key, self.port, self.htpasswd = upstream, api_key, port, htpasswd
        self.url = f"http://127.0.0.1:{port}"
        super().__init__(name="chat UI nginx", error=UIError, health=f"{self.url}/healthz")

    def prepare(self) -> None:
        """Public files (page, logs, temp) in a /tmp directory the nginx workers can use; the
        config, which holds the key, in a private directory in the secrets folder (the one
        place secrets live), read only by the master process."""
        d = self.work_dir("inferlab-ui-")
        (d / "html").mkdir(mode=0o755)  # nginx workers (user nobody when started as root) read it
        shutil.copy(PAGE, d / "html" / "chat.html")
        (d / "html" / "chat.html").chmod(0o644)
        conf = self.scratch_dir("ui-", parent=secrets_dir())  # 0700
        server = render_server_block(f"127.0.0.1:{self.port}", str(d / "html"), self.upstream, self.api_key)
        if self.htpasswd is not None:  # salted hashes, not passwords: workers must read them per request
            (d / "htpasswd").write_text(self.htpasswd)
            server = f'  auth_basic "inferlab chat";\n  auth_basic_user_file {d}/htpasswd;\n' + server
        http = f"  access_log {d}/access.log;\n  types {{ text/html html; }}\n{server}"
        self.use_config(create_private(conf / "nginx.conf", main_config(d, http, worker_connections=256)))
