"""Shared fixtures. Tests that need the real engine use ONE session-scoped vLLM CPU engine,
started with the span receiver; every engine start in the session is counted (at most
:data:`MAX_ENGINE_STARTS`, checked when the session ends)."""

from __future__ import annotations

import multiprocessing
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from .measured_speed import MeasuredSpeed, measure_speed, tiny_sets, tiny_tokens

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"

#: Engine starts allowed in one session (issue 18 item 5): the session engine and the one real
#: 2+2 interleaved A/B (tests/e2e/test_comparison.py), whose every repeat starts its own engine.
MAX_ENGINE_STARTS = 5

#: The session engine admits this many requests at once (--max-num-seqs); the rest wait in
#: vLLM's queue. Decision: small enough that the overload test queues past the platform's 50
#: waiting requests with SESSION_SLOTS + 60 clients (tests/telemetry/test_prometheus.py), large
#: enough for every closed-loop cell of the suite (2 VUs) to run unqueued.
SESSION_SLOTS = 4

_engine_starts: list[str] = []  # the test (node id) during whose setup or run each engine started
_start_s: list[float] = []  # seconds each engine start took (to healthy)
_wall_t0 = [time.monotonic()]  # when the session started (its wall time, beside the tiers' summed test time)
_tier_s = {"engine": 0.0, "other": 0.0}  # setup + call + teardown seconds of the tests of each tier
_current_test = ["(outside a test)"]
_speed: list[MeasuredSpeed] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _current_test[0] = item.nodeid
    yield
    _current_test[0] = "(outside a test)"


@pytest.fixture(scope="session", autouse=True)
def count_engine_starts():
    """Every ``LocalEngine.start`` in this process (the session engine's, a run's on target
    local, each A/B repeat's) is recorded; :func:`pytest_sessionfinish` enforces the limit."""
    from inferlab.targets.engine import LocalEngine

    start = LocalEngine.start

    def counted(self, *args, **kwargs):
        if self.python is not None:  # another interpreter here is the stand-in's wrapper, not the real CPU engine
            return start(self, *args, **kwargs)
        _engine_starts.append(_current_test[0])
        t0 = time.monotonic()
        try:
            return start(self, *args, **kwargs)
        finally:
            _start_s.append(time.monotonic() - t0)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(LocalEngine, "start", counted)
        yield


def pytest_collection_modifyitems(config, items):
    """Tests marked ``slow`` first, each group in its collected order: make test's xdist session
    hands out tests two at a time (``--maxschedchunk 1``), so its processes start the long ones
    at once and fill in with short ones, rather than meeting a 2-minute test near the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: False (slow) first


def pytest_sessionstart(session):
    _wall_t0[0] = time.monotonic()


def pytest_sessionfinish(session, exitstatus):
    if len(_engine_starts) > MAX_ENGINE_STARTS and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_runtest_logreport(report):
    _tier_s["engine" if "engine" in report.keywords else "other"] += report.duration


def pytest_terminal_summary(terminalreporter):
    tr, n = terminalreporter, len(_engine_starts)
    tr.section("time by tier")  # where make test's minutes went (docs/testing.md, "Where the time goes")
    workers = getattr(tr.config.option, "numprocesses", None)  # pytest-xdist's -n (make test's first session)
    tr.write_line(f"tests without the engine {_tier_s['other'] / 60:.1f} min, engine tests {_tier_s['engine'] / 60:.1f} min"
                  + (f" (engine start-ups {sum(_start_s) / 60:.1f} min over {len(_start_s)})" if _start_s else "")
                  + (f"; summed over {workers} workers, the session's wall time "
                     f"{(time.monotonic() - _wall_t0[0]) / 60:.1f} min" if workers else ""))
    if not n and not _speed:
        return
    tr.section("engine")
    if _speed:
        tr.write_line(f"session engine speed: {_speed[0].describe()}; ci-tiny answers {tiny_tokens(_speed[0])} tokens")
    over = n > MAX_ENGINE_STARTS
    tr.write_line(f"engine starts: {n} (at most {MAX_ENGINE_STARTS})" + (": OVER THE LIMIT, the session fails" if over
                                                                          else ""), red=over)
    for test in dict.fromkeys(_engine_starts):
        tr.write_line(f"  {_engine_starts.count(test)} x {test}")


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture
def quick_holm(monkeypatch):
    """statsmodels' Holm (``multipletests(method="holm")``, the reference ``stats.holm`` is checked
    against) runs ``gc.collect()`` on every call, 0.1-0.25 s each in a test process that holds
    the sample runs: a no-op while a test uses it (the numbers are unchanged)."""
    import gc

    monkeypatch.setattr(gc, "collect", lambda *args, **kwargs: 0)


def make_workspace(path: Path, mp: pytest.MonkeyPatch, sample: bool = True) -> Path:
    """An empty workspace at ``path`` (data/runs; data/sample copied unless ``sample`` is False),
    made the current one through ``mp`` (INFERLAB_HOME, no INFERLAB_API_KEY) so tests never
    touch the real data/runs."""
    (path / "data" / "runs").mkdir(parents=True)
    (path / "pyproject.toml").write_text("[project]\nname='ws'\n")
    if sample:
        shutil.copytree(ROOT / "data" / "sample", path / "data" / "sample")
    mp.setenv("INFERLAB_HOME", str(path))
    mp.delenv("INFERLAB_API_KEY", raising=False)
    return path


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Path:
    """An empty workspace (data/runs, data/sample copied) so tests never touch the real data/runs."""
    return make_workspace(tmp_path, monkeypatch)


def cli_sigterm_when(args: list[str], ready: Callable[[], bool], timeout_s: float = 240) -> tuple[int, str]:
    """``python -m inferlab.cli *args`` in a child process (this checkout's src/ first on its
    path), sent SIGTERM, as a time limit's `timeout` does, once ``ready()`` holds (polled every
    0.2 s; the child must not end first, nor ``timeout_s`` pass): (its exit code, its output)."""
    import inferlab

    env = {**os.environ, "PYTHONPATH": str(Path(inferlab.__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "inferlab.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + timeout_s
        while not ready():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0][-3000:]
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=120)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out


def skip_without_engine() -> None:
    """The skips every real-engine test shares (the session engine's and a test's own)."""
    from inferlab.targets.engine import ENGINE_VENV

    if os.environ.get("INFERLAB_SKIP_ENGINE") == "1":
        pytest.skip("INFERLAB_SKIP_ENGINE=1: engine tests skipped")
    if os.environ.get("PYTEST_XDIST_WORKER"):  # each worker would start its own engine, uncounted
        pytest.fail("engine tests run in one process (make test's second session: pytest -m engine), not under -n")
    if not (ROOT / ENGINE_VENV / "bin" / "python").is_file():
        pytest.skip(f"{ENGINE_VENV}/ missing: `make engine` (make test does it)")


@pytest.fixture(scope="session")
def engine_spans():
    """The OTLP span receiver the session engine exports to (one ``llm_request`` span per
    request). Shared: a test drains it before it sends what it wants to find there."""
    skip_without_engine()
    from inferlab.telemetry.otlp import OtlpReceiver

    with OtlpReceiver() as rx:
        yield rx


@pytest.fixture(scope="session")
def engine(engine_spans):
    """The real vLLM CPU engine, started once for the whole session: ci-tiny's engine args,
    ``--max-num-seqs`` :data:`SESSION_SLOTS`, and the span receiver's args and environment."""
    from inferlab.specs import builtin_spec, load_spec
    from inferlab.targets.engine import LocalEngine

    spec = load_spec(builtin_spec("ci-tiny")).engine
    spec = spec.model_copy(update={
        "args": [*spec.args, "--max-num-seqs", str(SESSION_SLOTS), *engine_spans.engine_args()],
        "env": {**spec.env, **engine_spans.engine_env()}})
    log = Path(tempfile.mkdtemp(prefix="inferlab-engine-")) / "engine.log"
    eng = LocalEngine(spec, secrets.token_urlsafe(24), log)
    eng.start()
    yield eng
    eng.stop()


@pytest.fixture(scope="session")
def engine_speed(engine) -> MeasuredSpeed:
    """The session engine's speed at one client, measured once (printed at the end of the session)."""
    if not _speed:
        _speed.append(measure_speed(engine.base_url, engine.api_key, engine.spec.served_model_name))
    return _speed[0]


@pytest.fixture(scope="session")
def tiny_answer_tokens(engine_speed) -> int:
    """ci-tiny's answer and probe length on the real engine, from its measured speed."""
    return tiny_tokens(engine_speed)


@pytest.fixture(scope="session")
def tiny_on_engine(tiny_answer_tokens) -> list[str]:
    """The ``--set`` items that size ci-tiny's answers and probe for this machine's engine
    (``resolve_spec("ci-tiny", sets=...)``, the CLI's ``--set``, the notebook's ``set_fields``)."""
    return tiny_sets(tiny_answer_tokens)


#: A known secret written into the rendered reports' workspace: no rendered file may contain it.
REPORT_SECRET = "sk-test-" + "a1b2c3d4e5f6a7b8"

#: Sample reports rendered HTML-only beside the printed ones, one of each further shape of run
#: or comparison (the other shipped ones repeat these shapes): a capacity search, the edge
#: rate-limit ramp, the overload run with Prometheus alerts, a CPU load test with server spans,
#: an A/A comparison of repeats.
HTML_ONLY_REPORTS = ("stress-20261127T082345Z-local-capacity-local-1", "stress-20261127T110659Z-local-edge-ratelimit",
                     "stress-20261127T115936Z-local-alerts-overload",
                     "load-test-20261127T121016Z-local-trace-timing-quiet", "compare-20261127T073618Z-local-ab-aa-local")


@dataclass(frozen=True)
class RenderedReports:
    """Reports rendered once for the session (notebook execution is the suite's largest cost
    outside the engine): ``printed`` maps each report kind to its first sample job's files
    (executed notebook, HTML, PDF when Chromium is there) -- the H200 load test, stress run and
    compare of the two H200 sweeps, and the tune report of a record built from the two shipped
    capacity runs; ``html_only`` the :data:`HTML_ONLY_REPORTS`. Made in their own workspace
    (a copy of data/sample, :data:`REPORT_SECRET` in its secrets folder)."""

    workspace: Path
    printed: dict[str, list[Path]]
    html_only: dict[str, list[Path]]

    def file(self, report: str, suffix: str) -> Path | None:
        return next((p for p in self.printed[report] if p.suffix == suffix), None)


@pytest.fixture(scope="session")
def rendered_reports(tmp_path_factory) -> RenderedReports:
    """The reports of :class:`RenderedReports`, rendered once per ``make test`` session: under
    pytest-xdist the first worker that needs them renders them into the run's shared base
    folder while holding a file lock, and the others wait for it and read its list (they would
    otherwise each render the same 9 reports, ~60 s on both cores each). A render that fails is
    recorded beside the list, and every later use fails at once with its reason."""
    import fcntl
    import json

    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # xdist: the workers' common folder
    made_list, failed = root / "rendered-reports.json", root / "rendered-reports.error"
    with open(root / "rendered-reports.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if failed.is_file():  # the first render failed: the others fail with its reason, not a render each
            pytest.fail(f"rendering the session's reports failed in another process: {failed.read_text()}")
        if not made_list.is_file():
            try:
                made = _render_reports(Path(tempfile.mkdtemp(dir=root, prefix="rendered-reports-")))
            except BaseException as exc:
                failed.write_text(f"{type(exc).__name__}: {exc}"[:2000])
                raise
            tmp = made_list.with_suffix(".tmp")
            tmp.write_text(json.dumps(made))
            os.replace(tmp, made_list)  # whole or absent, never half-written
        ws, printed, html_only = json.loads(made_list.read_text())
    as_paths = lambda d: {k: [Path(p) for p in v] for k, v in d.items()}  # noqa: E731
    return RenderedReports(Path(ws), as_paths(printed), as_paths(html_only))


def _render_reports(ws: Path) -> tuple[str, dict[str, list[str]], dict[str, list[str]]]:
    """Render the reports of :class:`RenderedReports` into the empty workspace ``ws``; returns
    (workspace, printed, html_only) with paths as strings."""
    from inferlab.credentials import write_secret
    from inferlab.report import catalog

    from .sweep.tune_sample import sample_tune

    with pytest.MonkeyPatch.context() as mp:
        make_workspace(ws, mp)
        write_secret("api-key", REPORT_SECRET)  # where the leak scan looks
        jobs = [*catalog.jobs_for("sample"), *catalog.jobs_for(sample_tune(ws / "data" / "sample"))]
        first: dict[str, catalog.Job] = {}
        for job in jobs:
            first.setdefault(job.report, job)
        assert set(first) == set(catalog.NOTEBOOKS)
        by_slug = {j.slug: j for j in jobs}
        assert set(HTML_ONLY_REPORTS) <= set(by_slug), sorted(by_slug)
        # Two at a time, in two worker processes (spawned, so no thread of this session is
        # forked; they inherit the workspace's environment): a render is mostly its notebook
        # kernel and Chromium, and pytest leaves the second core of a 2-core machine idle.
        todo = [(job, True) for job in first.values()] + [(by_slug[slug], False) for slug in HTML_ONLY_REPORTS]
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
            made = [[str(p) for p in files] for files in pool.map(_render, todo)]
    return str(ws), dict(zip(first, made[:len(first)])), dict(zip(HTML_ONLY_REPORTS, made[len(first):]))


def _render(job_pdf) -> list[Path]:
    """One report of :func:`rendered_reports` (a worker process's task)."""
    from inferlab.report import render

    job, pdf = job_pdf
    return render.render(job, pdf=pdf)
