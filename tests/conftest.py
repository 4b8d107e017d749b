"""Shared fixtures. Tests that need the real engine use ONE session-scoped vLLM CPU engine,
started with the span receiver; every engine start in the session is counted (at most
:data:`MAX_ENGINE_STARTS`, checked when the session ends)."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from pathlib import Path

import pytest

from .measured_speed import MeasuredSpeed, measure_speed

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
        if self.python is None:  # the real CPU engine; another interpreter here is the stand-in's wrapper
            _engine_starts.append(_current_test[0])
        return start(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(LocalEngine, "start", counted)
        yield


def pytest_sessionfinish(session, exitstatus):
    if len(_engine_starts) > MAX_ENGINE_STARTS and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    tr, n = terminalreporter, len(_engine_starts)
    if not n and not _speed:
        return
    tr.section("engine")
    if _speed:
        tr.write_line(f"session engine speed: {_speed[0].describe()}")
    over = n > MAX_ENGINE_STARTS
    tr.write_line(f"engine starts: {n} (at most {MAX_ENGINE_STARTS})" + (": OVER THE LIMIT, the session fails" if over
                                                                          else ""), red=over)
    for test in dict.fromkeys(_engine_starts):
        tr.write_line(f"  {_engine_starts.count(test)} x {test}")


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Path:
    """An empty workspace (data/runs, data/sample copied) so tests never touch the real data/runs."""
    (tmp_path / "pyproject.toml").write_text("[project]\nname='ws'\n")
    (tmp_path / "data" / "runs").mkdir(parents=True)
    shutil.copytree(ROOT / "data" / "sample", tmp_path / "data" / "sample")
    monkeypatch.setenv("INFERLAB_HOME", str(tmp_path))
    monkeypatch.delenv("INFERLAB_API_KEY", raising=False)
    return tmp_path


def skip_without_engine() -> None:
    """The skips every real-engine test shares (the session engine's and a test's own)."""
    from inferlab.targets.engine import ENGINE_VENV

    if os.environ.get("INFERLAB_SKIP_ENGINE") == "1":
        pytest.skip("INFERLAB_SKIP_ENGINE=1: engine tests skipped")
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
