"""A real headless Chromium driven over the DevTools protocol (websocket-client, already a
dependency of the kubernetes client): open a page, run JavaScript in it, wait for a condition."""

from __future__ import annotations

import itertools
import json
import tempfile
import time

import httpx
import websocket

from inferlab.offline import CHROMIUM_FLAGS
from inferlab.procs import ManagedProcess, free_port
from inferlab.tools import find_tool


def _devtools_page(port: int) -> dict | None:
    """The first page target Chromium's DevTools endpoint lists, once it lists one."""
    pages = [t for t in httpx.get(f"http://127.0.0.1:{port}/json", timeout=2).json() if t["type"] == "page"]
    return pages[0] if pages else None


class Browser:
    def __init__(self, url: str) -> None:
        self.port = free_port(9222)
        self.profile = tempfile.TemporaryDirectory()
        self.chromium = ManagedProcess(
            [find_tool("chromium"), *CHROMIUM_FLAGS, f"--user-data-dir={self.profile.name}",
             f"--remote-debugging-port={self.port}", url],
            name="Chromium", health=lambda: _devtools_page(self.port) is not None, timeout_s=30, poll_s=0.2)
        try:
            self.chromium.start()
            page = _devtools_page(self.port)
            assert page is not None
        except BaseException:
            self.profile.cleanup()
            raise
        self.ids = itertools.count(1)
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30)

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
        self.chromium.stop()
        self.profile.cleanup()
