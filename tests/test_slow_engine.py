"""scripts/slow-engine.sh, the developers' rehearsal of a slower CPU for the engine (docs/testing.md,
"Slow engine"): an engine-venv process runs in the start group at its quota, a server moves to
the run group once its /health answers, the venv's link and the cgroups come back when the
command ends (also when it fails), and a wrapper left by a killed rehearsal is repaired."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "slow-engine.sh"
LINK = ROOT / ".venv-engine" / "bin" / "python"
CPU_CGROUP = Path("/sys/fs/cgroup/cpu")  # the script's: cgroup v1's cpu controller
PERIOD_US = 10000  # the script's CFS period

# it swaps .venv-engine/bin/python for the command's duration: never beside an engine test
pytestmark = pytest.mark.serial

# what an engine-venv process reports: its venv, its cpu cgroup, that group's quota
GROUP = """
import sys
def group():
    g = next(l.split(":", 2)[2] for l in open("/proc/self/cgroup").read().splitlines()
             if "cpu" in l.split(":")[1].split(","))  # "cpu" alone or "cpu,cpuacct"
    return g, open("/sys/fs/cgroup/cpu" + g + "/cpu.cfs_quota_us").read().strip()
"""
REPORT = GROUP + "print(sys.prefix, *group())\n"

# a server as the wrapper sees one (--port P in argv). With "serve" last it answers /health on P
# and waits up to 30 s to be moved; without, nothing answers and it reports after 3 s.
SERVER = GROUP + """
import http.server, threading, time
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
    def log_message(self, *a):
        pass
serve = sys.argv[-1] == "serve"
first = now = group()  # before /health can answer
if serve:
    srv = http.server.HTTPServer(("127.0.0.1", int(sys.argv[sys.argv.index("--port") + 1])), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
deadline = time.time() + (30 if serve else 3)
while time.time() < deadline and now[0] == first[0]:
    time.sleep(0.2)
    now = group()
print(*first)
print(*now)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _leftovers() -> list[str]:
    return sorted(p.name for p in CPU_CGROUP.iterdir() if p.name.startswith("inferlab-slow-engine-"))


def _quota(factor: float) -> int:
    cores = int(subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout)  # the script's count
    return max(1000, round(cores * PERIOD_US / factor))


@pytest.fixture
def rehearsal():
    if os.geteuid() != 0 or not (CPU_CGROUP / "cpu.cfs_quota_us").is_file() or not os.access(CPU_CGROUP, os.W_OK):
        pytest.skip("needs root and cgroup v1's cpu controller, writable (the script's own requirement)")
    if not (LINK.is_symlink() and os.readlink(LINK) == "python3"):
        pytest.skip(f"{LINK} is not make engine's link (inside a rehearsal?)")
    before = _leftovers()
    try:
        yield
    finally:
        intact = LINK.is_symlink() and os.readlink(LINK) == "python3"
        if not intact:  # never leave the venv slowed for the tests after this one
            LINK.unlink(missing_ok=True)
            LINK.symlink_to("python3")
    assert intact, "the script did not put the venv's link back"
    assert _leftovers() == before


def test_an_engine_venv_process_runs_in_the_start_group_at_its_quota(rehearsal):
    res = subprocess.run([str(SCRIPT), "4", str(LINK), "-c", REPORT], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "START_FACTOR": "2"})
    assert res.returncode == 0, res.stderr
    prefix, group, quota = res.stdout.split()
    assert prefix == str(ROOT / ".venv-engine")  # the venv is still found through the wrapper
    assert group.startswith("/inferlab-slow-engine-") and group.endswith("-start"), group
    assert int(quota) == _quota(2)  # not a server: START_FACTOR's share


@pytest.mark.parametrize("serve", [True, False], ids=["healthy", "never-healthy"])
def test_a_server_moves_to_the_run_group_once_healthy(rehearsal, serve):
    argv = [str(SCRIPT), "4", str(LINK), "-c", SERVER, "--port", str(_free_port()), *(["serve"] if serve else [])]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=60, env={**os.environ, "START_FACTOR": "1"})
    assert res.returncode == 0, res.stderr
    first, now = (line.split() for line in res.stdout.splitlines())
    assert first[0].endswith("-start") and int(first[1]) == _quota(1), res.stdout
    if serve:
        assert now[0].endswith("-run") and int(now[1]) == _quota(4), res.stdout
    else:
        assert now == first  # no /health answered: it stays at the start-up quota


def test_a_failing_command_keeps_its_exit_status_and_restores_everything(rehearsal):
    res = subprocess.run([str(SCRIPT), "2", "sh", "-c", "exit 7"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 7 and "1/2 of the machine once healthy, 1/2 while it starts" in res.stderr


def test_a_factor_below_one_changes_nothing(rehearsal):
    res = subprocess.run([str(SCRIPT), "0.5", "true"], capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and "FACTOR must be a number >= 1, got '0.5'" in res.stderr


def test_a_wrapper_left_by_a_killed_rehearsal_is_repaired(rehearsal):
    dead = subprocess.Popen(["true"])
    dead.wait()
    LINK.unlink()
    LINK.write_text(f"#!/bin/sh\n# inferlab slow-engine wrapper, owner pid {dead.pid}\nexit 99\n")
    LINK.chmod(0o755)
    res = subprocess.run([str(SCRIPT), "2", str(LINK), "-c", "print('ran')"], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == "ran", res.stderr
    assert f"left by a rehearsal that was killed (pid {dead.pid})" in res.stderr


def test_a_wrapper_whose_rehearsal_is_alive_is_left_alone(rehearsal):
    LINK.unlink()
    LINK.write_text(f"#!/bin/sh\n# inferlab slow-engine wrapper, owner pid {os.getpid()}\nexit 99\n")
    try:
        res = subprocess.run([str(SCRIPT), "2", "true"], capture_output=True, text=True, timeout=60)
        assert res.returncode == 2 and f"another rehearsal (pid {os.getpid()}) holds" in res.stderr, res.stderr
        assert "wrapper, owner pid" in LINK.read_text()  # untouched
    finally:
        LINK.unlink()
        LINK.symlink_to("python3")


def _isa_line(stdout: str) -> list[str]:
    """The probe's ``isa:`` line, split (vLLM logs to stdout around it)."""
    return next(line.split()[1:] for line in reversed(stdout.splitlines()) if line.startswith("isa:"))


def test_isa_avx2_puts_torch_and_vllm_on_their_avx2_code_paths(rehearsal):
    """ISA=avx2: in an engine-venv process torch.cpu sees no AVX-512, vLLM loads its AVX2 kernels
    (``_C_AVX2``, read from the process's memory map), PyTorch dispatches AVX2 kernels and oneDNN
    stops at AVX2; without it the same process sees this CPU as it is. A value other than avx2
    is refused."""
    probe = ("import os, torch, torch.backends.cpu as b\n"
             "from vllm.platforms.cpu import CpuPlatform\n"
             "CpuPlatform.import_kernels()\n"
             "kernels = sorted({l.rsplit('/', 1)[-1] for l in open('/proc/self/maps') if '/vllm/_C' in l})\n"
             "print('isa:', torch.cpu._is_avx512_supported(), torch.cpu._is_avx512_bf16_supported(), b.get_cpu_capability(),"
             " os.environ.get('ONEDNN_MAX_CPU_ISA'), *kernels)")
    res = subprocess.run([str(SCRIPT), "1", str(LINK), "-c", probe], capture_output=True, text=True, timeout=180,
                         env={**os.environ, "ISA": "avx2"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert _isa_line(res.stdout) == ["False", "False", "AVX2", "AVX2", "_C_AVX2.abi3.so"], res.stdout
    assert "on its avx2 code paths" in res.stderr
    if "avx512f" in Path("/proc/cpuinfo").read_text():  # the contrast: this CPU's own view, no ISA given
        res = subprocess.run([str(SCRIPT), "1", str(LINK), "-c", probe], capture_output=True, text=True, timeout=180)
        assert res.returncode == 0, res.stderr[-3000:]
        seen = _isa_line(res.stdout)
        assert seen[0] == "True" and seen[2] != "AVX2" and seen[3] == "None" and seen[4] != "_C_AVX2.abi3.so", seen
    res = subprocess.run([str(SCRIPT), "1", "true"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "ISA": "sse4"})
    assert res.returncode == 2 and "ISA must be avx2 or unset, got 'sse4'" in res.stderr
