"""The chat Ingress's basic-auth file (`make secrets`) in the format nginx reads: checked by
Debian's real nginx, not by re-implementing its hash check."""

import shutil

import httpx
import pytest

from inferlab.platform.secrets_gen import htpasswd_line
from inferlab.targets.local_engine import free_port
from inferlab.ui.serve import ChatUI


@pytest.mark.skipif(not (shutil.which("nginx") or shutil.which("/usr/sbin/nginx")), reason="nginx not installed")
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
