"""The local edge: Debian nginx in front of any target, configured as the cluster's ingress
(``platform/ingress-controller/local-edge.conf.template``): TLS from the project CA, 600 s
timeouts, buffering off, ``limit_req`` with ingress-nginx's annotation semantics, and the
controller's JSON access log written straight into the run record.

``with edge_target(session, spec.observe.edge, run_dir) as s:`` yields a session whose base URL
is the edge's; everything else (k6, probe, /metrics, /health) goes through it unchanged. The API
key is not the edge's business: clients send it and vLLM checks it (401 through the edge).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from ..credentials import secrets_dir
from ..platform.checks import INGRESS_CONTROLLER_DIR, edge_log_source
from ..platform.render import platform_dir
from ..procs import stop_process, wait_for_health
from ..specs import EdgeSpec
from ..ui.serve import nginx_binary
from .engine import free_port
from .session import TargetError, TargetSession, trust
from .tlsca import IssuedCert, issue_server_cert

LIMIT_ZONE = "inferlab_edge"


def template_path() -> Path:
    return platform_dir() / INGRESS_CONTROLLER_DIR / "local-edge.conf.template"


def nginx_rate(rps: float) -> str:
    """limit_req_zone's rate: whole requests per second as ``N r/s``, else per minute (nginx
    takes integers only); 0.5 r/s -> ``30r/m``."""
    if float(rps).is_integer():
        return f"{int(rps)}r/s"
    per_min = round(rps * 60)
    if per_min < 1:
        raise TargetError(f"edge rate_limit_rps {rps}: below nginx's smallest rate (1r/m)")
    return f"{per_min}r/m"


def burst_of(edge: EdgeSpec) -> int:
    """ingress-nginx: burst = limit-rps x limit-burst-multiplier (0 when no limit)."""
    return round(edge.rate_limit_rps * edge.burst_multiplier) if edge.rate_limit_rps else 0


def render_edge_config(edge: EdgeSpec, port: int, upstream: str, access_log: Path, tls: IssuedCert | None) -> str:
    """The ``http {}`` body of the edge (the template filled); an unfilled ``${NAME}`` is an error."""
    u = urlsplit(upstream)
    if u.scheme not in ("http", "https") or not u.hostname or u.path.strip("/") or u.query:
        raise TargetError(f"edge upstream {upstream!r}: expected scheme://host:port with no path")
    source = edge_log_source()
    limit_zone = limit = ""
    if edge.rate_limit_rps:
        limit_zone = f"limit_req_zone $binary_remote_addr zone={LIMIT_ZONE}:5m rate={nginx_rate(edge.rate_limit_rps)};"
        burst = f" burst={burst_of(edge)}" if burst_of(edge) else ""  # nginx refuses burst=0 (its default)
        limit = (f"        limit_req zone={LIMIT_ZONE}{burst} nodelay;\n"
                 f"        limit_req_status {edge.limit_status};")
    tls_lines = ""
    if tls:  # ingress-nginx's defaults: TLS 1.2 and 1.3, a shared session cache, no tickets
        tls_lines = (f"    ssl_certificate {tls.cert};\n    ssl_certificate_key {tls.key};\n"
                     "    ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_session_cache shared:SSL:10m;\n"
                     "    ssl_session_timeout 10m;\n    ssl_session_tickets off;")
    values = {
        "HTTP_SNIPPET": source["http-snippet"].rstrip("\n"),
        "LOG_FORMAT": source["log-format-upstream"],
        "ACCESS_LOG": str(access_log),
        "LIMIT_REQ_ZONE": limit_zone,
        "LIMIT_REQ": limit,
        "UPSTREAM_HOSTPORT": f"{u.hostname}:{u.port or (443 if u.scheme == 'https' else 80)}",
        "UPSTREAM_SCHEME": u.scheme,
        "LISTEN": f"127.0.0.1:{port}" + (" ssl" if tls else ""),
        "TLS": tls_lines,
        "TIMEOUT_S": str(edge.timeout_s),
    }
    text = template_path().read_text()
    for name, value in values.items():
        text = text.replace("${" + name + "}", value)
    if "${" in text:
        raise TargetError(f"{template_path()}: unfilled variable near {text[text.index('${'):][:30]!r}")
    return text


class Edge:
    """One nginx process group serving the edge on ``self.url``; ``stop()`` always ends it."""

    def __init__(self, edge: EdgeSpec, upstream: str, access_log: Path, port: int | None = None) -> None:
        self.edge, self.upstream, self.access_log = edge, upstream, access_log
        self.port = port or free_port(0)
        self.url = f"{'https' if edge.tls else 'http'}://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.tls: IssuedCert | None = None
        self.work: Path | None = None  # pid, error log, temp (nginx workers write here)
        self.private: Path | None = None  # config and server key, in the secrets folder

    def _write_config(self) -> Path:
        work = Path(tempfile.mkdtemp(prefix="inferlab-edge-"))
        self.work = work
        work.chmod(0o755)
        (work / "temp").mkdir(mode=0o777)
        (work / "temp").chmod(0o777)  # workers run as nobody when nginx starts as root
        self.private = Path(tempfile.mkdtemp(prefix="edge-", dir=secrets_dir()))  # 0700: the server key
        self.tls = issue_server_cert(self.private) if self.edge.tls else None
        http = render_edge_config(self.edge, self.port, self.upstream, self.access_log, self.tls)
        t = work / "temp"
        conf = (f"worker_processes 1;\ndaemon off;\npid {work}/nginx.pid;\nerror_log {work}/error.log warn;\n"
                "events { worker_connections 1024; }\n"
                f"http {{\n  default_type application/octet-stream;\n"
                f"  client_body_temp_path {t}/body;\n  proxy_temp_path {t}/proxy;\n  fastcgi_temp_path {t}/fastcgi;\n"
                f"  uwsgi_temp_path {t}/uwsgi;\n  scgi_temp_path {t}/scgi;\n{http}\n}}\n")
        path = self.private / "nginx.conf"
        path.write_text(conf)
        return path

    def start(self, timeout_s: float = 20) -> Edge:
        """Claim the access log (a new file: the run record is write-once), start nginx and
        wait until /health answers 200 through it. On any failure nginx is stopped first."""
        try:
            self.access_log.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.close(os.open(self.access_log, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            except FileExistsError:
                raise TargetError(f"{self.access_log} exists: the edge writes a new access log per run "
                                  "(a resumed run passes a -resume<N> name)") from None
            conf = self._write_config()
            assert self.work is not None
            argv = [nginx_binary(), "-p", str(self.work), "-e", str(self.work / "error.log"), "-c", str(conf)]
            # own process group: stop() can end the workers too, even if the master was killed
            self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                         start_new_session=True)
            self._wait_healthy(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_healthy(self, timeout_s: float) -> None:
        assert self.proc is not None
        verify = trust(str(self.tls.ca)) if self.tls else True
        outcome = wait_for_health(self.proc, f"{self.url}/health", time.monotonic() + timeout_s, interval_s=0.2,
                                  verify=verify)
        if outcome == "exited":
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
            raise TargetError(f"edge nginx exited with {self.proc.returncode}: {err.strip()[-800:]}")
        if outcome == "timeout":
            raise TargetError(f"edge not answering 200 on {self.url}/health after {timeout_s:.0f}s: {self.error_tail()}")

    def error_tail(self, n: int = 2000) -> str:
        try:
            return (self.work / "error.log").read_text(errors="replace")[-n:] if self.work else ""
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGQUIT (graceful: open streams finish), SIGKILL after the grace period, then the
        process group (workers outliving a killed master); the config and server key go."""
        if self.proc is not None:
            stop_process(self.proc, signal.SIGQUIT)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        for d in (self.private, self.work):
            if d:
                shutil.rmtree(d, ignore_errors=True)
        self.private = self.work = None

    def __enter__(self) -> Edge:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def nginx_version() -> str | None:
    proc = subprocess.run([nginx_binary(), "-v"], capture_output=True, text=True)
    return proc.stderr.strip().rpartition("/")[2] or None


@contextlib.contextmanager
def edge_target(session: TargetSession, edge: EdgeSpec, run_dir: Path,
                log_rel: str = "edge/access.log") -> Iterator[TargetSession]:
    """A session through a local edge in front of ``session`` (kind, key and version unchanged;
    base URL the edge's; TLS verified against the project CA). nginx writes its JSON access log
    to ``run_dir / log_rel`` (a new file, hashed when the run finishes) and is stopped on every
    exit path."""
    with Edge(edge, session.base_url, run_dir / log_rel) as e:
        ca = str(e.tls.ca) if e.tls else None
        note = {"upstream": session.base_url, "url": e.url, "access_log": log_rel, "nginx": nginx_version(),
                "tls": edge.tls, "ca_sha256": e.tls.fingerprint_sha256 if e.tls else None,
                "rate_limit_rps": edge.rate_limit_rps, "burst": burst_of(edge), "limit_status": edge.limit_status,
                "timeout_s": edge.timeout_s}
        info = session.info.model_copy(update={"base_url": e.url,
                                               "deployment": {**session.info.deployment, "edge": note}})
        yield dataclasses.replace(session, base_url=e.url, info=info, verify_tls=trust(ca) if ca else True, ca_file=ca,
                                  pids={**session.pids, "edge": e.proc.pid if e.proc else None})
