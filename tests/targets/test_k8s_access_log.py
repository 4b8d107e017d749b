"""Collecting the ingress-nginx controller's access log: the real kubernetes client against a
loopback stand-in for the API server that answers the two calls with recorded bodies (a PodList
and pod-log text in the controller's format: klog lines between access lines). Live: with
INFERLAB_LIVE_CLUSTER=1 against the cluster's controller."""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from kubernetes import client

from inferlab.ingest.edge_log import read_edge_log
from inferlab.targets.k8s import INGRESS_NAMESPACE, INGRESS_SELECTOR, ingress_access_log


def _access(t: datetime, rid: str, status: int = 200) -> str:
    return json.dumps({"time": t.isoformat(timespec="milliseconds"), "request_id": rid, "status": status,
                       "request_time": 0.012, "upstream_connect_time": "0.000", "upstream_header_time": "0.010",
                       "upstream_response_time": "0.011", "upstream_status": str(status), "bytes_sent": 420,
                       "request_length": 300, "ssl_protocol": "TLSv1.3", "ssl_session_reused": ".",
                       "remote_addr": "10.244.0.1", "method": "POST", "uri": "/v1/chat/completions"})


class FakeApiServer:
    """GET /api/v1/namespaces/<ns>/pods and .../pods/<pod>/log, as the API server answers them."""

    def __init__(self, logs: dict[str, str]) -> None:
        self.logs, self.calls = logs, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a) -> None:
                pass

            def do_GET(self) -> None:
                u = urlsplit(self.path)
                outer.calls.append((u.path, parse_qs(u.query)))
                parts = u.path.strip("/").split("/")
                if parts[-1] == "pods":
                    body = json.dumps({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [
                        {"metadata": {"name": n, "namespace": parts[3]}} for n in outer.logs]}).encode()
                    ctype = "application/json"
                else:
                    body, ctype = outer.logs[parts[-2]].encode(), "text/plain"
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        cfg = client.Configuration(host=f"http://127.0.0.1:{self.server.server_address[1]}")
        self.api_client = client.ApiClient(cfg)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_collects_every_controller_pod_for_the_window(tmp_path):
    now = datetime.now(UTC)
    start = now - timedelta(seconds=30)
    pod_a = "\n".join([
        'I1127 09:00:00.000000       7 main.go:205] "Creating API client" host="https://10.96.0.1:443"',
        _access(start - timedelta(seconds=60), "earlier.run.m0"),  # before the window: dropped
        _access(start + timedelta(seconds=1), "run.short-c1.m0"),
        'W1127 09:00:01.000000       7 controller.go:1214] Service "x" does not have any active Endpoint.',
        _access(start + timedelta(seconds=2), "run.short-c1.m1", 503), ""])
    pod_b = _access(start + timedelta(seconds=3), "run.short-c1.m2") + "\n"  # one JSON line alone
    api = FakeApiServer({"ingress-nginx-controller-b": pod_b, "ingress-nginx-controller-a": pod_a})
    try:
        text = ingress_access_log(api.api_client, start, now)
    finally:
        api.close()
    listing, *logs = api.calls
    assert listing == (f"/api/v1/namespaces/{INGRESS_NAMESPACE}/pods", {"labelSelector": [INGRESS_SELECTOR]})
    assert [p for p, _ in logs] == [f"/api/v1/namespaces/{INGRESS_NAMESPACE}/pods/ingress-nginx-controller-{x}/log"
                                    for x in "ab"]
    for _, q in logs:
        assert q["container"] == ["controller"] and 35 <= int(q["sinceSeconds"][0]) <= 95  # 30 s + 5 s slack, + however slow this machine ran
    assert "earlier.run.m0" not in text and text.count("\n") == 5
    assert pod_b.strip() in text  # raw, not a dict's repr
    p = tmp_path / "ingress-access.log"
    p.write_text(text)
    df = read_edge_log(p, source="controller")
    assert df["request_id"].tolist() == ["run.short-c1.m0", "run.short-c1.m1", "run.short-c1.m2"]
    assert df["status"].tolist() == [200, 503, 200] and df.attrs["ingest"]["lines_skipped"] == 2


@pytest.mark.skipif(os.environ.get("INFERLAB_LIVE_CLUSTER") != "1", reason="live cluster: INFERLAB_LIVE_CLUSTER=1")
def test_live_controller_log_reads():
    from inferlab.kube import cluster_client

    dyn = cluster_client()
    assert dyn is not None, "INFERLAB_LIVE_CLUSTER=1 but no cluster reachable"
    text = ingress_access_log(dyn.client, datetime.now(UTC) - timedelta(minutes=10))
    assert isinstance(text, str)
