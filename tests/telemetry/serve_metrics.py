"""A real loopback HTTP server for /metrics tests without an engine: serves exposition text that
a callable returns (a recorded vLLM scrape, counters advanced per request) behind a bearer key,
401 without it, like vLLM with VLLM_API_KEY."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class MetricsServer:
    def __init__(self, body: Callable[[int], bytes], key: str) -> None:
        self.body, self.key, self.requests, self.auth_seen = body, key, 0, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                outer.auth_seen.append(self.headers.get("Authorization"))
                if self.headers.get("Authorization") != f"Bearer {outer.key}":
                    self.send_response(401)
                    self.end_headers()
                    return
                outer.requests += 1
                data = outer.body(outer.requests)
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> MetricsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def advancing(text: str, family: str = "vllm:generation_tokens_total", step: float = 7.0) -> Callable[[int], bytes]:
    """The recorded scrape with ``family``'s samples set to ``step`` x the request number, so a
    rate over time is known: ``step`` per scrape."""
    def body(n: int) -> bytes:
        out = []
        for line in text.splitlines():
            if line.startswith(family):
                key = line[: line.rfind("}") + 1] if "}" in line else line.split()[0]
                line = f"{key} {step * n}"
            out.append(line)
        return ("\n".join(out) + "\n").encode()
    return body
