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
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from ..credentials import secrets_dir
from ..formats.edge_log import edge_log_source, local_edge_template
from ..nginx import NginxProcess, main_config, nginx_version
from ..specs import EdgeSpec
from .session import TargetError, TargetSession, trust
from .tlsca import IssuedCert, issue_server_cert

LIMIT_ZONE = "inferlab_edge"


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
    text = local_edge_template().read_text()
    for name, value in values.items():
        text = text.replace("${" + name + "}", value)
    if "${" in text:
        raise TargetError(f"{local_edge_template()}: unfilled variable near {text[text.index('${'):][:30]!r}")
    return text


class Edge(NginxProcess):
    """One nginx process group serving the edge on ``self.url``; ``stop()`` always ends it
    (SIGQUIT: open streams finish), and removes its config and server key."""

    def __init__(self, edge: EdgeSpec, upstream: str, access_log: Path, port: int | None = None) -> None:
        self.edge, self.upstream, self.access_log = edge, upstream, access_log
        self.fixed_port, self.port = port, port  # None: leased at start (procs.lease_port)
        self.url: str | None = None  # from prepare() on
        super().__init__(name="edge nginx", error=TargetError)
        self.tls: IssuedCert | None = None
        self.private: Path | None = None  # config and server key, in the secrets folder

    def prepare(self) -> None:
        """Lease the port, claim the access log (a new file: the run record is write-once), then
        write the config and, with TLS, a server certificate from the project CA."""
        self.port = self.lease_port(self.fixed_port or 0, exact=bool(self.fixed_port))  # first: no log if none
        self.url = f"{'https' if self.edge.tls else 'http'}://127.0.0.1:{self.port}"
        self.health = f"{self.url}/health"
        self.access_log.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.close(os.open(self.access_log, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            raise TargetError(f"{self.access_log} exists: the edge writes a new access log per run "
                              "(a resumed run passes a -resume<N> name)") from None
        work = self.work_dir("inferlab-edge-")  # pid, error log, temp (nginx workers write here)
        self.private = self.scratch_dir("edge-", parent=secrets_dir())  # 0700: the server key
        self.tls = issue_server_cert(self.private) if self.edge.tls else None
        self.verify = trust(str(self.tls.ca)) if self.tls else True
        http = render_edge_config(self.edge, self.port, self.upstream, self.access_log, self.tls)
        conf = self.private / "nginx.conf"
        conf.write_text(main_config(work, http))
        self.use_config(conf)

    def stop(self) -> None:
        super().stop()
        self.private = None


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
