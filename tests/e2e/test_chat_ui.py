"""The chat UI end to end: Debian's nginx serving the page in front of the REAL vLLM engine,
driven by a REAL headless Chromium over the DevTools protocol: type, send, watch the answer
stream in with its stats. The key stays server-side."""

from __future__ import annotations

import re
import shutil

import httpx
import pytest

from inferlab.procs import free_port
from inferlab.tools import which_tool
from inferlab.ui.serve import ChatUI, render_server_block

from .browser import Browser

pytestmark = pytest.mark.engine


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


@pytest.mark.skipif(which_tool("chromium") is None, reason="Chromium not installed (make system-deps)")
def test_real_browser_chats_and_streams(ui, engine, engine_speed, tiny_answer_tokens):
    """Type, click Send, watch the answer stream in; a second turn carries the conversation; then
    ?q= deep links send on load. The page is opened with ?max_tokens= at ci-tiny's answer length
    (what this machine's engine makes in 0.5 s: 4-16 tokens), so no answer is the page's default
    256 tokens (~45 s on a slow CPU); a bad ?max_tokens= is refused on the page and nothing sent."""
    n = tiny_answer_tokens
    answer_s = max(60, 4 * engine_speed.answer_s(n))
    b = Browser(f"{ui.url}/?max_tokens={n}")
    try:
        b.wait_for("document.getElementById('model').textContent === 'model smollm2'", 60)
        b.js("document.getElementById('input').value = 'Name three colors.'")
        b.js("document.getElementById('send').click()")
        b.wait_for("document.getElementById('status').dataset.state !== 'streaming' && "
                   "document.getElementById('status').dataset.state !== 'idle'", answer_s)
        assert b.js("document.getElementById('status').dataset.state") == "done", b.js("document.body.innerText")
        answer = b.js("document.getElementById('answer-1').firstChild.textContent")
        stats = b.js("document.querySelector('#answer-1 .stats').textContent")
        assert len(answer.strip()) > 0 and "TTFT" in stats and "tokens/s" in stats
        tokens = int(re.search(r"(\d+) tokens ·", stats).group(1))
        assert 1 <= tokens <= n, stats  # the page asked for at most ?max_tokens=
        assert engine.api_key not in b.js("document.documentElement.outerHTML")
        # a second turn carries the conversation (the page sends its history)
        b.js("document.getElementById('input').value = 'And one more?'")
        b.js("document.getElementById('send').click()")
        b.wait_for("document.getElementById('answer-3') !== null && "
                   "document.getElementById('status').dataset.state === 'done'", answer_s)
        # a cap that is not digits 1-4096 sends nothing (no message shown as sent) and says why, once
        for bad in ("", "0", "4097", "1.5", "1e3", "abc", "%2012"):
            b.js(f"location.href = '{ui.url}/?max_tokens={bad}&q=hello'")
            b.wait_for(f"document.getElementById('status').dataset.state === 'error' && "
                       f"location.search.startsWith('?max_tokens={bad}&')", 30)
            errors = b.js("[...document.querySelectorAll('.msg.error')].map(e => e.textContent)")
            assert errors == [f"?max_tokens={bad.replace('%20', ' ')}: expected a whole number from 1 to 4096"], (bad, errors)
            assert b.js("document.querySelectorAll('.msg.user, .assistant').length") == 0, bad
            b.js("document.getElementById('input').value = 'typed'")  # Send refuses too, and keeps the text
            b.js("document.getElementById('send').click()")
            assert b.js("document.getElementById('input').value") == "typed", bad
            assert b.js("document.querySelectorAll('.msg.user, .assistant, .msg.error').length") == 1, bad
        # a deep link with a good cap sends on load
        b.js(f"location.href = '{ui.url}/?max_tokens={n}&q=hello'")
        b.wait_for("document.getElementById('answer-1') !== null && "
                   "document.getElementById('status').dataset.state === 'done'", answer_s)
    finally:
        b.close()


def test_server_block_fills_every_variable_and_holds_the_key_once():
    text = render_server_block("127.0.0.1:1", "/srv/html", "http://vllm:8000/", "k-123456789abc")
    assert "${" not in text and "proxy_pass http://vllm:8000;" in text
    assert [line.strip() for line in text.splitlines() if "k-123456789abc" in line] == [
        'proxy_set_header Authorization "Bearer k-123456789abc";']
