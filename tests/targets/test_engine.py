"""The local engine's command line, without starting vLLM: the machine's dtype where the spec
leaves it to vLLM, the spec's own where it names one, the key only in the environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from inferlab import machine
from inferlab.specs import EngineSpec
from inferlab.targets import engine
from inferlab.targets.engine import LocalEngine, dtype_arg, with_machine_dtype

AVX2_ONLY = "model name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\nflags\t\t: sse2 avx avx2 fma\n"
ZEN4 = "model name\t: AMD EPYC 9654\nflags\t\t: avx2 avx512f avx512_bf16\n"


def test_dtype_arg_reads_both_spellings():
    assert dtype_arg(["--max-model-len", "2048"]) is None
    assert dtype_arg(["--dtype", "half"]) == "half" and dtype_arg(["--dtype=float32"]) == "float32"


def test_the_machine_dtype_fills_what_the_spec_leaves_to_vllm():
    assert with_machine_dtype(["--max-model-len", "2048"], AVX2_ONLY) == ["--max-model-len", "2048",
                                                                          "--dtype", "float32"]
    assert with_machine_dtype(["--dtype", "auto", "--enforce-eager"], ZEN4) == ["--enforce-eager",
                                                                                "--dtype", "bfloat16"]
    assert with_machine_dtype(["--dtype=auto"], AVX2_ONLY) == ["--dtype", "float32"]
    assert with_machine_dtype(["--dtype", "bfloat16"], AVX2_ONLY) == ["--dtype", "bfloat16"]  # the spec's choice


def test_local_engine_argv(monkeypatch, tmp_path):
    monkeypatch.setattr(machine, "engine_dtype", lambda cpuinfo=None: "float32")
    monkeypatch.setattr(engine, "prepare_model", lambda: tmp_path / "model")
    monkeypatch.setattr(engine, "engine_python", lambda: Path("/venv-engine/bin/python"))
    cpu = LocalEngine(EngineSpec(), "key-0123456789", tmp_path / "engine.log")
    cpu.prepare()
    cpu.stop()  # never started: lets its port lease go
    assert cpu.argv[:4] == ["/venv-engine/bin/python", "-m", "vllm.entrypoints.openai.api_server", "--model"]
    assert cpu.argv[-4:] == ["--max-model-len", "2048", "--dtype", "float32"] and cpu.engine_args == cpu.argv[-4:]
    assert "key-0123456789" not in " ".join(cpu.argv) and cpu.env["VLLM_API_KEY"] == "key-0123456789"
    assert cpu.env["VLLM_HTTP_TIMEOUT_KEEP_ALIVE"] == "75"  # beyond the VU idle times of a search's pools
    # the run records what the engine's environment adds, keep-alive included, and never the key
    assert cpu.engine_env["VLLM_HTTP_TIMEOUT_KEEP_ALIVE"] == "75" and cpu.engine_env["VLLM_NO_USAGE_STATS"] == "1"
    assert all(cpu.env[k] == v for k, v in cpu.engine_env.items()) and "VLLM_API_KEY" not in cpu.engine_env
    # another vLLM (a GPU build): its arguments as the spec says
    py = tmp_path / "gpu-python"
    py.write_text("")
    gpu = LocalEngine(EngineSpec(), "k", tmp_path / "gpu.log", python=str(py), model="org/m")
    gpu.prepare()
    gpu.stop()
    assert "--dtype" not in gpu.argv and gpu.argv[0] == str(py) and gpu.choice.device == "cuda"


def _python(tmp_path) -> str:
    py = tmp_path / "bin" / "python3"
    py.parent.mkdir(exist_ok=True)
    py.write_text("")
    return str(py)


def test_engine_choice_defaults_to_the_cpu_build(tmp_path):
    assert engine.engine_choice(environ={}) == engine.EngineChoice(None, None, "cpu")


def test_engine_choice_reads_the_environment_and_a_gpu_build_defaults_to_cuda(tmp_path):
    py = _python(tmp_path)
    c = engine.engine_choice(environ={"INFERLAB_ENGINE_PYTHON": py, "INFERLAB_ENGINE_MODEL": "/m"})
    assert (c.python, c.model, c.device, c.cpu, c.gpu_index) == (py, "/m", "cuda", False, None)
    c = engine.engine_choice(environ={"INFERLAB_ENGINE_PYTHON": py, "INFERLAB_ENGINE_DEVICE": "cuda:1"})
    assert c.gpu_index == "1"
    # arguments win over the environment
    assert engine.engine_choice(device="cpu", environ={"INFERLAB_ENGINE_PYTHON": py}).cpu


def test_a_relative_interpreter_is_kept_absolute_so_another_working_directory_still_finds_it(tmp_path, monkeypatch):
    """A bisect's `--build v0.32.0=.venv-engine/bin/python` passed the check and then failed at the
    build's first engine start (2026-12-05): the engine starts from another directory."""
    import os

    py = _python(tmp_path)
    os.symlink(py, tmp_path / "bin" / "python")  # a venv's bin/python is a link: it must stay one
    monkeypatch.chdir(tmp_path)
    c = engine.engine_choice(python="bin/python", environ={})
    assert c.python == str(tmp_path / "bin" / "python")
    monkeypatch.delenv("INFERLAB_ENGINE_PYTHON", raising=False)
    with engine.chosen_engine("bin/python", device="cpu") as chosen:
        monkeypatch.chdir(tmp_path.parent)
        assert os.environ["INFERLAB_ENGINE_PYTHON"] == chosen.python == str(tmp_path / "bin" / "python")
        assert engine.engine_choice().python == chosen.python
    assert "INFERLAB_ENGINE_PYTHON" not in os.environ


def test_engine_choice_rejects_what_cannot_run(tmp_path):
    import pytest

    with pytest.raises(engine.EngineError, match="CPU build"):
        engine.engine_choice(environ={"INFERLAB_ENGINE_DEVICE": "cuda"})
    with pytest.raises(engine.EngineError, match="cpu, cuda or cuda:N"):
        engine.engine_choice(python=_python(tmp_path), device="rocm")
    with pytest.raises(engine.EngineError, match="cpu, cuda or cuda:N"):
        engine.engine_choice(python=_python(tmp_path), device="cuda:x")
    with pytest.raises(engine.EngineError, match="no such interpreter"):
        engine.engine_choice(python=str(tmp_path / "missing"), environ={})


def test_a_cuda_engine_gets_no_cpu_defaults(monkeypatch, tmp_path):
    """No machine dtype, its GPU as CUDA_VISIBLE_DEVICES, no taskset pinning for the run."""
    from inferlab.targets import local

    monkeypatch.setattr(machine, "engine_dtype", lambda cpuinfo=None: "float32")
    monkeypatch.setenv("INFERLAB_ENGINE_PYTHON", _python(tmp_path))
    monkeypatch.setenv("INFERLAB_ENGINE_MODEL", str(tmp_path / "model"))
    monkeypatch.setenv("INFERLAB_ENGINE_DEVICE", "cuda:0")
    eng = LocalEngine(EngineSpec(args=["--enforce-eager"]), "k", tmp_path / "e.log")
    eng.prepare()
    eng.stop()
    assert eng.engine_args == ["--enforce-eager"] and eng.env["CUDA_VISIBLE_DEVICES"] == "0"
    assert eng.argv[eng.argv.index("--model") + 1] == str(tmp_path / "model")
    assert local.local_pinning() == (None, "not pinned: the engine runs on cuda:0")
    monkeypatch.setenv("INFERLAB_ENGINE_DEVICE", "cpu")
    assert local.local_pinning()[1] != "not pinned: the engine runs on cuda:0"


def test_engine_flags_export_the_environment(monkeypatch, tmp_path):
    from inferlab.cli.parser import build_parser

    for name in ("PYTHON", "MODEL", "DEVICE"):
        monkeypatch.delenv(f"INFERLAB_ENGINE_{name}", raising=False)
    py = _python(tmp_path)
    # monkeypatch restores os.environ after the test: the flags write it
    monkeypatch.setattr("os.environ", dict(__import__("os").environ))
    a = build_parser().parse_args(["sweep", "--engine-python", py, "--engine-model", "/m", "--engine-device", "cuda:0"])
    assert a.engine_python == py
    c = engine.engine_choice()
    assert (c.python, c.model, c.device) == (py, "/m", "cuda:0")


def test_a_resume_restores_the_recorded_engine_or_refuses_another(monkeypatch, tmp_path):
    """engine.restore_engine, the one rule of `ab --resume` and `bisect --resume`."""
    py = _python(tmp_path)
    for env in engine.ENGINE_ENV.values():  # set, then removed: monkeypatch undoes what the rule exports too
        monkeypatch.setenv(env, "x")
        monkeypatch.delenv(env)
    recorded = {"python": py, "model": "org/m", "device": "cuda:1"}
    engine.restore_engine(recorded, "comparison X")  # none given: the record's engine is exported
    assert engine.engine_choice() == engine.EngineChoice(python=py, model="org/m", device="cuda:1")
    engine.restore_engine(recorded, "comparison X")  # given and the same: accepted
    monkeypatch.setenv(engine.ENGINE_MODEL_ENV, "org/other")
    with pytest.raises(RuntimeError, match=r"comparison X ran on engine .*org/m.*would start .*org/other"):
        engine.restore_engine(recorded, "comparison X")
    # a record of the model alone (bisect): only the model is compared, None = the bundled one
    engine.restore_engine({"model": "org/other"}, "bisect Y")
    with pytest.raises(RuntimeError, match="bisect Y"):
        engine.restore_engine({"model": None}, "bisect Y")
    monkeypatch.delenv(engine.ENGINE_MODEL_ENV)
    engine.restore_engine({"model": None}, "bisect Y")
    assert engine.ENGINE_MODEL_ENV not in os.environ


def test_two_engines_started_at_once_each_get_a_port_of_their_own(tmp_path, monkeypatch):
    """Two engines started together (two runs on one machine, a replica pair) both prefer
    :data:`engine.DEFAULT_PORT` and bind it only after their imports, as vLLM does: played by
    the stand-in behind a wrapper that waits a second first. Each leases its own port, so both
    start, and each one's health is its own listener's; once stopped, the port is free to
    lease again. (Choosing the port when the engine was built, both got 8011: one failed, or
    passed on the other's /health.)"""
    import fcntl
    from concurrent.futures import ThreadPoolExecutor

    from inferlab.procs import PORT_LEASES, free_port, listens_on, stop_all

    from ..standin_python import standin_python

    monkeypatch.setattr(engine, "DEFAULT_PORT", free_port())  # free here, as 8011 may not be
    py = standin_python(tmp_path / "bin" / "python", before="sleep 1  # vLLM's imports, before it binds")
    engines = [LocalEngine(EngineSpec(), "key-0123456789", tmp_path / f"engine-{i}.log", python=str(py),
                           model="/models/standin", device="cpu") for i in range(2)]
    with pytest.raises(engine.EngineError, match="start"):
        engines[0].base_url  # noqa: B018 - chosen at start
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(lambda e: e.start(timeout_s=30), engines))
        assert engine.DEFAULT_PORT in {e.port for e in engines} and engines[0].port != engines[1].port
        for e in engines:
            assert listens_on(e.pid, e.port) and e.base_url.endswith(f":{e.port}")
            assert e.version() is not None
    finally:
        stop_all(engines)
    for e in engines:  # each lease went with its engine: its lock can be taken
        with open(PORT_LEASES / f"{e.port}.lock") as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
