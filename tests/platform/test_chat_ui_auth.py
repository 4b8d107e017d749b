"""The chat Ingress's basic-auth file (`make secrets`) in the format nginx reads: checked by
Debian's real nginx, not by re-implementing its hash check."""

import httpx
import pytest

from inferlab.platform.secrets_gen import htpasswd_line
from inferlab.procs import free_port
from inferlab.tools import missing_tool, which_tool
from inferlab.ui.serve import ChatUI

needs_nginx = pytest.mark.skipif(not which_tool("nginx"), reason=missing_tool("nginx"))


@needs_nginx
def test_generated_htpasswd_is_accepted_by_real_nginx():
    line = htpasswd_line("inferlab", "s3cret-pass")
    assert line.startswith("inferlab:{SSHA}")
    # the upstream is never reached: auth is decided before proxying
    with ChatUI("http://127.0.0.1:1", "unused-key-xxxxxxxx", free_port(8082), htpasswd=line) as ui:
        assert httpx.get(f"{ui.url}/healthz").status_code == 200  # probes need no credentials
        assert httpx.get(f"{ui.url}/").status_code == 401
        assert httpx.get(f"{ui.url}/", auth=("inferlab", "wrong")).status_code == 401
        r = httpx.get(f"{ui.url}/", auth=("inferlab", "s3cret-pass"))
        assert r.status_code == 200 and "inferlab chat" in r.text


@needs_nginx
def test_sigterm_stops_ui_and_its_nginx(tmp_path):
    """`inferlab ui` killed politely (SIGTERM: kill, CI, container stop) leaves no nginx behind."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    port = free_port(8083)
    env = {**os.environ, "INFERLAB_HOME": str(tmp_path), "INFERLAB_API_KEY": "k-not-used-0000000"}
    (tmp_path / "pyproject.toml").write_text("[project]\nname='ws'\n")
    proc = subprocess.Popen([sys.executable, "-m", "inferlab.cli", "ui", "--base-url", "http://127.0.0.1:1",
                             "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    nginx = [c for c in psutil.Process(proc.pid).children() if "nginx" in c.name()]
    assert nginx, proc.stdout
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) in (0, 130)  # 130: it landed before the serving loop; both clean up
    gone, alive = psutil.wait_procs(nginx, timeout=10)
    assert not alive


@needs_nginx
def test_api_calls_are_rate_limited_per_client():
    """A burst past the limit gets 429 from nginx before reaching the server; the page is not limited."""
    import concurrent.futures

    import math
    import time

    with ChatUI("http://127.0.0.1:1", "unused-key-xxxxxxxx", free_port(8084)) as ui:
        start = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            codes = list(pool.map(lambda _: httpx.get(f"{ui.url}/v1/models").status_code, range(60)))
        elapsed = time.monotonic() - start
        assert set(codes) <= {429, 502} and codes.count(429) >= 30, codes  # 502: passed, upstream is down
        # burst 20, +1 token, + what 2 r/s refills while the burst lasts (long on a loaded machine)
        assert codes.count(502) <= 21 + math.ceil(2 * elapsed), (codes.count(502), elapsed)
        assert all(httpx.get(f"{ui.url}/").status_code == 200 for _ in range(30))
