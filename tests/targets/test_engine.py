"""The local engine's command line, without starting vLLM: the machine's dtype where the spec
leaves it to vLLM, the spec's own where it names one, the key only in the environment."""

from __future__ import annotations

from pathlib import Path

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
    cpu = LocalEngine(EngineSpec(), "key-0123456789", tmp_path / "engine.log", port=18011)
    cpu.prepare()
    assert cpu.argv[:4] == ["/venv-engine/bin/python", "-m", "vllm.entrypoints.openai.api_server", "--model"]
    assert cpu.argv[-4:] == ["--max-model-len", "2048", "--dtype", "float32"] and cpu.engine_args == cpu.argv[-4:]
    assert "key-0123456789" not in " ".join(cpu.argv) and cpu.env["VLLM_API_KEY"] == "key-0123456789"
    # another vLLM (a GPU build): its arguments as the spec says
    gpu = LocalEngine(EngineSpec(), "k", tmp_path / "gpu.log", port=18012, python="/gpu/bin/python", model="org/m")
    gpu.prepare()
    assert "--dtype" not in gpu.argv and gpu.argv[0] == "/gpu/bin/python"
