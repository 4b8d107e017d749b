"""ManagedProcess with tiny real children: a server that becomes healthy, one that dies at
start, one that never answers, one that ignores SIGTERM, one with a child of its own."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from inferlab.procs import ManagedProcess, free_port, lease_port, listens_on, stop_all
from inferlab.tools import ToolNotFound

PY = sys.executable


class OwnerError(RuntimeError):
    """Stands for EngineError, TargetError, UIError, ...: the owner's own type."""


def _sleeper(*, ignore_term: bool = False, grandchild: bool = False) -> list[str]:
    code = ["import signal, subprocess, sys, time"]
    if ignore_term:
        code.append("signal.signal(signal.SIGTERM, signal.SIG_IGN)")
    if grandchild:
        code.append("p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])")
        code.append("print('grandchild', p.pid, flush=True)")
    code += ["print('ready', flush=True)", "time.sleep(60)"]
    return [PY, "-c", "; ".join(code)]


def _dead(pid: int, within_s: float = 5) -> bool:
    """Ended (a zombie counts: reparented to pid 1, whose reaping is not ours to wait for)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def _log_has(p: ManagedProcess, text: str) -> bool:
    return text in p.log_tail()


def test_free_port_prefers_the_given_port_and_falls_back():
    port = free_port()
    assert free_port(port) == port
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        assert free_port(port) != port


def test_a_leased_port_goes_to_no_one_else_until_released():
    """Two leases preferring one port (two engines preferring 8011): the first gets it, the
    second another; a lease held by another process (its child not bound yet: the port is
    free) is skipped too; released, the preferred port is leased again."""
    import subprocess

    preferred = free_port()
    a = lease_port(preferred)
    b = lease_port(preferred)
    assert a.port == preferred and b.port != preferred
    a.release()
    a.release()  # twice is safe
    import inferlab

    src = str(Path(inferlab.__file__).parents[1])  # this checkout's, whatever the venv's install points at
    holder = subprocess.Popen([PY, "-c", ("import sys; from inferlab.procs import lease_port; "
                                          f"lease_port({preferred}); print('held', flush=True); sys.stdin.read()")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": src})
    try:
        assert holder.stdout.readline().strip() == "held"
        c = lease_port(preferred)
        assert c.port != preferred  # the other process's lease, though nothing listens there
        c.release()
        with pytest.raises(OSError, match=f"no lease on port {preferred}"):
            lease_port(preferred, exact=True)  # a port the caller names: that one or an error
    finally:
        holder.communicate("")  # ends it: the kernel drops its lock
    d = lease_port(preferred, exact=True)
    assert d.port == preferred
    d.release()
    b.release()
    import socket

    with socket.socket() as s:  # in use by a program that takes no lease
        s.bind(("127.0.0.1", preferred))
        s.listen()
        with pytest.raises(OSError, match="in use"):
            lease_port(preferred, exact=True)


def test_a_port_whose_connections_wait_in_time_wait_is_free_to_lease():
    """A server that closed its connections leaves them in TIME_WAIT for ~60 s; the servers bind
    with SO_REUSEADDR, so the port is free to them, and `inferlab serve` restarted at once must
    lease it exactly (a probe without SO_REUSEADDR called it in use)."""
    import socket

    with socket.socket() as srv:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn, nginx and Prometheus bind
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        cli = socket.create_connection(("127.0.0.1", port))
        conn, _ = srv.accept()
        conn.close()  # the server closes first: its side waits in TIME_WAIT
        time.sleep(0.1)
        cli.close()
    assert any(c.laddr.port == port and c.status == psutil.CONN_TIME_WAIT
               for c in psutil.net_connections(kind="tcp") if c.laddr)
    lease = lease_port(port, exact=True)
    assert lease.port == port
    lease.release()


def test_listens_on_names_the_childs_own_listener_only():
    import socket

    port = free_port()
    with ManagedProcess([PY, "-m", "http.server", "--bind", "127.0.0.1", str(port)], health=f"http://127.0.0.1:{port}/",
                        timeout_s=15, poll_s=0.1) as p:
        assert listens_on(p.pid, port)
        with socket.socket() as s:  # a listener of this process: not the child's
            s.bind(("127.0.0.1", 0))
            s.listen()
            assert not listens_on(p.pid, s.getsockname()[1])
    assert not listens_on(p.pid, port)  # gone
    port = free_port()  # a shell that runs the server as its own child (no exec): a descendant's listener
    shell = ["/bin/sh", "-c", f"{PY} -m http.server --bind 127.0.0.1 {port}; true"]
    with ManagedProcess(shell, health=f"http://127.0.0.1:{port}/", timeout_s=15, poll_s=0.1) as p:
        kids = psutil.Process(p.pid).children()
        assert kids and all(k.pid != p.pid for k in kids) and listens_on(p.pid, port)


def test_another_program_answering_on_the_childs_port_is_not_taken_for_it(tmp_path):
    """A child that binds its port late (vLLM: after its imports) finds it taken by another
    program, which already answers its health URL: the start fails and says the port was
    taken, rather than passing on the other program's health (it did before listen_port)."""
    import http.server

    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    port = other.server_address[1]
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        late = [PY, "-c", ("import socket, time; time.sleep(1); s = socket.socket(); "
                           f"s.bind(('127.0.0.1', {port})); s.listen(); time.sleep(60)")]
        p = ManagedProcess(late, name="late binder", error=OwnerError, health=f"http://127.0.0.1:{port}/",
                           timeout_s=15, poll_s=0.1)
        p.listen_port = port
        with pytest.raises(OwnerError, match=f"before ready \\(port {port} was taken by another program"):
            p.start()
        # without listen_port, the other program's answer passes for this child's health
        q = ManagedProcess(late, name="late binder", error=OwnerError, health=f"http://127.0.0.1:{port}/",
                           timeout_s=15, poll_s=0.1)
        with q:
            assert q.startup_s is not None and q.startup_s < 1 and not listens_on(q.pid, port)
    finally:
        other.shutdown()
        other.server_close()


def test_a_server_becomes_healthy_and_is_stopped_and_reaped(tmp_path):
    port = free_port()
    log = tmp_path / "logs" / "server.log"
    with ManagedProcess([PY, "-m", "http.server", "--bind", "127.0.0.1", str(port)], name="http.server",
                        error=OwnerError, health=f"http://127.0.0.1:{port}/", timeout_s=15, poll_s=0.1,
                        log=log, cwd=tmp_path) as p:
        assert p.proc is not None and p.proc.poll() is None and p.startup_s is not None
        pid = p.pid
    assert p.proc.poll() is not None and not psutil.pid_exists(pid)
    assert log.is_file()  # the log is the caller's: kept


def test_the_log_is_write_once(tmp_path):
    (tmp_path / "x.log").write_text("earlier\n")
    with pytest.raises(FileExistsError):
        ManagedProcess([PY, "-c", "pass"], log=tmp_path / "x.log").start()
    assert (tmp_path / "x.log").read_text() == "earlier\n"


def test_a_child_that_dies_at_start_raises_the_owners_error_with_the_log_tail():
    p = ManagedProcess([PY, "-c", "import sys; print('bad config line 3', flush=True); sys.exit(3)"],
                       name="dier", error=OwnerError, health=lambda: False, poll_s=0.05)
    with pytest.raises(OwnerError, match=r"dier exited with code 3 before ready; log tail:\n.*bad config line 3"):
        p.start()
    assert p.proc is not None and p.proc.poll() == 3
    assert p.log is not None and not p.log.exists()  # its scratch directory is gone


def test_a_child_never_healthy_times_out_and_is_stopped():
    dead_url = f"http://127.0.0.1:{free_port()}/health"
    p = ManagedProcess(_sleeper(), name="mute", error=OwnerError, health=dead_url, timeout_s=0.5, poll_s=0.05)
    with pytest.raises(OwnerError, match=f"mute not healthy at {dead_url} after 0s; log tail"):
        p.start()
    assert p.proc is not None and p.proc.poll() is not None


def test_sigterm_ignored_means_sigkill_after_the_grace_period():
    p = ManagedProcess(_sleeper(ignore_term=True), health=lambda: _log_has(p, "ready"), poll_s=0.05, grace_s=0.5)
    p.start()
    t0 = time.monotonic()
    p.stop()
    assert 0.4 < time.monotonic() - t0 < 5
    assert p.proc is not None and p.proc.returncode == -signal.SIGKILL


def test_stop_reaches_the_childs_own_children():
    p = ManagedProcess(_sleeper(grandchild=True), health=lambda: _log_has(p, "ready"), poll_s=0.05)
    with p:
        grandchild = int(p.log_tail().split("grandchild ")[1].split()[0])
        assert psutil.pid_exists(grandchild)
    assert _dead(grandchild)


def test_stop_all_overlaps_the_grace_periods():
    procs = []
    for _ in range(3):  # "ready" is printed after the SIGTERM handler is set
        p = ManagedProcess(_sleeper(ignore_term=True), grace_s=1.0, own_group=False, poll_s=0.05)
        p.health = lambda p=p: _log_has(p, "ready")
        procs.append(p.start())
    t0 = time.monotonic()
    stop_all(procs)
    assert time.monotonic() - t0 < 2.5  # not 3 x 1 s
    assert all(p.proc is not None and p.proc.returncode == -signal.SIGKILL for p in procs)


def test_a_missing_program_raises_the_owners_error_and_leaves_no_scratch(tmp_path):
    class NeedsTool(ManagedProcess):
        def prepare(self) -> None:
            self.made = self.scratch_dir("inferlab-test-", parent=tmp_path)
            raise ToolNotFound("frobnicate not found: apt-get install frobnicate")

    p = NeedsTool(name="needs", error=OwnerError)
    with pytest.raises(OwnerError, match="apt-get install frobnicate"):
        p.start()
    assert not p.made.exists() and p.proc is None
    p.stop()  # twice, and before any start: harmless


def test_health_polls_start_fast_and_slow_to_the_interval(monkeypatch):
    """wait_for_health's pauses: FIRST_POLL_S, then 1.5x each poll, never above interval_s; it
    returns on the first passing check (no pause after it); no process to watch (None) is allowed."""
    import inferlab.procs as procs

    pauses: list[float] = []
    real_sleep = time.sleep

    def sleep(s: float) -> None:  # time.sleep is global: another thread's pauses are not this wait's
        pauses.append(s) if threading.current_thread() is threading.main_thread() else real_sleep(s)

    monkeypatch.setattr(procs.time, "sleep", sleep)
    checks = iter([False] * 12 + [True])

    class Running:
        def poll(self):
            return None

    assert procs.wait_for_health(Running(), lambda: next(checks), time.monotonic() + 60, interval_s=1.0) == "healthy"
    assert len(pauses) == 12 and pauses[0] == procs.FIRST_POLL_S
    assert all(b == pytest.approx(min(a * 1.5, 1.0)) for a, b in zip(pauses, pauses[1:]))
    assert pauses[-1] == 1.0 and max(pauses) == 1.0
    assert procs.wait_for_health(None, lambda: True, time.monotonic() + 1) == "healthy"


@pytest.fixture
def main_thread_handlers():
    """Ctrl-C and SIGTERM as the CLI sets them (both raise KeyboardInterrupt), restored after;
    the tests that signal this process need the main thread (only it runs Python handlers)."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers can be set from the main thread only")

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    before = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, h in before.items():
        signal.signal(s, h)


@pytest.fixture
def sigterm_inside_popen(main_thread_handlers, monkeypatch) -> list[int]:
    """Every ``subprocess.Popen`` sends this process SIGTERM after the child exists and before
    it returns (a time limit's SIGTERM landing mid-spawn), then passes bytecode boundaries, where
    an unheld handler raises. The children's pids, in order; any still alive is killed after."""
    import os
    import subprocess

    real, pids = subprocess.Popen, []

    def popen_then_sigterm(*args, **kw):
        child = real(*args, **kw)
        pids.append(child.pid)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.3)
        return child

    monkeypatch.setattr(subprocess, "Popen", popen_then_sigterm)
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_a_sigterm_inside_the_spawn_is_delivered_after_it_and_the_child_is_stopped(sigterm_inside_popen):
    """A SIGTERM that lands while Popen runs (a time limit's, or a test's ready() poll) is held
    until the Popen is ours, then raised: start() stops the child. Without the hold the
    KeyboardInterrupt unwound out of Popen and left a running k6 no one held (four xdist
    processes, session 18: its log grew after the cell was hashed)."""
    pids = sigterm_inside_popen
    p = ManagedProcess(_sleeper(), name="k6-like", stop_signal=signal.SIGINT, grace_s=5, own_group=False)
    with pytest.raises(KeyboardInterrupt):
        p.start()
    assert pids and p.proc is not None and p.proc.pid == pids[0]
    assert _dead(pids[0])


def test_interrupts_deferred_restores_the_handlers_and_delivers_only_after(main_thread_handlers):
    import os

    from inferlab.procs import interrupts_deferred

    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    reached_end = False
    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)
            reached_end = True
    assert reached_end
    assert {s: signal.getsignal(s) for s in handlers} == handlers
    with interrupts_deferred():  # nothing caught: nothing raised
        pass


def test_a_port_taken_before_the_bind_is_tried_again_on_another(tmp_path):
    """The owner chose a port that was free; another process bound it before the child did.
    An owner whose prepare() chooses the port and says how to see the clash gets a second try;
    one that does not, fails as before."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = [taken.getsockname()[1]]

        class Server(ManagedProcess):
            def prepare(self) -> None:
                self.port = ports.pop(0) if ports else free_port()
                self.log = self.scratch_dir("inferlab-test-", parent=tmp_path) / "server.log"
                self.argv = [PY, "-m", "http.server", "--bind", "127.0.0.1", str(self.port)]
                self.health = f"http://127.0.0.1:{self.port}/"

            def port_was_taken(self) -> bool:
                return "Address already in use" in self.log_tail()

        with Server(name="http.server", error=OwnerError, timeout_s=15, poll_s=0.05) as p:
            assert p.port != taken.getsockname()[1] and p.proc is not None and p.proc.poll() is None
        assert p.proc.poll() is not None and list(tmp_path.iterdir()) == []  # both tries' scratch gone

        class Fixed(Server):
            def port_was_taken(self) -> bool:
                return False

        ports.append(taken.getsockname()[1])
        with pytest.raises(OwnerError, match="exited with code 1 before ready"):
            Fixed(name="http.server", error=OwnerError, timeout_s=15, poll_s=0.05).start()


def test_an_ignored_or_default_signal_is_left_as_the_kernel_has_it(main_thread_handlers):
    """Only Python handlers are swapped: a background job's ignored Ctrl-C stays ignored, in
    this process and in the child (an ignore survives exec; a handler set from Python does
    not). Once the swap set a CI's ignored Ctrl-C back from Python and a test's sweep, started
    after, ignored the test's Ctrl-C (session 18)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    p = ManagedProcess([PY, "-c", "print(open('/proc/self/status').read(), flush=True); import time; time.sleep(30)"],
                       health=lambda: _log_has(p, "SigIgn"), poll_s=0.05)
    with p:
        ignored = int(next(ln for ln in p.log_tail(80).splitlines() if ln.startswith("SigIgn:")).split()[1], 16)
    assert ignored & (1 << (signal.SIGINT - 1)), "the child no longer ignores SIGINT"
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


@pytest.mark.parametrize("site", ["nvidia-smi logger", "kubectl port-forward"])
def test_the_helper_spawns_are_stopped_by_an_interrupt_inside_them_too(sigterm_inside_popen, monkeypatch, tmp_path,
                                                                      site):
    """The two children outside ManagedProcess (procs.stop_process's): a SIGTERM inside their
    Popen ends with the child stopped, not left writing (the logger into its run's CSV)."""
    import inferlab.targets.k8s as k8s
    import inferlab.telemetry.samplers as samplers

    fake = tmp_path / "tool"
    fake.write_text("#!/bin/sh\necho 'Forwarding from 127.0.0.1:1234 -> 8000'\nexec sleep 30\n")
    fake.chmod(0o755)
    with pytest.raises(KeyboardInterrupt):
        if site == "nvidia-smi logger":
            monkeypatch.setattr(samplers, "find_tool", lambda name: str(fake))
            with samplers.NvidiaSmiLogger(tmp_path / "nvidia-smi.csv"):
                pass
        else:
            monkeypatch.setattr(k8s, "find_tool", lambda name: str(fake))
            with k8s.port_forward():
                pass
    assert sigterm_inside_popen and _dead(sigterm_inside_popen[0])
