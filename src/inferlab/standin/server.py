"""Running a stand-in: :func:`serve` (the command line's loop, in this process) and
:class:`StandIn`, the context manager tests use (a thread of this process, or a child process).

Death (``die_after_requests``/``die_at_s``): the listener closes and every open connection is
reset at once, queued and running requests included, and no further span is sent. From the
command line the process then exits with :data:`DEATH_EXIT_CODE`; in a thread, ``dead`` is set
and ``stats()`` answers until the ``with`` ends.
A graceful stop (SIGTERM/SIGINT, or leaving the ``with``) sends the spans still held first.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import httpx

from ..procs import ManagedProcess, free_port
from .api import App
from .config import API_KEY_ENV, StandInConfig
from .http import start_server
from .spans import SpanExporter
from .stats import Stats

DEATH_EXIT_CODE = 70
READY_LINE = "inferlab-standin listening on"


class StandInError(RuntimeError):
    pass


async def _run(app: App, on_ready: Callable[[int], None], stop: asyncio.Event) -> bool:
    """Serve until ``stop`` or death; True when it died."""
    cfg, loop = app.cfg, asyncio.get_running_loop()
    die = asyncio.Event()
    if cfg.die_after_requests is not None:
        app.on_completed = lambda: die.set() if app.stats.completed >= cfg.die_after_requests else None
    if cfg.die_at_s is not None:
        loop.call_later(cfg.die_at_s, die.set)
    writers: set[asyncio.StreamWriter] = set()
    server = await start_server(app, cfg.host, cfg.port, writers)
    port = server.sockets[0].getsockname()[1]
    app.stats.config = app.stats.config.model_copy(update={"port": port})
    on_ready(port)
    waits = [asyncio.ensure_future(e.wait()) for e in (stop, die)]
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for w in waits:
        w.cancel()
    server.close()
    died = die.is_set()
    app.stats.dead = died
    for w in list(writers):
        if died:
            w.transport.abort()  # a reset, as a killed process leaves its peers
        else:
            w.close()
    return died


def serve(cfg: StandInConfig, ignored_args: list[str]) -> int:
    """The command line's server: prints :data:`READY_LINE` once listening; returns the exit code."""
    if cfg.pid_file:
        Path(cfg.pid_file).write_text(f"{os.getpid()}\n")
    exporter = SpanExporter(cfg.otlp_traces_endpoint).start() if cfg.otlp_traces_endpoint else None
    app = App(cfg, ignored_args, exporter)
    if ignored_args:
        print(f"inferlab-standin: ignoring vLLM arguments {' '.join(ignored_args)}", file=sys.stderr, flush=True)

    async def main() -> bool:
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        return await _run(app, lambda port: print(f"{READY_LINE} http://{cfg.host}:{port}", flush=True), stop)

    died = asyncio.run(main())
    if exporter is not None:
        exporter.stop(flush=not died)
    if died:
        print("inferlab-standin: dying as configured (fault injection)", file=sys.stderr, flush=True)
        return DEATH_EXIT_CODE
    return 0


def standin_argv(cfg: StandInConfig) -> list[str]:
    """The command line that runs a stand-in with ``cfg`` (this interpreter); its key goes in
    the environment (:func:`standin_env`), never on the command line."""
    return [sys.executable, "-m", "inferlab.standin", *cfg.cli_args()]


def standin_env(cfg: StandInConfig) -> dict[str, str]:
    """This process's environment plus ``$VLLM_API_KEY`` for ``cfg``'s key (removed without one)."""
    env = {k: v for k, v in os.environ.items() if k != API_KEY_ENV}
    return {**env, API_KEY_ENV: cfg.api_key} if cfg.api_key else env


class StandIn:
    """``with StandIn(slots=1, tpot_ms=5) as s: httpx.get(f"{s.base_url}/health")``.

    ``config`` and keyword fields (they override it) make a :class:`StandInConfig`; port 0
    (or the default) picks a free port. In-thread (default): an asyncio loop in a daemon thread
    of this process, ``stats()`` read directly. ``process=True``: ``python -m inferlab.standin``
    as a managed child (``proc``, ``returncode``); stats over HTTP while it lives, and a
    death is a real exit."""

    def __init__(self, config: StandInConfig | None = None, *, process: bool = False, **fields) -> None:
        given = config.model_dump(exclude_unset=True) if config is not None else {}
        self.config = StandInConfig(**{"port": 0, **given, **fields})  # any free port unless one is set
        self.process = process
        self.port: int | None = None
        self.dead = threading.Event()
        self._app: App | None = None
        self._managed: ManagedProcess | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._exporter: SpanExporter | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    @property
    def api_key(self) -> str | None:
        return self.config.api_key

    @property
    def proc(self):
        return self._managed.proc if self._managed else None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def log_tail(self, n: int = 40) -> str:
        """The child's last output lines (process mode; "" in a thread)."""
        return self._managed.log_tail(n) if self._managed else ""

    def headers(self) -> dict[str, str]:
        """The Authorization header this stand-in expects (empty without a key)."""
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def stats(self, with_requests: bool = True) -> Stats:
        """Ground truth now (see :mod:`.stats`)."""
        if self._app is not None:
            assert self._loop is not None
            if self._thread is not None and self._thread.is_alive():
                return asyncio.run_coroutine_threadsafe(self._snapshot(with_requests), self._loop).result(10)
            return self._app.snapshot(with_requests)
        r = httpx.get(f"{self.base_url}/standin/stats", params={"requests": int(with_requests)}, timeout=10)
        r.raise_for_status()
        return Stats.model_validate_json(r.content)

    async def _snapshot(self, with_requests: bool) -> Stats:
        assert self._app is not None
        return self._app.snapshot(with_requests)

    def start(self) -> StandIn:
        return self._start_process() if self.process else self._start_thread()

    def _start_process(self) -> StandIn:
        self.port = self.config.port or free_port()
        cfg = self.config.model_copy(update={"port": self.port})
        self._managed = ManagedProcess(standin_argv(cfg), env=standin_env(cfg), name="stand-in server",
                                       error=StandInError, health=f"{self.base_url}/health", timeout_s=30,
                                       poll_s=0.1, grace_s=5)
        self._managed.start()
        return self

    def _start_thread(self) -> StandIn:
        ready = threading.Event()
        failure: list[BaseException] = []
        cfg = self.config
        self._exporter = SpanExporter(cfg.otlp_traces_endpoint).start() if cfg.otlp_traces_endpoint else None
        self._app = App(cfg, [], self._exporter)

        def on_ready(port: int) -> None:
            self.port = port
            ready.set()

        async def main() -> None:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            if await _run(self._app, on_ready, self._stop):
                if self._exporter is not None:
                    self._exporter.stop(flush=False)
                self.dead.set()
                await self._stop.wait()  # dead but still readable: stats() until the with ends

        def body() -> None:
            try:
                asyncio.run(main())
            except BaseException as exc:  # noqa: BLE001 - surfaced by start()
                failure.append(exc)
                ready.set()

        self._thread = threading.Thread(target=body, name="standin", daemon=True)
        self._thread.start()
        ready.wait(30)
        if failure or self.port is None:
            self.stop()
            raise StandInError(f"stand-in did not start: {failure[0] if failure else 'timeout'}")
        return self

    def stop(self) -> None:
        if self._managed is not None:
            self._managed.stop()
        if self._thread is not None:
            if self._thread.is_alive() and self._loop is not None and self._stop is not None:
                self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout=10)
        if self._exporter is not None and not self.dead.is_set():
            self._exporter.stop(flush=True)

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
