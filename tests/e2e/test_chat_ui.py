"""The chat UI end to end: Debian's nginx serving the page in front of the REAL vLLM engine,
driven by a REAL headless Chromium that runs the page's JavaScript (?q= sends a message on
load), streams the answer and shows its stats. The key stays server-side."""

from __future__ import annotations

import shutil
import subprocess
import tempfile

import httpx
import pytest

from inferlab.report.render import chromium
from inferlab.ui.serve import ChatUI, render_server_block
from inferlab.targets.local_engine import free_port

pytestmark = pytest.mark.engine


def dump_dom(url: str, budget_ms: int = 60000) -> str:
    """The DOM after the page's scripts ran (virtual time lets the stream finish)."""
    with tempfile.TemporaryDirectory() as profile:
        argv = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={profile}",
                f"--virtual-time-budget={budget_ms}", "--run-all-compositor-stages-before-draw", "--dump-dom", url]
        return subprocess.run(argv, capture_output=True, text=True, timeout=180).stdout


@pytest.fixture
def ui(engine):
    if not shutil.which("nginx") and not shutil.which("/usr/sbin/nginx"):
        pytest.skip("nginx not installed (make system-deps)")
    with ChatUI(engine.base_url, engine.api_key, free_port(8081)) as ui:
        yield ui


def test_proxy_adds_the_key_and_exposes_only_two_endpoints(ui, engine):
    assert httpx.get(f"{engine.base_url}/v1/models").status_code == 401  # the engine wants a key
    r = httpx.get(f"{ui.url}/v1/models")  # the browser sends none; nginx adds it
    assert r.status_code == 200 and r.json()["data"][0]["id"] == "smollm2"
    assert httpx.get(f"{ui.url}/metrics").status_code == 404
    assert httpx.delete(f"{ui.url}/v1/models").status_code == 403
    page = httpx.get(f"{ui.url}/").text
    assert "inferlab chat" in page and engine.api_key not in page


@pytest.mark.skipif(chromium() is None, reason="Chromium not installed (make system-deps)")
def test_real_browser_streams_an_answer(ui, engine):
    dom = dump_dom(f"{ui.url}/?q=Name%20three%20colors.")
    assert 'data-state="done"' in dom, dom[-2000:]
    assert "model smollm2" in dom and 'id="answer-1"' in dom
    assert "TTFT" in dom and "tokens/s" in dom
    assert engine.api_key not in dom


def test_server_block_fills_every_variable_and_holds_the_key_once():
    text = render_server_block("127.0.0.1:1", "/srv/html", "http://vllm:8000/", "k-123456789abc")
    assert "${" not in text and "proxy_pass http://vllm:8000;" in text
    assert [line.strip() for line in text.splitlines() if "k-123456789abc" in line] == [
        'proxy_set_header Authorization "Bearer k-123456789abc";']
