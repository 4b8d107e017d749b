"""The time estimate a run prints before it starts, and --dry-run's plan: this machine's measured
engine speed when a local run recorded it, else the reference figure for its CPU class."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from inferlab import paths
from inferlab.runs.environment import host_info, versions
from inferlab.runs.manifest import CellRecord, Manifest, TargetInfo
from inferlab.runs.store import write_manifest
from inferlab.specs import plan_cells, resolve_spec
from inferlab.sweep.engine_speed import EngineSpeed, engine_speed
from inferlab.sweep.estimate import describe_plan, estimate, expectation

AVX2_ONLY = "model name : Test CPU\nflags : fpu sse2 avx avx2 fma\n"
AVX512_BF16 = "model name : Test CPU\nflags : fpu sse2 avx avx2 avx512f avx512_bf16\n"


def matrix(*sets: str):
    return resolve_spec("matrix-local", sets=list(sets))


def test_reference_avx2_only_reproduces_the_measured_matrix_cells(tmp_path):
    """bf16 on an AVX2-only CPU: 9.4 tokens/s at 1 VU, a 64-token answer 6.8 s, and the 256-token
    cell at 16 VUs measured 281 s there: 36 measured requests, 16 warm-up (a full round of VUs, as
    k6 sends it) and 2 64-token probes (the matrix as it was then)."""
    spec = matrix("engine.args=[--dtype, bfloat16]", "min_window_requests=4", "payloads.long.max_tokens=256",
                  "probe.payload.max_tokens=64")
    speed = engine_speed(spec, runs_dir=tmp_path, cpuinfo=AVX2_ONLY)
    assert speed.tokens_per_s(1) == 9.4 and 64 / speed.tokens_per_s(1) == pytest.approx(6.8, abs=0.05)
    assert speed.source.startswith("reference figure for an AVX2-only CPU (9.4 tokens/s at 1 VU, 47.8 tokens/s at "
                                   "16 VUs, bfloat16")
    cells = {c.cell_id: c for c in estimate(spec, "local", speed=speed).cells}
    assert cells["long-c16"].requests == 36 and cells["long-c16"].seconds == pytest.approx(281, rel=0.05)


def test_the_default_matrix_fits_make_report_on_an_avx2_only_cpu(tmp_path, monkeypatch):
    """Issue 18: `make report` < 15 min from a fresh clone on a 2-core AVX2-only CPU, ~2 min of it
    set-up and ~2.5 min rendering (docs/testing.md): the default matrix, the model's conversion
    and the engine's first start included, is expected in < 10 min there, and keeps its cells
    with >= 20 requests in every window."""
    monkeypatch.setattr(paths, "cache_dir", lambda: tmp_path / "fresh-clone-cache")  # nothing converted yet
    monkeypatch.delenv("INFERLAB_ENGINE_MODEL", raising=False)
    spec = matrix()
    est = estimate(spec, "local", speed=engine_speed(spec, runs_dir=tmp_path, cpuinfo=AVX2_ONLY))
    assert est.conversion_s > 0 and est.startup_s == 240.0
    assert [c.cell_id for c in est.cells] == ["short-c1", "short-c4", "short-c16", "long-c4", "long-c16"]
    assert all(c.requests - 2 * c.vus >= 20 for c in est.cells) and not spec.sample_size_warnings()
    assert est.seconds < 10 * 60, est


def test_reference_follows_the_cpu_class_and_dtype(tmp_path):
    spec = matrix()
    slow = engine_speed(spec, runs_dir=tmp_path, cpuinfo=AVX2_ONLY)  # float32: this CPU's dtype
    fast = engine_speed(spec, runs_dir=tmp_path, cpuinfo=AVX512_BF16)
    assert "float32" in slow.source and slow.tokens_per_s(1) == pytest.approx(10.3)
    assert "AVX-512" in fast.source and 2.5 < fast.tokens_per_s(1) / 9.4 < 3.5  # ~3x faster
    slow_est, fast_est = estimate(spec, "local", speed=slow), estimate(spec, "local", speed=fast)
    cells = lambda e: sum(c.seconds for c in e.cells)  # noqa: E731
    assert cells(slow_est) > 2.5 * cells(fast_est)  # decode ~3x slower
    # the first compiled start too, though less: its inductor compile has no AVX-512 in it
    assert 1.5 * fast.startup_s < slow.startup_s < 3 * fast.startup_s and slow_est.seconds > 2 * fast_est.seconds


def test_batching_gains_sqrt_vus_from_the_nearest_measured_level():
    speed = EngineSpeed({1: 10.0, 4: 30.0}, 0.0, "test")
    assert speed.tokens_per_s(4) == 30.0
    assert speed.tokens_per_s(16) == pytest.approx(60.0)  # from 4 VUs, x sqrt(4)
    assert speed.tokens_per_s(64) == speed.tokens_per_s(16)  # no gain beyond 16 VUs


def test_between_known_levels_the_power_law_through_them():
    speed = EngineSpeed({1: 10.0, 16: 50.0}, 0.0, "test")
    assert speed.tokens_per_s(4) == pytest.approx(10.0 * 5 ** 0.5)  # 4 is halfway from 1 to 16 on a log scale
    assert speed.tokens_per_s(1) < speed.tokens_per_s(2) < speed.tokens_per_s(8) < speed.tokens_per_s(16)


def test_measured_throughput_counts_warm_up_as_k6_sends_it(tmp_path):
    """The record says the spec's warm-up (2); k6 sent a full round of the cell's 16 VUs."""
    spec = matrix()
    record(tmp_path, spec, tokens_per_s=20.0, startup_s=42.0, cell="short-c16")
    speed = engine_speed(spec, runs_dir=tmp_path, cpuinfo=AVX2_ONLY)
    assert speed.throughput == {16: pytest.approx(20.0)}


def record(runs_dir, spec, tokens_per_s: float, startup_s: float, hostname: str | None = None,
           cell: str = "short-c1") -> str:
    """A local run record whose ``cell`` ran at ``tokens_per_s`` (warm-up as k6 sent it included)."""
    host = host_info(same_host=True)
    if hostname:
        host = host.model_copy(update={"hostname": hostname})
    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    m = Manifest(run_id="20261201T000000Z-local-m", kind="sweep", label="m", created_at=t0, status="complete",
                 target=TargetInfo(kind="local", base_url="http://127.0.0.1:1", model="smollm2", startup_s=startup_s,
                                   engine_args=spec.engine.args),
                 versions=versions(paths.install_root(), None, None), host=host, spec=spec.model_dump(mode="json"),
                 cells=[CellRecord(**c.model_dump()) for c in plan_cells(spec)])
    c1 = next(c for c in m.cells if c.cell_id == cell)
    secs = (c1.iterations + max(2, c1.vus)) * spec.payloads[c1.payload].max_tokens / tokens_per_s
    c1.status, c1.warmup_requests, c1.started_at, c1.ended_at = "complete", 2, t0, t0 + timedelta(seconds=secs)
    (runs_dir / m.run_id).mkdir(parents=True)
    write_manifest(runs_dir / m.run_id, m)
    return m.run_id


def test_measured_on_this_machine_wins_over_the_reference(tmp_path):
    spec = matrix()
    run_id = record(tmp_path, spec, tokens_per_s=20.0, startup_s=42.0)
    speed = engine_speed(spec, runs_dir=tmp_path, cpuinfo=AVX2_ONLY)
    assert speed.tokens_per_s(1) == pytest.approx(20.0) and speed.startup_s == 42.0
    assert speed.source.startswith(f"measured on this machine in run {run_id}")


def test_another_hosts_record_is_not_this_machine(tmp_path):
    spec = matrix()
    record(tmp_path, spec, tokens_per_s=20.0, startup_s=42.0, hostname="elsewhere")
    assert engine_speed(spec, runs_dir=tmp_path, cpuinfo=AVX2_ONLY).source.startswith("reference figure")


def test_dry_run_and_expectation_name_their_source(workspace):
    spec = matrix()
    plan = describe_plan(spec, "local")
    assert "est. " in plan and "\n  speed: reference figure for " in plan
    line = expectation(spec, "local")
    assert line.startswith("expected: ~") and "engine start-up ~" in line and "5 cells" in line
    assert "engine start-up" not in expectation(spec, "url")  # no engine to start


def test_run_prints_its_expectation_before_the_target_starts(workspace, monkeypatch, capsys):
    from inferlab.sweep import runner
    from inferlab.targets.session import TargetError

    def no_target(*a, **kw):
        raise TargetError("no target in this test")

    monkeypatch.setattr(runner, "find_tool", lambda name: name)
    monkeypatch.setattr(runner, "open_target", no_target)
    runner.run(resolve_spec("ci-tiny"), target="url", base_url="http://127.0.0.1:9")
    err = capsys.readouterr().err
    assert "expected: ~" in err and err.index("expected: ~") < err.index("no target in this test")


def test_an_invalid_engine_choice_fails_before_the_run_directory_exists(workspace, monkeypatch):
    """The local engine's choice is made once, before the run directory is created: an invalid
    one (EngineError) leaves no run behind in status ``running``."""
    from inferlab.sweep import runner
    from inferlab.targets.engine import EngineError

    monkeypatch.setattr(runner, "find_tool", lambda name: name)
    monkeypatch.setenv("INFERLAB_ENGINE_DEVICE", "tpu")
    with pytest.raises(EngineError, match="expected cpu, cuda or cuda:N"):
        runner.run(resolve_spec("ci-tiny"), target="local")
    assert not any(paths.runs_dir().iterdir())


def test_the_engines_first_start_in_a_checkout_adds_the_bundled_models_conversion(workspace, tmp_path, monkeypatch):
    """The bundled GGUF is converted once per checkout (.cache/models), before the engine starts
    and outside a run record's start-up time: expected only while no converted checkpoint is
    there, only for the local target, and not when the engine serves another model."""
    from inferlab.sweep.estimate import MODEL_CONVERSION_S

    monkeypatch.setattr(paths, "cache_dir", lambda: tmp_path / "cache")
    for name in ("MODEL", "PYTHON", "DEVICE"):
        monkeypatch.delenv(f"INFERLAB_ENGINE_{name}", raising=False)
    spec, speed = matrix(), EngineSpeed({1: 10.0}, 20.0, "test")
    first = estimate(spec, "local", speed=speed)
    assert first.conversion_s == MODEL_CONVERSION_S
    assert first.seconds == pytest.approx(estimate(spec, "url", speed=speed).seconds + 20.0 + MODEL_CONVERSION_S)
    assert f"the bundled model's one-time conversion ~{MODEL_CONVERSION_S:.0f} s + engine start-up ~" in \
        expectation(spec, "local")
    monkeypatch.setenv("INFERLAB_ENGINE_MODEL", str(tmp_path / "another-model"))
    assert estimate(spec, "local", speed=speed).conversion_s == 0.0
    monkeypatch.delenv("INFERLAB_ENGINE_MODEL")
    cut = tmp_path / "cache" / "models" / "smollm2-135m-instruct-0123456789abcdef.tmp"  # a conversion cut short
    cut.mkdir(parents=True)
    (cut / "config.json").write_text("{}")
    assert estimate(spec, "local", speed=speed).conversion_s == MODEL_CONVERSION_S
    converted = cut.with_suffix("")
    converted.mkdir()
    assert estimate(spec, "local", speed=speed).conversion_s == MODEL_CONVERSION_S  # no config.json: not converted
    (converted / "config.json").write_text("{}")
    assert estimate(spec, "local", speed=speed).conversion_s == 0.0
    assert "conversion" not in expectation(spec, "local")


def test_a_fresh_clone_on_this_xeon_expects_what_make_report_took_there(tmp_path, monkeypatch):
    """Session 21, `make report` from a fresh clone on a 2-core Intel Xeon (AVX-512 BF16): the
    sweep took 4 min 1 s (the conversion ~28 s, the first compiled start 128 s, the probe and 5
    cells 74 s); it printed 2.8 min then. With nothing recorded or converted it now expects 4.2."""
    monkeypatch.setattr(paths, "cache_dir", lambda: tmp_path / "fresh-clone-cache")
    monkeypatch.delenv("INFERLAB_ENGINE_MODEL", raising=False)
    spec = matrix()
    est = estimate(spec, "local", speed=engine_speed(spec, runs_dir=tmp_path, cpuinfo=AVX512_BF16))
    assert (est.conversion_s, est.startup_s) == (30.0, 128.0)
    assert est.seconds / 60 == pytest.approx(4.2, abs=0.05) and abs(est.seconds - 241) / 241 < 0.1
