"""The per-cell NVML energy sampler against a fake NVML module (no GPU here: the real figures
come from the GPU host, where `python3 -m inferlab sweep` records the same file from pynvml).
The fake's counter rises at a known wattage, so what the file says can be checked exactly."""

from __future__ import annotations

import time

import pytest

from inferlab.ingest.energy import read_energy
from inferlab.runs.manifest import CellRecord, GpuInfo
from inferlab.runs.reader import Run
from inferlab.runs.store import RunWriter
from inferlab.telemetry.energy import HEADER, CellEnergy, EnergySampler

from ..runs.test_store import manifest


class FakeNvml:
    """pynvml's calls the sampler makes. GPU 0: a counter at 300 W; GPU 1: no counter (NVML
    refuses it, as on pre-Volta boards), power 75 W."""

    class NVMLError(Exception):
        pass

    def __init__(self, fail_init: bool = False) -> None:
        self.t0, self.users, self.counter_calls, self.fail_init = time.monotonic(), 0, {0: 0, 1: 0}, fail_init

    def nvmlInit(self):
        if self.fail_init:
            raise self.NVMLError("Driver Not Loaded")
        self.users += 1

    def nvmlShutdown(self):
        self.users -= 1

    def nvmlDeviceGetCount(self):
        return 2

    def nvmlDeviceGetHandleByIndex(self, i):
        return ("handle", i)

    def nvmlDeviceGetName(self, h):
        return b"NVIDIA H200"

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        self.counter_calls[h[1]] += 1
        if h[1] == 1:
            raise self.NVMLError("Not Supported")
        return int(7_000_000 + 300_000 * (time.monotonic() - self.t0))  # mJ: 300 W since t0

    def nvmlDeviceGetPowerUsage(self, h):
        return 300_000 if h[1] == 0 else 75_000  # mW


def test_sampler_reads_both_gpus_first_and_last_included_and_shuts_nvml_down():
    nvml = FakeNvml()
    with EnergySampler(nvml, interval_s=0.05) as s:
        time.sleep(0.3)
    assert nvml.users == 0
    rows = s.rows
    assert {r[1] for r in rows} == {0, 1} and all(r[2] == "NVIDIA H200" for r in rows)
    gpu0 = [r for r in rows if r[1] == 0]
    assert len(gpu0) >= 4  # first, a few in the loop, last
    assert all(b[3] >= a[3] for a, b in zip(gpu0, gpu0[1:]))  # the counter as read, never differenced
    # the counter over the sampled span matches 300 W
    from datetime import datetime

    span = (datetime.fromisoformat(gpu0[-1][0]) - datetime.fromisoformat(gpu0[0][0])).total_seconds()
    assert (gpu0[-1][3] - gpu0[0][3]) / 1000 == pytest.approx(300 * span, rel=0.1, abs=3)
    gpu1 = [r for r in rows if r[1] == 1]
    assert all(r[3] == "" and r[4] == 75_000 for r in gpu1)
    assert nvml.counter_calls[1] == 1  # refused once: not asked again
    assert s.csv().splitlines()[0] == ",".join(HEADER)


def test_cell_window_writes_a_sealed_recorded_cell_file_the_reader_reads(tmp_path):
    m = manifest()
    m.cells = [CellRecord(cell_id="short-c4", payload="short", vus=4, executor="shared-iterations", iterations=8)]
    w = RunWriter.create(tmp_path / m.run_id, m)
    energy = CellEnergy(w, nvml=FakeNvml(), interval_s=0.05)
    (w.dir / "cells" / "short-c4").mkdir(parents=True)
    with energy.window("cells/short-c4"):
        time.sleep(0.2)
    w.checkpoint()
    assert "cells/short-c4/energy.csv" in {f.path for f in w.manifest.files}  # hashed in run.json
    df = Run(w.dir).energy
    assert list(df.columns[:2]) == ["run_id", "cell_id"] and set(df["cell_id"]) == {"short-c4"}
    assert set(df["gpu"]) == {"0", "1"} and set(df["source"]) == {"nvml"}
    assert df.loc[df["gpu"] == "1", "energy_j"].isna().all() and (df.loc[df["gpu"] == "1", "power_w"] == 75).all()
    assert df.loc[df["gpu"] == "0", "energy_j"].min() >= 7000  # mJ -> J


def test_cell_window_is_written_on_an_exception_too(tmp_path):
    w = RunWriter.create(tmp_path / "r", manifest())
    with pytest.raises(KeyboardInterrupt), CellEnergy(w, nvml=FakeNvml(), interval_s=0.05).window("cells/x"):
        raise KeyboardInterrupt
    assert len(read_energy(w.dir / "cells/x/energy.csv")) >= 4


def test_no_nvml_no_file_and_a_note_only_on_a_gpu_host(tmp_path):
    w = RunWriter.create(tmp_path / "r", manifest())
    with CellEnergy(w, nvml=None, probe=False).window("cells/x"):
        pass
    assert not (w.dir / "cells").exists() and w.manifest.notes == []  # no GPU: the run's own note says so
    w.manifest.host.gpus = [GpuInfo(index=0, name="NVIDIA H200")]
    with CellEnergy(w, nvml=None, probe=False).window("cells/x"):
        pass
    assert len(w.manifest.notes) == 1 and "NVML not available" in w.manifest.notes[0]


def test_an_nvml_that_fails_to_start_leaves_a_note_not_a_failed_cell(tmp_path):
    w = RunWriter.create(tmp_path / "r", manifest())
    with CellEnergy(w, nvml=FakeNvml(fail_init=True)).window("cells/x"):
        pass
    assert "Driver Not Loaded" in w.manifest.notes[0] and not (w.dir / "cells").exists()


def test_a_sampler_that_fails_after_nvml_init_shuts_nvml_down(tmp_path):
    class NoHandles(FakeNvml):
        def nvmlDeviceGetHandleByIndex(self, i):
            raise self.NVMLError("GPU is lost")

    nvml = NoHandles()
    with pytest.raises(FakeNvml.NVMLError, match="GPU is lost"), EnergySampler(nvml):
        pass
    assert nvml.users == 0
    w = RunWriter.create(tmp_path / "r", manifest())
    with CellEnergy(w, nvml=nvml).window("cells/x"):  # the cell's note path: NVML given back too
        pass
    assert nvml.users == 0 and "GPU is lost" in w.manifest.notes[0]


@pytest.mark.gpu
@pytest.mark.skipif(__import__("inferlab.telemetry.energy", fromlist=["load_nvml"]).load_nvml() is None,
                    reason="no NVIDIA GPU with NVML here (run on the GPU device: pytest -m gpu)")
def test_real_nvml_counter_agrees_with_integrated_power_under_load():
    """On a GPU host: over a matmul load, the energy counter's increase and the integrated power
    readings describe the same joules (power is NVML's ~1 s average, so within 15 %)."""
    import numpy as np
    import pandas as pd

    from inferlab.analysis.energy import COUNTER, POWER, gpu_window_energy
    from inferlab.telemetry.energy import load_nvml

    from .test_gpu_telemetry import _busy_gpu

    with EnergySampler(load_nvml(), interval_s=0.25) as s:
        _busy_gpu(8)
    df = pd.read_csv(__import__("io").StringIO(s.csv()))
    g = df[df["gpu_index"] == 0]
    ts = pd.to_datetime(g["ts"], utc=True, format="ISO8601")
    samples = pd.DataFrame({"ts": ts, "gpu": "0", "energy_j": g["energy_mj"] / 1000, "power_w": g["power_mw"] / 1000})
    t0, t1 = ts.iloc[2], ts.iloc[-3]
    counter = gpu_window_energy(samples, t0, t1)
    power = gpu_window_energy(samples.assign(energy_j=np.nan), t0, t1)
    assert counter["method"] == COUNTER and power["method"] == POWER
    mean_w = counter["energy_j"] / (t1 - t0).total_seconds()
    print(f"counter {counter['energy_j']:.0f} J, integrated power {power['energy_j']:.0f} J, mean {mean_w:.0f} W")
    assert mean_w > 100 and abs(counter["energy_j"] / power["energy_j"] - 1) < 0.15
