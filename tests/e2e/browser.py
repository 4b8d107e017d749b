"""A real headless Chromium driven over the DevTools protocol (websocket-client, already a
dependency of the kubernetes client): open a page, run JavaScript in it, wait for a condition."""

from __future__ import annotations

import itertools
import json
import subprocess
import tempfile
import time

import httpx
import websocket

from inferlab.offline import CHROMIUM_FLAGS
from inferlab.procs import stop_process
from inferlab.report.render import chromium
from inferlab.targets.engine import free_port


class Browser:
    def __init__(self, url: str) -> None:
        self.port = free_port(9222)
        self.profile = tempfile.TemporaryDirectory()
        self.proc = subprocess.Popen(
            [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={self.profile.name}", f"--remote-debugging-port={self.port}", url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.ids = itertools.count(1)
        deadline = time.monotonic() + 30
        while True:
            try:
                pages = [t for t in httpx.get(f"http://127.0.0.1:{self.port}/json", timeout=2).json() if t["type"] == "page"]
                if pages:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError("Chromium DevTools endpoint did not come up")
            time.sleep(0.2)
        self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=30)

    def js(self, expression: str):
        """Evaluate in the page; return the value (promises awaited)."""
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": "Runtime.evaluate",
                                 "params": {"expression": expression, "returnByValue": True, "awaitPromise": True}}))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == msg_id:
                return reply["result"]["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.js(expression):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expression!r} still false after {timeout_s}s")
            time.sleep(0.25)

    def close(self) -> None:
        if getattr(self, "ws", None):
            self.ws.close()
        stop_process(self.proc)
        self.profile.cleanup()
