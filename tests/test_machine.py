"""machine.py on sample /proc/cpuinfo texts (no dependence on the CPU running the tests)."""

from __future__ import annotations

from inferlab import machine

AVX2_ONLY = """\
processor	: 0
vendor_id	: GenuineIntel
model name	: Intel(R) Xeon(R) CPU @ 2.20GHz
flags		: fpu vme sse sse2 avx f16c avx2 fma bmi2

processor	: 1
model name	: Intel(R) Xeon(R) CPU @ 2.20GHz
flags		: fpu vme sse sse2 avx f16c avx2 fma bmi2
"""

ZEN4 = """\
processor	: 0
model name	: AMD EPYC 9654 96-Core Processor
flags		: fpu sse2 avx avx2 avx512f avx512dq avx512_bf16 avx512_vnni
"""

SAPPHIRE_RAPIDS = "model name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: avx2 avx512f amx_bf16 amx_tile\n"
SKYLAKE_X = "model name\t: Intel(R) Xeon(R) Gold 6148\nflags\t\t: avx2 avx512f avx512bw\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes bf16\nCPU implementer\t: 0x41\n"


def test_model_and_flags_from_the_first_processor():
    assert machine.cpu_model(AVX2_ONLY) == "Intel(R) Xeon(R) CPU @ 2.20GHz"
    assert {"avx2", "fma"} <= machine.cpu_flags(AVX2_ONLY)
    assert "avx512f" not in machine.cpu_flags(AVX2_ONLY)


def test_relevant_flags_keep_the_documented_order():
    assert machine.relevant_cpu_flags(AVX2_ONLY) == ["avx2"]
    assert machine.relevant_cpu_flags(ZEN4) == ["avx2", "avx512f", "avx512_bf16"]
    assert machine.relevant_cpu_flags(SAPPHIRE_RAPIDS) == ["avx2", "avx512f", "amx_bf16"]


def test_engine_dtype_is_bf16_only_with_native_bf16_arithmetic():
    assert machine.engine_dtype(AVX2_ONLY) == "float32"
    assert machine.engine_dtype(SKYLAKE_X) == "float32"  # AVX-512 without BF16
    assert machine.engine_dtype(ZEN4) == "bfloat16"
    assert machine.engine_dtype(SAPPHIRE_RAPIDS) == "bfloat16"


def test_unreadable_or_foreign_cpuinfo_degrades_quietly():
    assert machine.cpu_flags("") == frozenset()
    assert machine.engine_dtype("") == "float32"
    assert machine.cpu_model("") != ""  # platform's answer, the architecture at worst
    assert "asimd" in machine.cpu_flags(ARM)  # ARM names its flags "Features"
    assert machine.engine_dtype(ARM) == "float32"  # x86 bf16 flags only; ARM bf16 untested here


def test_this_machine_is_readable():
    assert machine.engine_dtype() in ("bfloat16", "float32")
    assert isinstance(machine.cpu_model(), str)
