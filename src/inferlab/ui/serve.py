"""`inferlab ui`: the chat UI on this machine, Debian's nginx in front of an OpenAI server.

The page and the server block are kept once, in ``platform/components/ui/`` (``chat.html``,
``server.conf.template``), where the cluster's ConfigMap is generated from them; there the
official nginx image substitutes ``${VAR}`` from the environment at start, here Python does.
The API key goes only into the generated config (mode 0600, in a private directory in the
secrets folder, deleted on stop): never argv, never the page, never a log.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from .. import paths
from ..credentials import create_private, secrets_dir
from ..procs import stop_process, wait_for_health

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


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").is_file() else None)
    if not found:
        raise UIError("nginx not found: `make system-deps` installs Debian's nginx")
    return found


class ChatUI:
    """``with ChatUI(upstream, key, port) as ui: ui.url`` serves the page and proxies /v1."""

    def __init__(self, upstream: str, api_key: str, port: int = 8080, htpasswd: str | None = None) -> None:
        """``htpasswd``: lines (``make secrets`` writes chat-ui-htpasswd) to require basic
        auth, as the chat Ingress does in the cluster; None on loopback."""
        self.upstream, self.api_key, self.port, self.htpasswd = upstream, api_key, port, htpasswd
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None
        self.dir: Path | None = None
        self.conf_dir: Path | None = None

    def _write_config(self) -> Path:
        """Public files (page, logs, temp) in a /tmp directory the nginx workers can use; the
        config, which holds the key, in a private directory in the secrets folder (the one
        place secrets live), read only by the master process."""
        d = Path(tempfile.mkdtemp(prefix="inferlab-ui-"))
        d.chmod(0o755)  # nginx workers (user nobody when started as root) read html/ and write temp/
        for sub in ("html", "logs", "temp"):
            (d / sub).mkdir(mode=0o755)
        (d / "temp").chmod(0o777)
        shutil.copy(PAGE, d / "html" / "chat.html")
        (d / "html" / "chat.html").chmod(0o644)
        conf = Path(tempfile.mkdtemp(prefix="ui-", dir=secrets_dir()))  # 0700
        self.dir, self.conf_dir = d, conf
        server = render_server_block(f"127.0.0.1:{self.port}", str(d / "html"), self.upstream, self.api_key)
        if self.htpasswd is not None:  # salted hashes, not passwords: workers must read them per request
            (d / "htpasswd").write_text(self.htpasswd)
            server = f'  auth_basic "inferlab chat";\n  auth_basic_user_file {d}/htpasswd;\n' + server
        body = (f"worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/logs/error.log warn;\n"
                "events { worker_connections 256; }\n"
                f"http {{\n  access_log {d}/logs/access.log;\n  types {{ text/html html; }}\n"
                "  default_type application/octet-stream;\n"
                f"  client_body_temp_path {d}/temp/body;\n  proxy_temp_path {d}/temp/proxy;\n"
                f"  fastcgi_temp_path {d}/temp/fastcgi;\n  uwsgi_temp_path {d}/temp/uwsgi;\n"
                f"  scgi_temp_path {d}/temp/scgi;\n{server}\n}}\n")
        return create_private(conf / "nginx.conf", body)

    def start(self, timeout_s: float = 20) -> ChatUI:
        """Start nginx and wait for /healthz; on any failure or interrupt here (``__exit__``
        does not run when ``__enter__`` raises) nginx is stopped before the error goes on."""
        try:
            conf = self._write_config()
            assert self.dir is not None
            argv = [nginx_binary(), "-p", str(self.dir), "-e", str(self.dir / "logs" / "error.log"), "-c", str(conf)]
            self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            self._wait_healthy(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_healthy(self, timeout_s: float) -> None:
        assert self.proc is not None
        outcome = wait_for_health(self.proc, f"{self.url}/healthz", time.monotonic() + timeout_s, 0.2, 1.0)
        if outcome == "exited":
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
            raise UIError(f"nginx exited with {self.proc.returncode}: {err.strip()[-800:]}")
        if outcome == "timeout":
            raise UIError(f"nginx not answering on {self.url} after {timeout_s:.0f}s")

    def stop(self) -> None:
        stop_process(self.proc, signal.SIGQUIT)  # SIGQUIT: nginx's graceful stop, open streams finish
        for d in (self.conf_dir, self.dir):  # the config held the key
            if d:
                shutil.rmtree(d, ignore_errors=True)
        self.dir = self.conf_dir = None

    def __enter__(self) -> ChatUI:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
