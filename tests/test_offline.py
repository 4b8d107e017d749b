"""Nothing leaves the machine: every tool the project starts runs with its reporting, news and
update checks off, read back from the real process (/proc/<pid>/environ and cmdline)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import psutil
import pytest

from inferlab.offline import CHROMIUM_FLAGS, JUPYTER_LAB_ARGS, K6_ENV, VLLM_ENV
from inferlab.targets.engine import ENGINE_HTTP_ENV

ROOT = Path(__file__).resolve().parents[1]


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").split("=", 1) for item in raw if b"=" in item)


def cmdline_of(pid: int) -> list[str]:
    return [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]


def wait_for_child(name_part: str, parent: psutil.Process | None = None, timeout_s: float = 30,
                   where=lambda p: True) -> psutil.Process:
    parent = parent or psutil.Process()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for child in parent.children(recursive=True):
            try:
                if name_part in child.name() and where(child):
                    return child
            except psutil.Error:
                continue
        time.sleep(0.05)
    raise AssertionError(f"no child process named *{name_part}* within {timeout_s}s")


class _SlowChat(BaseHTTPRequestHandler):
    """An OpenAI-shaped server that holds each request 2 s, so k6 is alive while we look."""

    def do_POST(self):  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        time.sleep(2)
        body = json.dumps({"choices": [{"message": {"content": "hi"}}], "usage": {"completion_tokens": 1}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_k6_started_by_the_cell_runner_sends_no_usage_report(tmp_path):
    from inferlab.load.k6 import run_cell
    from inferlab.specs import builtin_spec, load_spec, plan_cells

    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowChat)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    spec = load_spec(builtin_spec("ci-tiny"), {"concurrency": [1], "warmup_requests": 0, "min_iterations": 2,
                                               "iterations_per_vu": 2})
    cell = plan_cells(spec)[0]
    done = threading.Thread(target=run_cell, args=(spec, cell, f"http://127.0.0.1:{server.server_port}", "k-0000000000000",
                                                   tmp_path), daemon=True)
    done.start()
    try:
        k6 = wait_for_child("k6")
        env = environ_of(k6.pid)
        for k, v in K6_ENV.items():
            assert env.get(k) == v, f"k6 runs without {k}={v}"
        assert "k-0000000000000" not in " ".join(cmdline_of(k6.pid))  # and the key is not in argv
    finally:
        done.join(timeout=60)
        server.shutdown()


def test_in_cluster_k6_sends_no_usage_report():
    """Both in-cluster ways: the Job's k6 container, and every pod the k6-operator makes of a
    TestRun (initializer, starter, runners: each gets only its own ``env``)."""
    from inferlab.load.incluster import example_objects

    objects = example_objects()
    job = next(d for d in objects["job"] if d["kind"] == "Job")
    pod = job["spec"]["template"]["spec"]
    envs = {f"Job container {c['name']}": c.get("env", []) for c in pod["initContainers"] + pod["containers"]
            if c["name"] == "k6"}
    testrun = next(d for d in objects["testrun"] if d["kind"] == "TestRun")
    envs |= {f"TestRun {role}": testrun["spec"][role].get("env", []) for role in ("initializer", "starter", "runner")}
    assert len(envs) == 4, envs
    for where, env in envs.items():
        values = {e["name"]: e.get("value") for e in env}
        assert all(values.get(k) == v for k, v in K6_ENV.items()), f"{where}: {values}"


@pytest.mark.engine
def test_engine_process_sends_no_usage_stats(engine):
    env = environ_of(engine.proc.pid)
    for k, v in VLLM_ENV.items():
        assert env.get(k) == v, f"vLLM runs without {k}={v}"
    assert env.get("VLLM_HTTP_TIMEOUT_KEEP_ALIVE") == ENGINE_HTTP_ENV["VLLM_HTTP_TIMEOUT_KEEP_ALIVE"]  # targets/engine.py


def _chromium_or_skip():
    from inferlab.tools import which_tool

    if not which_tool("chromium"):
        pytest.skip("Chromium not installed (make test installs it with apt as root; else `sudo apt-get install chromium`)")


def test_test_browser_runs_without_background_networking():
    _chromium_or_skip()
    sys.path.insert(0, str(ROOT / "tests" / "e2e"))
    from browser import Browser

    b = Browser("about:blank")
    try:
        argv = cmdline_of(b.chromium.pid)
        assert set(CHROMIUM_FLAGS) <= set(argv), set(CHROMIUM_FLAGS) - set(argv)
    finally:
        b.close()


def test_pdf_renderer_runs_without_background_networking(tmp_path):
    _chromium_or_skip()
    from inferlab.report.printing import print_pdf

    html = tmp_path / "r.html"
    html.write_text("<html><body><h1>t</h1></body></html>")
    seen: list[list[str]] = []

    def watch():
        p = wait_for_child("chrom", where=lambda c: any("--print-to-pdf" in a for a in c.cmdline()))
        seen.append(cmdline_of(p.pid))

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    assert print_pdf(html, tmp_path / "r.pdf") is None
    t.join(timeout=5)
    assert seen, "did not see the Chromium process"
    assert set(CHROMIUM_FLAGS) <= set(seen[0]), set(CHROMIUM_FLAGS) - set(seen[0])


def test_jupyterlab_from_make_lab_has_news_and_update_checks_off(tmp_path):
    from inferlab.procs import free_port

    port = free_port(8899)
    env = {**os.environ, "JUPYTER_TOKEN": "t0ken-for-this-test", "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"), "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings")}
    proc = subprocess.Popen([str(Path(sys.executable).parent / "inferlab"), "lab", "--port", str(port), "--no-browser"],
                            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base, auth = f"http://127.0.0.1:{port}", {"Authorization": "token t0ken-for-this-test"}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/api/status", headers=auth, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "JupyterLab did not start"
            time.sleep(0.3)
        argv = cmdline_of(proc.pid)  # `inferlab lab` execs the server: same pid
        assert set(JUPYTER_LAB_ARGS) <= set(argv), argv
        assert httpx.get(f"{base}/lab/api/news", headers=auth, timeout=10).json() == {"news": []}
        update = httpx.get(f"{base}/lab/api/update", headers=auth, timeout=10).json()
        assert update.get("notification") is None, update
    finally:
        proc.terminate()
        proc.wait(timeout=20)
