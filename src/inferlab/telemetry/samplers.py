"""Telemetry for the whole run: nvidia-smi logger, NVML sampler, host CPU/memory sampler.

- ``nvidia-smi --query-gpu=<the original project's query> --format=csv -l 1`` where nvidia-smi
  exists (``telemetry/nvidia-smi.csv``, read by ``read_nvidia_smi``).
- NVML via nvidia-ml-py (``telemetry/nvml.csv``: ts, gpu_index, metric, value, unit).
- psutil for the engine process tree, the k6 process and the whole system
  (``telemetry/host.csv``: ts, process, metric, value): without a GPU the client and the server
  share the CPU, so the CPU is the resource to watch.
Every sampler is a context manager; files are closed (and sealed by the run writer) at exit.
"""

from __future__ import annotations

import csv
import subprocess
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import psutil

from ..procs import interrupts_deferred, stop_process
from ..tools import find_tool, which_tool

NVIDIA_SMI_QUERY = "timestamp,utilization.gpu,utilization.memory,memory.used,memory.total,temperature.gpu,power.draw"


class NvidiaSmiLogger:
    def __init__(self, out: Path, interval_s: int = 1) -> None:
        self.out, self.interval_s, self.proc = out, interval_s, None

    @staticmethod
    def available() -> bool:
        return which_tool("nvidia-smi") is not None

    def __enter__(self) -> NvidiaSmiLogger:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.out, "x")  # noqa: SIM115 - closed in __exit__
        try:
            with interrupts_deferred():  # held by us before a Ctrl-C can unwind past the spawn
                self.proc = subprocess.Popen([find_tool("nvidia-smi"), f"--query-gpu={NVIDIA_SMI_QUERY}",
                                              "--format=csv", "-l", str(self.interval_s)],
                                             stdout=self._fh, stderr=subprocess.DEVNULL)
        except BaseException:  # a raising __enter__ gets no __exit__: stop it (and close the file) here
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        stop_process(self.proc)
        self._fh.close()


class _ThreadSampler:
    """Calls ``sample()`` every ``interval_s`` in a thread, writing long CSV rows."""

    header: list[str] = []

    def __init__(self, out: Path, interval_s: float = 1.0) -> None:
        self.out, self.interval_s = out, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def sample(self) -> list[list]:
        raise NotImplementedError

    def _loop(self) -> None:
        with open(self.out, "x", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(self.header)
            while True:
                for row in self.sample():
                    w.writerow(row)
                fh.flush()
                if self._stop.wait(self.interval_s):
                    break

    def __enter__(self):
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def load_nvml() -> ModuleType | None:
    """pynvml initialised once to see that it works, else None (no package, no driver)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        return pynvml
    except Exception:  # noqa: BLE001 - ImportError or any NVMLError: no GPU telemetry here
        return None


class NvmlSampler(_ThreadSampler):
    header = ["ts", "gpu_index", "metric", "value", "unit"]

    @staticmethod
    def available() -> bool:
        return load_nvml() is not None

    def __enter__(self):
        import pynvml

        pynvml.nvmlInit()
        try:
            self._nvml = pynvml
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
            return super().__enter__()
        except BaseException:
            pynvml.nvmlShutdown()  # __exit__ never runs for a failed enter
            raise

    def __exit__(self, *exc) -> None:
        super().__exit__(*exc)
        self._nvml.nvmlShutdown()

    def sample(self) -> list[list]:
        n, ts, rows = self._nvml, _now(), []
        for i, h in enumerate(self._handles):
            util = n.nvmlDeviceGetUtilizationRates(h)
            mem = n.nvmlDeviceGetMemoryInfo(h)
            rows += [
                [ts, i, "utilization_gpu_pct", util.gpu, "%"],
                [ts, i, "utilization_memory_pct", util.memory, "%"],
                [ts, i, "memory_used_mib", mem.used / 2**20, "MiB"],
                [ts, i, "memory_total_mib", mem.total / 2**20, "MiB"],
                [ts, i, "power_draw_w", n.nvmlDeviceGetPowerUsage(h) / 1000.0, "W"],
                [ts, i, "temperature_gpu_c", n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU), "C"],
            ]
        return rows


class HostSampler(_ThreadSampler):
    """CPU % (of one core) and RSS of named process trees, plus system CPU and memory."""

    header = ["ts", "process", "metric", "value"]

    def __init__(self, out: Path, pids: Callable[[], dict[str, int | list[int] | None]], interval_s: float = 1.0) -> None:
        super().__init__(out, interval_s)
        self._pids = pids
        self._procs: dict[int, psutil.Process] = {}
        psutil.cpu_percent(None)

    def _tree_usage(self, pid: int) -> tuple[float, float]:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return float("nan"), float("nan")
        cpu = rss = 0.0
        for p in procs:
            cached = self._procs.setdefault(p.pid, p)  # cpu_percent needs the same object twice
            try:
                cpu += cached.cpu_percent(None)
                rss += cached.memory_info().rss
            except psutil.Error:
                continue
        return cpu, rss / 2**20

    def sample(self) -> list[list]:
        ts = _now()
        rows = [[ts, "system", "cpu_pct", psutil.cpu_percent(None) * (psutil.cpu_count() or 1)],
                [ts, "system", "memory_used_mib", (psutil.virtual_memory().total - psutil.virtual_memory().available) / 2**20]]
        for name, pids in self._pids().items():
            pids = [pids] if isinstance(pids, int) else [p for p in (pids or []) if p]
            if pids:  # several processes (e.g. k6 segments) are summed under one name
                usage = [self._tree_usage(pid) for pid in pids]
                rows += [[ts, name, "cpu_pct", sum(u[0] for u in usage)], [ts, name, "rss_mib", sum(u[1] for u in usage)]]
        return rows
