"""A cheap real upstream for edge tests: a threaded HTTP server on loopback that answers an
OpenAI chat completion at once (and /health, /metrics, /v1/models), checks the bearer key as
vLLM does (401 otherwise), and records each request's X-Request-Id. nginx is the part under
test; the engine is too slow on 2 shared cores to stand behind a rate-limit experiment."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ANSWER = {"id": "chatcmpl-x", "object": "chat.completion", "model": "tiny",
          "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "length"}],
          "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}


class Upstream:
    def __init__(self, api_key: str) -> None:
        self.api_key, self.seen_ids = api_key, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keepalive, as the edge's upstream block expects
            disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms delayed-ACK stall

            def log_message(self, *args) -> None:
                pass

            def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == "/health":
                    self._send(200, b"")
                elif self.path == "/metrics":
                    self._send(200, b"# TYPE up gauge\nup 1\n", "text/plain")
                elif self.path == "/v1/models":
                    self._send(200, json.dumps({"data": [{"id": "tiny"}]}).encode())
                else:
                    self._send(404, b"{}")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.seen_ids.append(self.headers.get("X-Request-Id"))
                if self.headers.get("Authorization") != f"Bearer {outer.api_key}":
                    self._send(401, b'{"error":"Unauthorized"}')
                elif self.path != "/v1/chat/completions" or not body:
                    self._send(404, b"{}")
                else:
                    self._send(200, json.dumps(ANSWER).encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Upstream:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def record_edge_log(tmp_path, tls: bool = True) -> Path:
    """A real access log: the local edge (real nginx) in front of :class:`Upstream`, limited to
    1 r/s with no burst, asked in a burst of five (one 200, four 503s without an upstream), once
    without a key (401), once without an X-Request-Id (nginx makes one), and /health."""
    import httpx

    from inferlab.specs import EdgeSpec
    from inferlab.targets.edge import Edge

    log = tmp_path / f"edge-{'tls' if tls else 'plain'}.log"
    with Upstream("k") as up, Edge(EdgeSpec(tls=tls, rate_limit_rps=1, burst_multiplier=0), up.base_url, log) as e:
        verify = str(e.tls.ca) if e.tls else True
        with httpx.Client(verify=verify, timeout=10) as c:
            for i in range(5):
                c.post(f"{e.url}/v1/chat/completions", json={"m": 1},
                       headers={"Authorization": "Bearer k", "X-Request-Id": f"run.short-c1.m{i}"})
            time.sleep(1.1)
            c.post(f"{e.url}/v1/chat/completions", json={"m": 1}, headers={"X-Request-Id": "run.short-c1.m5"})
            time.sleep(1.1)
            c.post(f"{e.url}/v1/chat/completions", json={"m": 1}, headers={"Authorization": "Bearer k"})
    return log
