"""GPU energy over each cell's window, from NVML: the raw cell file ``cells/<cell_id>/energy.csv``.

While a cell's load runs, a thread reads for every GPU, every ``interval_s`` (0.5 s), NVML's
total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``: millijoules since the driver
loaded, Volta and later) and the power draw (``nvmlDeviceGetPowerUsage``: milliwatts), one
reading at the window's start and one at its end included. The file is raw: the counter as
read, never differenced here, so a reader can re-cut any window inside the cell
(``ingest.energy.read_energy`` reads it; ``analysis.energy`` turns it into joules per token).

Columns: ``ts`` (UTC, ISO 8601), ``gpu_index``, ``gpu_name``, ``energy_mj`` (empty where the GPU
has no energy counter: the analysis then integrates ``power_mw`` over time), ``power_mw``
(empty where NVML refuses it). Units are NVML's own, named in the header, so the file says
what it holds without this docstring.

Decisions: a thread and not ``nvidia-smi`` (nvidia-smi's CSV has no energy counter and stamps
local time at 1 s); 0.5 s because the power reading is NVML's ~1 s running average and the
counter makes the window's ends exact anyway. A machine without NVML (pynvml missing, no
driver) records no file and a manifest note, never a failed cell. ``nvml``: the module to use
(default ``pynvml`` from nvidia-ml-py), so tests inject a fake one; the real figures come
from a GPU host only.
"""

from __future__ import annotations

import contextlib
import csv
import io
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from types import ModuleType

from ..formats.energy import HEADER
from ..runs.layout import CELL_FILES
from ..runs.store import RunWriter
from .samplers import load_nvml

INTERVAL_S = 0.5


class EnergySampler:
    """``with EnergySampler(nvml) as s: ...`` samples every GPU until exit; ``s.csv()`` is the
    file's text. NVML is initialised on enter and shut down on exit (NVML counts its users)."""

    def __init__(self, nvml: ModuleType, interval_s: float = INTERVAL_S) -> None:
        self.nvml, self.interval_s = nvml, interval_s
        self.rows: list[list] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="energy-sampler")
        self._no_counter: set[int] = set()  # GPUs whose counter NVML refused once: not asked again

    def __enter__(self) -> EnergySampler:
        n = self.nvml
        n.nvmlInit()
        try:
            self._gpus = []
            for i in range(n.nvmlDeviceGetCount()):
                h = n.nvmlDeviceGetHandleByIndex(i)
                name = n.nvmlDeviceGetName(h)
                self._gpus.append((i, h, name.decode() if isinstance(name, bytes) else str(name)))
            self.sample()  # the window's first reading, before the load starts
            self._thread.start()
        except BaseException:
            n.nvmlShutdown()  # __exit__ never runs for a failed enter: give NVML's user count back here
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        try:
            self.sample()  # the window's last reading, after the load ended
        finally:
            self.nvml.nvmlShutdown()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def _read(self, fn, h, gpu: int | None = None):
        """One NVML reading, or None where this GPU does not support it (NVMLError)."""
        if gpu is not None and gpu in self._no_counter:
            return None
        try:
            return fn(h)
        except self.nvml.NVMLError:
            if gpu is not None:
                self._no_counter.add(gpu)
            return None

    def sample(self) -> None:
        ts = datetime.now(UTC).isoformat()
        n = self.nvml
        for i, h, name in self._gpus:
            energy = self._read(n.nvmlDeviceGetTotalEnergyConsumption, h, gpu=i)
            power = self._read(n.nvmlDeviceGetPowerUsage, h)
            self.rows.append([ts, i, name, "" if energy is None else int(energy), "" if power is None else int(power)])

    def csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(HEADER)
        w.writerows(self.rows)
        return buf.getvalue()


class CellEnergy:
    """Per run: :meth:`window` around each cell's load writes ``cells/<cell_id>/energy.csv``
    (write-once, sealed and hashed like every cell file) where NVML works; a no-op elsewhere,
    with one manifest note where the host has GPUs but NVML does not answer (a host without
    GPUs has the run's "no GPU telemetry" note already)."""

    def __init__(self, w: RunWriter, nvml: ModuleType | None = None, interval_s: float = INTERVAL_S,
                 probe: bool = True) -> None:
        self.w, self.interval_s = w, interval_s
        self.nvml = nvml if nvml is not None else (load_nvml() if probe else None)

    @contextlib.contextmanager
    def window(self, cell_folder: str) -> Iterator[None]:
        """Sample while the body runs; the file is written on every exit path (a cut cell keeps
        the energy of the part that ran)."""
        if self.nvml is None:
            note = "no GPU energy per cell: NVML not available on this host (pynvml or the NVIDIA driver missing)"
            if self.w.manifest.host.gpus:
                self.w.note(note)
            yield
            return
        sampler = EnergySampler(self.nvml, self.interval_s)
        try:
            sampler.__enter__()
        except self.nvml.NVMLError as exc:
            self.w.manifest.notes.append(f"{cell_folder}: GPU energy not sampled: NVML: {exc}"[:300])
            yield
            return
        try:
            yield
        finally:
            sampler.__exit__(None, None, None)
            self.w.write_text(f"{cell_folder}/{CELL_FILES['energy']}", sampler.csv())
