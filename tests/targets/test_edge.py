"""The local edge with the real Debian nginx (and the real k6 for the rate-limit experiment) in
front of a cheap real upstream (tests/targets/upstream.py); the engine-marked test puts it in
front of the real vLLM engine."""

from __future__ import annotations

import ssl
import os
import stat
import subprocess

import httpx
import pytest
from matplotlib.figure import Figure

from inferlab.analysis import edge as edge_analysis
from inferlab.ingest.edge_log import read_edge_log
from inferlab.ingest.k6 import read_k6
from inferlab.load.k6 import run_cell
from inferlab.report import edge as edge_report
from inferlab.runs.manifest import TargetInfo
from inferlab.specs import CellPlan, EdgeSpec, LoadSpec, Payload
from inferlab.targets import edge as edge_mod
from inferlab.targets.edge import Edge, burst_of, edge_target, nginx_rate, render_edge_config
from inferlab.targets.session import TargetError, TargetSession
from inferlab.targets.tlsca import issue_server_cert, project_ca
from inferlab.tools import find_tool

from .upstream import Upstream

KEY = "edge-test-key"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie is not alive
        return fh.read().split(")")[-1].split()[0] != "Z"


def _group_pids(pgid: int) -> list[int]:
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if os.getpgid(int(p)) == pgid and _alive(int(p)):
                    out.append(int(p))
            except ProcessLookupError:
                pass
    return out


def _post(url: str, verify, key: str | None = KEY, request_id: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if request_id:
        headers["X-Request-Id"] = request_id
    return httpx.post(f"{url}/v1/chat/completions", json={"model": "tiny", "messages": []}, headers=headers,
                      verify=verify, timeout=10)


def test_nginx_rate_and_burst_follow_the_ingress_annotations():
    assert nginx_rate(50) == "50r/s" and nginx_rate(0.5) == "30r/m" and nginx_rate(2.5) == "150r/m"
    with pytest.raises(TargetError, match="1r/m"):
        nginx_rate(0.001)
    assert burst_of(EdgeSpec()) == 250  # limit-rps 50 x the default multiplier 5
    assert burst_of(EdgeSpec(rate_limit_rps=None)) == 0


@pytest.mark.parametrize("edge", [EdgeSpec(), EdgeSpec(tls=False, rate_limit_rps=None), EdgeSpec(rate_limit_rps=0.5)])
def test_rendered_config_passes_nginx_t(edge, tmp_path):
    """Real nginx parses every variant: TLS on/off, limit on/off, fractional rates."""
    tls = issue_server_cert(tmp_path) if edge.tls else None
    http = render_edge_config(edge, 18443, "http://127.0.0.1:8011", tmp_path / "access.log", tls)
    assert "proxy_buffering off;" in http and f"proxy_read_timeout {edge.timeout_s}s;" in http
    assert ("limit_req_status 503;" in http) == bool(edge.rate_limit_rps)
    assert ("ssl_certificate " in http) == edge.tls
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\nhttp {{\n{http}\n}}\n")
    proc = subprocess.run([find_tool("nginx"), "-t", "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c",
                           str(conf)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_upstream_with_a_path_is_refused(tmp_path):
    with pytest.raises(TargetError, match="no path"):
        render_edge_config(EdgeSpec(tls=False), 1, "http://127.0.0.1:8011/v1", tmp_path / "a.log", None)


def test_project_ca_is_private_and_reused(workspace):
    ca = project_ca()
    assert stat.S_IMODE(ca.stat().st_mode) == 0o700
    assert stat.S_IMODE((ca / "ca.key").stat().st_mode) == 0o600
    assert project_ca() == ca and (ca / "ca.pem").read_bytes() == (project_ca() / "ca.pem").read_bytes()


def test_edge_proxies_passes_ids_and_logs_every_request(workspace, tmp_path):
    log = tmp_path / "run" / "edge" / "access.log"
    with Upstream(KEY) as up:
        session = TargetSession("url", up.base_url, KEY, TargetInfo(kind="url", base_url=up.base_url, model="tiny"))
        with edge_target(session, EdgeSpec(rate_limit_rps=None), tmp_path / "run") as s:
            assert s.base_url.startswith("https://127.0.0.1:") and s.ca_file and isinstance(s.verify_tls, ssl.SSLContext)
            assert s.kind == "url" and s.api_key == KEY and s.info.deployment["edge"]["upstream"] == up.base_url
            assert "through the local edge" in edge_report.edge_md(s.info.deployment["edge"]).data
            edge_pid = s.pids["edge"]
            # verification is on: without the project CA the handshake fails
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                _post(s.base_url, True)
            assert _post(s.base_url, s.verify_tls, request_id="r.cell-c1.m1").status_code == 200
            assert _post(s.base_url, s.verify_tls, key=None, request_id="r.cell-c1.m2").status_code == 401
            assert _post(s.base_url, s.verify_tls, key="wrong", request_id="r.cell-c1.m3").status_code == 401
            assert _post(s.base_url, s.verify_tls).status_code == 200  # no id: nginx makes one
            assert s.healthy() and s.scrape_metrics() == b"# TYPE up gauge\nup 1\n"
        assert not _group_pids(edge_pid), "nginx (master or workers) outlived the edge"
    df = read_edge_log(log)
    posts = df[df["method"] == "POST"]
    assert posts["request_id"].tolist()[:3] == ["r.cell-c1.m1", "r.cell-c1.m2", "r.cell-c1.m3"]
    assert posts["status"].tolist() == [200, 401, 401, 200]
    assert up.seen_ids[:3] == ["r.cell-c1.m1", "r.cell-c1.m2", "r.cell-c1.m3"]
    assert up.seen_ids[3] == posts["request_id"].iloc[3] and len(up.seen_ids[3]) == 32  # nginx's $request_id
    assert (df["request_id"] != "").all() and set(df["ssl_protocol"]) <= {"TLSv1.2", "TLSv1.3"}
    assert {"/health", "/metrics"} <= set(df["uri"])  # observers pass through the edge too


def test_edge_stops_on_an_error_inside_and_on_a_failed_start(workspace, tmp_path):
    with Upstream(KEY) as up:
        with pytest.raises(RuntimeError, match="boom"), Edge(EdgeSpec(tls=False), up.base_url, tmp_path / "a.log") as e:
            pid = e.proc.pid
            raise RuntimeError("boom")
        assert not _group_pids(pid) and e.work is None and e.private is None
    # nothing answers /health behind it: start fails, and stops nginx before the error goes on
    dead = Edge(EdgeSpec(tls=False), "http://127.0.0.1:9", tmp_path / "b.log")
    with pytest.raises(TargetError, match="health"):
        dead.start(timeout_s=2)
    assert dead.proc is not None and not _group_pids(dead.proc.pid)


def test_access_log_is_never_appended_to(workspace, tmp_path):
    (tmp_path / "edge").mkdir()
    (tmp_path / "edge" / "access.log").write_text("earlier\n")
    with Upstream(KEY) as up, pytest.raises(TargetError, match="resume"):
        Edge(EdgeSpec(tls=False), up.base_url, tmp_path / "edge" / "access.log").start()
    assert (tmp_path / "edge" / "access.log").read_text() == "earlier\n"


def _open_loop(tmp_path, edge: EdgeSpec, rate: float, duration_s: int, cell_id: str):
    """A k6 constant-arrival-rate cell through the edge; (k6 rows, edge rows)."""
    spec = LoadSpec(name="edge", model="tiny", payloads={"short": Payload(prompt="hi", max_tokens=1)},
                    use_payloads=["short"], warmup_requests=0, capacity={"pre_allocated_vus": 8, "max_vus": 32})
    cell = CellPlan(cell_id=cell_id, payload="short", executor="constant-arrival-rate", rate=rate, duration_s=duration_s)
    cell_dir = tmp_path / cell_id
    cell_dir.mkdir()
    with Upstream(KEY) as up, Edge(edge, up.base_url, tmp_path / f"{cell_id}.log") as e:
        run_cell(spec, cell, e.url, KEY, cell_dir, run_id="rl", ca_file=str(e.tls.ca) if e.tls else None)
    return read_k6(cell_dir / "k6.ndjson.gz"), read_edge_log(tmp_path / f"{cell_id}.log")


@pytest.mark.slow
def test_rate_limit_rejects_the_predicted_share(workspace, tmp_path):
    """Open loop at twice a limit far below what the upstream serves (it answers in ~1 ms):
    the measured rejected share is within 5 points of 1 - (rate*T + burst)/(offered*T), and
    rejection begins about burst / (offered - rate) seconds in."""
    edge = EdgeSpec(rate_limit_rps=10, burst_multiplier=1)
    k6, log = _open_loop(tmp_path, edge, rate=20, duration_s=20, cell_id="short-at20")
    cells = edge_analysis.edge_cells(k6, log, edge.limit_status)
    res = edge_analysis.rejected_vs_prediction(cells, 10, burst_of(edge), 20, 20).iloc[0]
    assert res["predicted_share"] == pytest.approx(0.475)
    assert abs(res["difference_points"]) < 5, res.to_dict()
    assert res["rejection_began_s"] == pytest.approx(res["predicted_began_s"], abs=0.5)
    assert cells["joined_share"].iloc[0] == 1.0 and cells["tls_handshakes"].iloc[0] >= 1
    # k6 saw exactly what the edge logged for each request
    j = edge_analysis.join_edge(k6, log)
    assert (j["status"] == j["edge_status"]).all()
    # the report's calls on the same tables: offered load inferred from k6's sends
    load = edge_report.offered_load(k6).iloc[0]
    assert load["offered_rps"] == pytest.approx(20, rel=0.02) and load["duration_s"] == pytest.approx(20, rel=0.02)
    table = edge_report.rejection_table(k6, log, 10, burst_of(edge)).data
    assert abs(table["difference_points"].iloc[0]) < 5
    assert isinstance(edge_report.rejections_plot(k6, log), Figure)
    assert isinstance(edge_report.overhead_plot(k6, log), Figure)
    assert "rejected_share" in edge_report.edge_table(k6, log).data.columns


@pytest.mark.engine
def test_edge_in_front_of_the_real_engine(engine, workspace, tmp_path):
    """The engine through the edge, verification on (no skip-verify): 200s and 0 errors on the
    normal path, 401 on a missing and a wrong key, k6 records TLS handshakes, and every edge
    line carries a request id that joins k6's rows."""
    from inferlab.targets.local import SMOLLM2

    info = TargetInfo(kind="local", base_url=engine.base_url, model=SMOLLM2)
    session = TargetSession("local", engine.base_url, engine.api_key, info)
    spec = LoadSpec(name="edge", model=engine.spec.served_model_name, use_payloads=["short"], warmup_requests=1,
                    payloads={"short": Payload(prompt="Say hi.", max_tokens=4)})
    cell = CellPlan(cell_id="short-c2", payload="short", executor="shared-iterations", vus=2, iterations=4)
    (tmp_path / "run" / "cell").mkdir(parents=True)
    with edge_target(session, EdgeSpec(), tmp_path / "run") as s:
        assert _post(s.base_url, s.verify_tls, key=None).status_code == 401
        assert _post(s.base_url, s.verify_tls, key="not-the-key").status_code == 401
        res = run_cell(spec, cell, s.base_url, s.api_key, tmp_path / "run" / "cell", run_id="edge", ca_file=s.ca_file)
    assert res.exit_code == 0, res.stderr_tail
    k6 = read_k6(tmp_path / "run" / "cell" / "k6.ndjson.gz")
    measured = k6[k6["phase"] == "measure"]
    assert len(measured) == 4 and (measured["status"] == 200).all() and not k6["failed"].any()
    assert (k6["tls_handshaking_ms"] > 0).any()  # verified handshakes with the project CA
    log = read_edge_log(tmp_path / "run" / "edge" / "access.log")
    assert (log["request_id"] != "").all() and (log["ssl_protocol"] != "").all()
    assert edge_analysis.join_edge(measured, log)["joined"].all()
    assert sorted(log.loc[log["status"] == 401, "uri"]) == ["/v1/chat/completions"] * 2


def test_edge_module_reads_the_one_log_format_source():
    """targets.edge takes the log format from the controller's ConfigMap file, not a copy."""
    from inferlab.formats.edge_log import edge_log_source

    assert edge_mod.edge_log_source is edge_log_source
