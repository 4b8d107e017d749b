"""Child processes this workspace starts (vLLM, nginx, Prometheus, k6, nvidia-smi, kubectl
port-forward, Chromium in tests).

:class:`ManagedProcess` is the one home of a served child's lifecycle: argv and environment,
a scratch directory, a log file, a health check, a stop signal, and the error its owner raises.
Its port helpers (:func:`lease_port`, :func:`listens_on`) are what its owners take their ports
with; the smaller helpers (:func:`wait_for_health`, :func:`stop_process`, :func:`free_port`)
serve children that need less (a port-forward, a sampler); every long-lived child's spawn,
theirs included, runs inside :func:`interrupts_deferred` (``subprocess.run``'s short ones do not).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal, Self

import httpx
import psutil

from .tools import ToolNotFound

#: A health check: a URL that answers 200 when the child is ready, or a function that says so.
HealthCheck = str | Callable[[], bool]


def free_port(preferred: int = 0) -> int:
    """A TCP port free on 127.0.0.1 now: ``preferred`` when it is free, else one the kernel
    picks (0 asks for that directly). Free now, not reserved: the caller binds it soon.
    Decision: probed with SO_REUSEADDR, as the servers bind (uvicorn, nginx, Prometheus): a port
    whose last connections wait in TIME_WAIT (~60 s after a server closed them) is free to them,
    and so to this; a port another socket listens on is not."""
    for port in dict.fromkeys((preferred, 0)):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
                return s.getsockname()[1]
            except OSError:
                continue
    raise OSError("no free TCP port on 127.0.0.1")


#: Where :func:`lease_port` keeps its lock files: one a port, per user, for the whole machine
#: (a fixed folder, not $TMPDIR: two processes with different TMPDIRs share the ports all the same).
PORT_LEASES = Path("/tmp") / f"inferlab-ports-{os.getuid()}"


class PortLease:
    """A port :func:`lease_port` handed out, held until :meth:`release` (or this process ends)."""

    def __init__(self, port: int, fd: int) -> None:
        self.port, self._fd = port, fd

    def release(self) -> None:
        """Let the port go (safe to call twice)."""
        if self._fd is not None:
            os.close(self._fd)  # closing the file drops its flock
            self._fd = None


def _lease_dir() -> Path:
    """:data:`PORT_LEASES`, made if missing; refused unless it is a real folder of this user's
    that no one else may write (another user could otherwise block leases or plant links)."""
    with contextlib.suppress(FileExistsError):
        PORT_LEASES.mkdir(mode=0o700)
    st = os.lstat(PORT_LEASES)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise PermissionError(f"{PORT_LEASES}: not a folder of this user's that only it may write")
    return PORT_LEASES


def lease_port(preferred: int = 0, attempts: int = 64, exact: bool = False) -> PortLease:
    """A TCP port free on 127.0.0.1 now that no other lease holds: ``preferred`` when it is
    both, else one the kernel picks (``exact``: ``preferred`` or an OSError). Hold the lease
    until the child that binds it has stopped.

    Decision: a port is only free when chosen, and vLLM binds its port ~6-15 s after its start
    (after its imports), so two runs on one machine (a sweep on each GPU, two notebooks, two
    test processes) that both prefer 8011 both got it: one failed to start, or took the other's
    /health for its own. A lease is an exclusive ``flock`` on ``PORT_LEASES/<port>.lock``: any
    inferlab process (any thread: a lock belongs to an open file) skips a leased port, and the
    kernel drops the lock when the holder exits, however it exits. The lock files stay (one a
    port ever leased, empty): removing one while another process opens it would split the lock.
    Another program can still take the port before the child binds it; :meth:`ManagedProcess.start`
    then says so (its health counts only a listener of the child's own, :func:`listens_on`)."""
    folder = _lease_dir()
    candidate = preferred
    for _ in range(1 if exact else attempts):
        port = free_port(candidate)
        if exact and port != preferred:
            raise OSError(f"port {preferred} on 127.0.0.1 is in use")
        candidate = 0  # after the preferred port: kernel-chosen ones
        fd = os.open(folder / f"{port}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if free_port(port) == port:  # still free now that it is ours
                return PortLease(port, fd)
        except BlockingIOError:  # another lease holds it (its child may not have bound it yet)
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    what = f"port {preferred}" if exact else f"a port after {attempts} tries"
    raise OSError(f"no lease on {what}: another inferlab process holds it, or it is in use ({folder})")


def listens_on(pid: int, port: int) -> bool:
    """Does process ``pid``, or one of its descendants, listen on TCP ``port``? What tells a
    child's own server from another program that answers on the same port (a health URL alone
    cannot). Where this system does not let us read the sockets (psutil's AccessDenied), True:
    the check cannot tell, so it does not stand in the way; a process gone, or any other psutil
    error: False."""
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
        for p in tree:
            try:
                # psutil >= 6 names it net_connections; 5.x (a GPU image's) connections
                conns = getattr(p, "net_connections", None) or p.connections
                conns = conns(kind="tcp")
            except psutil.NoSuchProcess:
                continue
            if any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in conns):
                return True
    except psutil.AccessDenied:
        return True
    except psutil.Error:
        return False
    return False


def port_taken(log_tail: str) -> bool:
    """Does a child's log tail say it could not bind its port (vLLM's and Python's ``[Errno 98]
    Address already in use``, Prometheus's and nginx's ``address already in use``)?"""
    return "address already in use" in log_tail.lower()


FIRST_POLL_S = 0.05  # wait_for_health's first pause
SPAWN_ATTEMPTS = 3  # a child whose port another program took between its choice and its bind: tries in all


@contextlib.contextmanager
def signals_blocked(sigs: Iterable[int] = (signal.SIGINT, signal.SIGTERM)):
    """``sigs`` (default: Ctrl-C and SIGTERM) blocked in this thread for the body, then the mask
    as it was: a signal that came meanwhile is delivered at the unblock, to whatever handler is
    set by then. Around a write-once record's write (a second Ctrl-C cannot leave it half
    written) and handler swaps; never around a spawn (a child inherits the mask). Where
    pthread_sigmask is missing, the body runs unblocked."""
    try:
        before = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    except (AttributeError, ValueError, OSError):
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


@contextlib.contextmanager
def interrupts_deferred():
    """Ctrl-C and SIGTERM held while the body runs, then delivered (the first one caught) as it
    would have been. Used around every long-lived child's spawn: an interrupt raised inside
    ``Popen`` leaves a running child that no one holds, so nothing can stop it (an orphaned k6
    once kept writing into a cell already recorded and hashed as partial: four xdist processes,
    session 18).

    Decisions: only a signal whose handler is a Python function is held, as only those raise
    inside ``Popen``; an ignored one (a background job's Ctrl-C) or a default one (SIGTERM kills
    the process, child or not) is left alone, since setting it would change what the kernel
    does and what the child inherits (the ignore is kept across exec; once a CI's ignored Ctrl-C
    was set back from Python and a test's sweep then ignored its Ctrl-C). Held by swapping
    handlers, not by a signal mask around the spawn: a child inherits the mask, and a k6 or vLLM
    with SIGINT and SIGTERM blocked could never be stopped gently. The swaps run with both
    blocked in this thread; a signal the kernel hands another thread can still run a handler
    between them, so the stand-in forwards once the body is over and every handler is put back
    even then (:func:`_restore_handlers`). Only in the main thread (the only one that may set
    handlers, and the only one Python runs them in)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {s: h for s in (signal.SIGINT, signal.SIGTERM) if callable(h := signal.getsignal(s))}
    caught: list[int] = []
    holding = [True]
    swapped: dict[int, Callable] = {}

    def gate(signum, frame):  # while held: recorded; after: the handler it stands for, as if restored
        if holding[0]:
            caught.append(signum)
        else:
            held[signum](signum, frame)

    try:
        with signals_blocked(held):
            for s, handler in held.items():
                signal.signal(s, gate)
                swapped[s] = handler
        yield
    finally:
        holding[0] = False
        raised = _restore_handlers(swapped)
        if raised is not None:  # a signal came while restoring: its handler raised already
            raise raised
        if caught:
            signal.raise_signal(caught[0])


def _restore_handlers(handlers: dict[int, Callable]) -> BaseException | None:
    """Put every handler back, even when one that is back already runs and raises meanwhile (a
    signal from another thread's delivery is not held by this thread's mask): that exception is
    returned, after the rest are back, for the caller to raise."""
    todo, raised = list(handlers.items()), None
    while todo:
        try:
            with signals_blocked(handlers):
                while todo:
                    signal.signal(*todo[0])
                    todo.pop(0)
        except BaseException as exc:  # noqa: BLE001 - a handler's KeyboardInterrupt, kept for after
            raised = raised or exc
    return raised


def _is_healthy(check: HealthCheck, request_timeout_s: float, verify: bool | ssl.SSLContext) -> bool:
    try:
        if callable(check):
            return bool(check())
        return httpx.get(check, timeout=request_timeout_s, verify=verify).status_code == 200
    except (httpx.HTTPError, OSError, ValueError):  # ValueError: a half-written JSON answer
        return False


def wait_for_health(proc: subprocess.Popen | None, check: HealthCheck, deadline: float, interval_s: float = 1.0,
                    request_timeout_s: float = 2.0, verify: bool | ssl.SSLContext = True
                    ) -> Literal["healthy", "exited", "timeout"]:
    """Poll ``check`` (a URL that must return 200, or a function that must return True; HTTP,
    OS and value errors count as not yet) until it passes ("healthy"), ``proc`` exits ("exited") or
    ``time.monotonic()`` passes ``deadline`` ("timeout"). ``proc`` None: no child of ours to watch
    (a server the user's restart command started). ``verify``: httpx's (a context trusting the
    project CA for the local edge).

    Decision: the wait between polls starts at :data:`FIRST_POLL_S` and grows 1.5x a poll up to
    ``interval_s``: a server up in half a second (the stand-in, nginx) is seen then, not after a
    whole interval (the suite starts the stand-in ~150 times), while a slow one (vLLM, ~25 s) is
    polled about once an interval as before."""
    wait = min(FIRST_POLL_S, interval_s)
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return "exited"
        if _is_healthy(check, request_timeout_s, verify):
            return "healthy"
        time.sleep(wait)
        wait = min(wait * 1.5, interval_s)
    return "timeout"


def stop_process(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, grace_s: float = 10) -> None:
    """Send ``sig``; after ``grace_s`` without exit, SIGKILL. The child is reaped either way
    (no zombie). A process that already ended is left as it is."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class ManagedProcess:
    """One child process that never outlives its owner.

    ``with ManagedProcess(argv, name="x", health="http://127.0.0.1:8000/health") as p: ...``;
    the engine, the edge, the chat UI, the replica balancer and Prometheus subclass it (their
    ``prepare()`` writes a config into :meth:`scratch_dir` and sets ``argv``), and k6 uses it
    without a health check (it runs to completion).

    Contract:

    - :meth:`start` runs :meth:`prepare`, then ``argv`` with ``env`` (default: this process's),
      stdin from /dev/null, stdout and stderr appended to ``log`` (a new file: created
      exclusively, never overwritten, as the run record is write-once; default: ``output.log``
      in a scratch directory of its own), in a process group of its own when ``own_group``
      (a terminal's Ctrl-C then reaches the owner, which stops the child in order; and
      :meth:`stop` reaches the child's own children). It then waits until ``health`` passes,
      within ``timeout_s`` of the spawn; ``health=None``: returns once spawned. A child that
      exits first, or a check that never passes, raises ``error`` (the owner's own type:
      EngineError, TargetError, UIError, ...) with the log tail; so does a program that
      :meth:`prepare` cannot find (:class:`inferlab.tools.ToolNotFound`, install hint kept).
      On any failure in :meth:`start`, an interrupt included, the child is stopped and the
      scratch removed before the error goes on (``__exit__`` does not run when ``__enter__``
      raises); a Ctrl-C or SIGTERM during the spawn itself is held until the child is held
      (:func:`interrupts_deferred`). A child that exits because its port was taken after the
      owner chose it is started again, up to ``SPAWN_ATTEMPTS`` tries, each with its own
      ``timeout_s``, where the owner says how to see that (:meth:`port_was_taken`: Prometheus);
      ``startup_s`` is the try that started.
    - ``listen_port`` (set by an owner whose child serves on a port): the health check passes
      only once the child, or a descendant, listens on that port (:func:`listens_on`), so a
      server of another program answering there is never taken for this child; a child that
      exits because the port was taken says so. An owner that picks its own port takes it with
      :meth:`lease_port` (held until :meth:`stop`), so no two inferlab children share one.
    - :meth:`stop` sends ``stop_signal`` (to the group when ``own_group``), SIGKILL after
      ``grace_s``, then SIGKILL to the group for any child that outlived the leader; the child
      is reaped; scratch directories are removed. Safe to call twice (the group is signalled
      once: its id may belong to another process later), or before start.
    - ``proc`` (the Popen) stays readable after stop; ``startup_s`` is the spawn-to-healthy time.
    """

    def __init__(self, argv: Sequence[str] = (), *, name: str = "process", error: type[Exception] = RuntimeError,
                 env: Mapping[str, str] | None = None, cwd: Path | None = None, health: HealthCheck | None = None,
                 timeout_s: float = 30, poll_s: float = 0.5, verify: bool | ssl.SSLContext = True,
                 log: Path | None = None, stop_signal: int = signal.SIGTERM, grace_s: float = 10,
                 own_group: bool = True) -> None:
        self.argv, self.name, self.error = list(argv), name, error
        self.env, self.cwd = env, cwd
        self.health, self.timeout_s, self.poll_s, self.verify = health, timeout_s, poll_s, verify
        self.log = log
        self.stop_signal, self.grace_s, self.own_group = stop_signal, grace_s, own_group
        self.proc: subprocess.Popen | None = None
        self.startup_s: float | None = None
        self.listen_port: int | None = None
        self._scratch: list[Path] = []
        self._leases: list[PortLease] = []
        self._ended = False  # stopped and reaped: never signal its (reusable) ids again

    # ---- hooks and helpers for owners -----------------------------------------------------

    def prepare(self) -> None:
        """Run by :meth:`start` before the spawn: write configs, set ``argv``/``env``/``log``.
        The default does nothing."""

    def scratch_dir(self, prefix: str, parent: Path | None = None, mode: int | None = None) -> Path:
        """A new directory (0700 unless ``mode``) removed by :meth:`stop`."""
        d = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        self._scratch.append(d)
        if mode is not None:
            d.chmod(mode)
        return d

    def lease_port(self, preferred: int = 0, exact: bool = False) -> int:
        """A port from :func:`lease_port`, held until :meth:`stop`, and this child's
        ``listen_port``; none to be had raises the owner's error."""
        try:
            lease = lease_port(preferred, exact=exact)
        except OSError as exc:  # the owner's callers catch the owner's error
            raise self.error(f"{self.name}: {exc}") from exc
        self._leases.append(lease)
        self.listen_port = lease.port
        return lease.port

    def log_tail(self, n: int = 40) -> str:
        """The last ``n`` lines of the log ("(no log)" when there is none yet)."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:]) if self.log else "(no log)"
        except OSError:
            return "(no log)"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    # ---- lifecycle ----------------------------------------------------------------------

    def start(self, timeout_s: float | None = None) -> Self:
        """Start and wait for health (see the class); ``timeout_s`` overrides the constructor's."""
        if timeout_s is not None:
            self.timeout_s = timeout_s
        for attempt in range(1, SPAWN_ATTEMPTS + 1):
            try:
                try:
                    self.prepare()
                except ToolNotFound as exc:  # the owner's callers catch the owner's error
                    raise self.error(str(exc)) from exc
                self._spawn()
                if self.health is not None:
                    self._wait_healthy()
                return self
            except BaseException as exc:
                try:  # read before stop() removes the log; the child is stopped whatever happens
                    again = isinstance(exc, self.error) and attempt < SPAWN_ATTEMPTS and self.port_was_taken()
                finally:
                    self.stop()
                if not again:
                    raise
                self.proc, self._ended = None, False  # prepare() picks another port
        raise AssertionError("unreachable")

    def port_was_taken(self) -> bool:
        """After a failed start, before its scratch is removed: did the child exit because its
        port was taken after the owner chose it (free then, not reserved)? Then :meth:`start`
        tries again from :meth:`prepare`, which must choose the port and the log anew. The
        default: never (an owner that picks its port once, in ``__init__``, cannot move)."""
        return False

    def _spawn(self) -> None:
        if self.log is None:
            self.log = self.scratch_dir(f"inferlab-{self.name.replace(' ', '-')}-") / "output.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        try:
            self._t0 = time.monotonic()
            with interrupts_deferred():  # the Popen is ours before a Ctrl-C can unwind past it
                self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=fd, stderr=subprocess.STDOUT,
                                             env=dict(self.env) if self.env is not None else None, cwd=self.cwd,
                                             start_new_session=self.own_group)
        finally:
            os.close(fd)  # the child holds its own copy

    def _wait_healthy(self) -> None:
        assert self.proc is not None and self.health is not None
        check, port, pid = self.health, self.listen_port, self.proc.pid

        def answers() -> bool:  # the owner's check, as wait_for_health runs it
            return _is_healthy(self.health, 2.0, self.verify)

        if port is not None:  # ours: the child listens there, then its health check passes
            def check() -> bool:
                return listens_on(pid, port) and answers()
        outcome = wait_for_health(self.proc, check, self._t0 + self.timeout_s, self.poll_s, verify=self.verify)
        if outcome == "exited":
            taken = (f" (port {port} was taken by another program after it was leased: start again)"
                     if port is not None and port_taken(self.log_tail(20)) else "")
            raise self.error(f"{self.name} exited with code {self.proc.returncode} before ready{taken}; "
                             f"log tail:\n{self.log_tail()}")
        if outcome == "timeout":
            what = self.health if isinstance(self.health, str) else "its health check"
            other = (f" (port {port}: another program answers there)"
                     if port is not None and not listens_on(pid, port) and answers() else "")
            raise self.error(f"{self.name} not healthy at {what} after {self.timeout_s:.0f}s{other}; "
                             f"log tail:\n{self.log_tail()}")
        self.startup_s = round(time.monotonic() - self._t0, 1)

    def wait(self) -> int:
        """Block until the child exits; its exit code."""
        assert self.proc is not None, "start() first"
        return self.proc.wait()

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the child (its group when ``own_group``); nothing once stopped."""
        if self.proc is None or self._ended:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if self.own_group:
                os.killpg(self.proc.pid, sig)
            elif self.proc.poll() is None:
                self.proc.send_signal(sig)

    def stop(self) -> None:
        stop_all([self])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_all(procs: Iterable[ManagedProcess], grace_s: float | None = None) -> None:
    """Stop several at once: every ``stop_signal`` goes out first, so the grace periods
    overlap (several k6 segments end together), then each is waited for until its grace
    period (or ``grace_s`` for all; 0: kill now) is over and killed after it. A Ctrl-C during
    the wait means "now": the rest are killed at once and the interrupt is not raised again
    (the caller is already stopping)."""
    procs = list(procs)
    t0 = time.monotonic()
    running = [p for p in procs if p.proc is not None and p.proc.poll() is None]
    for p in running:
        p.signal(p.stop_signal)
    try:
        for p in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                grace = p.grace_s if grace_s is None else grace_s
                p.proc.wait(timeout=max(0.0, t0 + grace - time.monotonic()))  # type: ignore[union-attr]
    except KeyboardInterrupt:
        pass
    try:
        for p in procs:
            if p.proc is None or p._ended:
                continue
            if p.proc.poll() is None or p.own_group:  # the group: children that outlived the leader
                p.signal(signal.SIGKILL)
            p.proc.wait()
            p._ended = True
    finally:  # even when a second Ctrl-C cuts the wait: no scratch or port lease outlives this
        for p in procs:  # those never started too: a prepare() that failed may have made scratch
            for d in p._scratch:
                shutil.rmtree(d, ignore_errors=True)
            p._scratch.clear()
            for lease in p._leases:  # the child is gone (or killed): its port may go to the next one
                lease.release()
            p._leases.clear()
