"""Debian's nginx as a managed child: the one main config (foreground, one worker, every file
in its own scratch directory) shared by the local edge, the chat UI and the replica balancer.

Owners fill only the ``http {}`` body; :class:`NginxProcess` supplies the rest and stops nginx
with SIGQUIT (its graceful stop: open streams finish), then the whole group.
"""

from __future__ import annotations

import signal
import ssl
import subprocess
from pathlib import Path

from .procs import ManagedProcess
from .tools import find_tool


def main_config(work: Path, http: str, worker_connections: int = 1024) -> str:
    """nginx.conf around the ``http {}`` body ``http``: pid and error log in ``work``, the
    temp paths in ``work/temp``, ``daemon off`` (it is our child, not a service)."""
    t = work / "temp"
    return (f"worker_processes 1;\ndaemon off;\npid {work}/nginx.pid;\nerror_log {work}/error.log warn;\n"
            f"events {{ worker_connections {worker_connections}; }}\n"
            f"http {{\n  default_type application/octet-stream;\n"
            f"  client_body_temp_path {t}/body;\n  proxy_temp_path {t}/proxy;\n  fastcgi_temp_path {t}/fastcgi;\n"
            f"  uwsgi_temp_path {t}/uwsgi;\n  scgi_temp_path {t}/scgi;\n{http}\n}}\n")


class NginxProcess(ManagedProcess):
    """nginx on a config the owner writes: in :meth:`prepare`, call :meth:`work_dir` (public
    files; its ``error.log`` is this process's log, so a failed start shows nginx's own
    words), write :func:`main_config` where it belongs (a private directory when it holds a
    key) and pass that path to :meth:`use_config`. ``health`` None: the owner sets it in
    :meth:`prepare`, with the port it leases there."""

    def __init__(self, *, name: str, error: type[Exception], health: str | None = None, timeout_s: float = 20,
                 verify: bool | ssl.SSLContext = True) -> None:
        super().__init__(name=name, error=error, health=health, timeout_s=timeout_s, poll_s=0.2, verify=verify,
                         stop_signal=signal.SIGQUIT)
        self.work: Path | None = None

    def work_dir(self, prefix: str) -> Path:
        """The scratch directory nginx works in (0755, its ``temp/`` 0777: workers run as
        nobody when nginx starts as root)."""
        work = self.scratch_dir(prefix, mode=0o755)
        (work / "temp").mkdir()
        (work / "temp").chmod(0o777)
        self.work, self.log = work, work / "error.log"
        return work

    def use_config(self, conf: Path) -> None:
        assert self.work is not None, "work_dir() first"
        self.argv = [find_tool("nginx"), "-p", str(self.work), "-e", str(self.work / "error.log"), "-c", str(conf)]

    def stop(self) -> None:
        super().stop()
        self.work = None


def nginx_version() -> str | None:
    """nginx's version ("1.22.1"), from ``nginx -v``."""
    proc = subprocess.run([find_tool("nginx"), "-v"], capture_output=True, text=True)
    return proc.stderr.strip().rpartition("/")[2] or None
