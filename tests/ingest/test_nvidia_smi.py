"""nvidia-smi logs with many fields, text ones included: the real 2x H100 captures (driver 580,
tests/fixtures/nvidia-smi-580-h100x2, see the README there) and synthetic variants of them."""

import re

import numpy as np
import pandas as pd
import pytest

from inferlab.ingest import (
    IngestError,
    TruncatedLineWarning,
    read_nvidia_smi,
    read_nvidia_smi_gpus,
    read_nvidia_smi_log,
)

CAPTURES = ["units-l1.csv", "nounits-lms500.csv", "gpu0-nounits-l1.csv"]
NUMERIC = {"utilization_gpu_pct", "utilization_memory_pct", "memory_total_mib", "memory_used_mib",
           "memory_free_mib", "temperature_gpu_c", "power_draw_w", "power_limit_w", "clocks_sm_mhz",
           "clocks_mem_mhz", "fan_speed_pct", "clocks_event_reasons_active"}
TEXT = ["name", "uuid", "pci_bus_id", "driver_version", "pstate", "compute_mode", "persistence_mode"]
BUSY = (pd.Timestamp("2026-11-27 06:47:36", tz="UTC"), pd.Timestamp("2026-11-27 06:47:40.5", tz="UTC"))
IDLE_UNTIL = pd.Timestamp("2026-11-27 06:47:35", tz="UTC")


@pytest.fixture
def h100x2(fixtures):
    return fixtures / "nvidia-smi-580-h100x2"


def versions(h100x2) -> dict[int, tuple[str, str]]:
    """GPU index -> (name, uuid) as `nvidia-smi -L` printed them during the capture."""
    text = (h100x2 / "versions.txt").read_text()
    return {int(i): (n, u) for i, n, u in re.findall(r"GPU (\d+): (.+?) \(UUID: (GPU-[0-9a-f-]+)\)", text)}


def rewrite(src, dst, drop=(), fn=None):
    """Copy a capture, leaving out the named header fields and mapping each data line via fn."""
    lines = src.read_text().splitlines()
    header = [c.strip() for c in lines[0].split(",")]
    keep = [i for i, c in enumerate(header) if c.split(" [")[0] not in drop]
    out = []
    for n, line in enumerate(lines):
        parts = line.split(", ")
        if n and fn:
            parts = fn(header, parts)
        out.append(", ".join(parts[i] for i in keep))
    dst.write_text("\n".join(out) + "\n")
    return dst


@pytest.mark.parametrize("name", CAPTURES)
def test_captures_with_21_fields_read(h100x2, name):
    header = (h100x2 / name).read_text().splitlines()[0].split(", ")
    assert len(header) == 21 and "name" in header and "clocks_event_reasons.active" in header
    log = read_nvidia_smi_log(h100x2 / name)
    gpu, gpus = log.gpu, log.gpus
    assert set(gpu.metric) == NUMERIC  # 21 = timestamp + index + 7 text + 12 numeric
    assert list(gpu.columns) == ["ts", "gpu_index", "metric", "value", "unit"]  # the tidy contract
    assert gpu["value"].dtype == float and str(gpu.ts.dt.tz) == "UTC"
    assert list(gpus.columns) == ["gpu_index", "samples", "first_ts", "last_ts", *TEXT]
    stats = gpu.attrs["ingest"]
    rows = len((h100x2 / name).read_text().splitlines()) - 1
    assert stats["lines_read"] == stats["lines_used"] == rows and stats["lines_skipped"] == 0
    assert gpus.attrs["ingest"] == stats
    assert len(gpu) == rows * len(NUMERIC) and gpus["samples"].sum() == rows


@pytest.mark.parametrize("name", CAPTURES)
def test_attributes_are_exact(h100x2, name):
    gpus = read_nvidia_smi_gpus(h100x2 / name).set_index("gpu_index")
    want = versions(h100x2)
    assert list(gpus.index) == ([0] if name.startswith("gpu0") else [0, 1])
    for i, row in gpus.iterrows():
        assert (row["name"], row["uuid"]) == want[i]
        assert row["pci_bus_id"] == f"00000000:00:0{6 + i}.0"
        assert row["driver_version"] == "580.159.04"
        assert (row["pstate"], row["compute_mode"], row["persistence_mode"]) == ("P0", "Default", "Enabled")
    assert gpus.loc[0, "name"] == "NVIDIA H100 80GB HBM3"  # today's bug: split at its space, rejected


@pytest.mark.parametrize("name", ["units-l1.csv", "nounits-lms500.csv"])
def test_busy_window_gpu0_full_gpu1_idle(h100x2, name):
    # the capture ran a bf16 matmul loop on GPU 0 only from ~06:47:35 for ~9 s
    df = read_nvidia_smi(h100x2 / name)
    util = df[df.metric == "utilization_gpu_pct"]
    busy = util[(util.ts >= BUSY[0]) & (util.ts < BUSY[1])]
    assert busy[busy.gpu_index == 0]["value"].mean() == 100
    assert util[util.gpu_index == 1]["value"].max() == 0
    assert util[(util.gpu_index == 0) & (util.ts < IDLE_UNTIL)]["value"].max() == 0
    power = df[df.metric == "power_draw_w"]
    assert power[(power.gpu_index == 0) & (power.ts >= BUSY[0]) & (power.ts < BUSY[1])]["value"].min() > 600
    assert power[power.gpu_index == 1]["value"].between(70, 75).all()
    assert (df[df.metric == "memory_total_mib"]["value"] == 81559).all()
    assert df[df.metric == "fan_speed_pct"]["value"].isna().all()  # [N/A]: rows kept as NaN
    # the clock-event bitmask: 0x1 (GPU idle) on the idle GPU, 0x4 (SW power cap) under load
    mask = df[df.metric == "clocks_event_reasons_active"]
    assert (mask.unit == "bitmask").all()
    assert set(mask[mask.gpu_index == 1]["value"]) == {1.0}
    assert set(mask[mask.gpu_index == 0]["value"]) == {0.0, 1.0, 4.0}


def test_l_and_lms_timestamps(h100x2):
    # -l 1: one sample a second; -lms 500: two; each GPU row has its own stamp, ms apart
    for name, period in (("units-l1.csv", 1.0), ("nounits-lms500.csv", 0.5)):
        gpus = read_nvidia_smi_gpus(h100x2 / name)
        df = read_nvidia_smi(h100x2 / name)
        for i in (0, 1):
            ts = df[(df.gpu_index == i) & (df.metric == "power_draw_w")]["ts"]
            assert ts.diff().dt.total_seconds().dropna().between(period - 0.05, period + 0.05).all()
        first = gpus.set_index("gpu_index")["first_ts"]
        assert 0 < (first[1] - first[0]).total_seconds() < 0.05


def test_unit_styles_give_the_same_numbers(h100x2, tmp_path):
    # units-l1.csv and gpu0-nounits-l1.csv were recorded at once by two nvidia-smi processes
    a = read_nvidia_smi(h100x2 / "units-l1.csv")
    b = read_nvidia_smi(h100x2 / "gpu0-nounits-l1.csv")
    a = a[a.gpu_index == 0].reset_index(drop=True)
    assert list(a.metric) == list(b.metric) and list(a.unit) == list(b.unit)
    assert (a.ts - b.ts).abs().max() < pd.Timedelta("50ms")
    exact = ~a.metric.isin(["power_draw_w", "memory_used_mib", "memory_free_mib"])
    np.testing.assert_array_equal(a["value"][exact], b["value"][exact])
    power = a.metric == "power_draw_w"
    np.testing.assert_allclose(a["value"][power], b["value"][power], atol=0.1)
    # and exactly: the units capture with its units stripped is the same table
    strip = re.compile(r" (%|MiB|W|MHz)$")
    nounits = rewrite(h100x2 / "units-l1.csv", tmp_path / "nounits.csv",
                      fn=lambda h, parts: [strip.sub("", p) for p in parts])
    assert " W," not in nounits.read_text()
    pd.testing.assert_frame_equal(read_nvidia_smi(nounits), read_nvidia_smi(h100x2 / "units-l1.csv"))


@pytest.mark.parametrize("name", CAPTURES)
@pytest.mark.parametrize("drop", [("index",), ("index", "uuid"), ("index", "uuid", "pci.bus_id")])
def test_gpu_identity_without_index(h100x2, tmp_path, name, drop):
    # without index: uuid, then pci.bus_id, then the stamps (rows of one sample are ms apart)
    full = read_nvidia_smi(h100x2 / name)
    df = read_nvidia_smi(rewrite(h100x2 / name, tmp_path / name, drop=drop))
    np.testing.assert_array_equal(df.gpu_index, full.gpu_index)
    notes = df.attrs["ingest"]["notes"]
    inferred = "pci.bus_id" in drop and not name.startswith("gpu0")
    assert notes == ([f"{tmp_path / name}: no index/uuid/pci.bus_id queried; 2 GPUs per sample inferred "
                      "from the timestamps (query index to make it explicit)"] if inferred else [])


def test_text_and_odd_values_never_error(tmp_path):
    p = tmp_path / "smi.csv"
    p.write_text(
        "timestamp, name, serial, vbios_version, pci.device_id, mig.mode.current, ecc.mode.current, "
        "clocks_event_reasons.sw_power_cap, clocks_throttle_reasons.active, display_mode, "
        "power.draw [W], pcie.link.gen.current, some.new_text_field, some.new_number, temperature.gpu\n"
        "2026/11/27 06:47:30.381, NVIDIA H100 80GB HBM3, 1650923045781, 96.00.89.00.01, 0x233010DE, "
        "[N/A], Enabled, Not Active, 0x0000000000000001, Disabled, 71.74 W, 5, hello world, 7, 33\n"
        "2026/11/27 06:47:31.381, NVIDIA H100 80GB HBM3, 1650923045781, 96.00.89.00.01, 0x233010DE, "
        "[N/A], Enabled, Active, 0x0000000000000004, Disabled, [Not Supported], [Unknown Error], "
        "[Insufficient Permissions], 8, 34\n")
    log = read_nvidia_smi_log(p)
    gpus = log.gpus.iloc[0]
    assert gpus["name"] == "NVIDIA H100 80GB HBM3" and gpus["serial"] == "1650923045781"
    assert gpus["pci_device_id"] == "0x233010DE" and gpus["vbios_version"] == "96.00.89.00.01"
    assert pd.isna(gpus["mig_mode_current"]) and gpus["ecc_mode_current"] == "Enabled"
    assert gpus["clocks_event_reasons_sw_power_cap"] == "Not Active|Active"  # changed: both, in order
    assert gpus["some_new_text_field"] == "hello world"
    wide = log.gpu.pivot(index="ts", columns="metric", values="value")
    assert list(wide["clocks_event_reasons_active"]) == [1, 4]  # the old field name, same metric
    assert list(wide["some_new_number"]) == [7, 8] and list(wide["pcie_link_gen_current"][:1]) == [5]
    assert np.isnan(wide["power_draw_w"].iloc[1]) and np.isnan(wide["pcie_link_gen_current"].iloc[1])
    assert list(wide["temperature_gpu_c"]) == [33, 34]


@pytest.mark.parametrize(("column", "value", "expected"), [
    ("utilization.gpu [%]", "busy %", "a number or [N/A] for utilization.gpu"),
    ("power.draw [W]", "Enabled", "a number or [N/A] for power.draw"),
    ("temperature.gpu", "hot", "a number or [N/A] for temperature.gpu"),
    ("clocks_event_reasons.active", "0xZZ",
     "a hex bitmask like 0x0000000000000004 or [N/A] for clocks_event_reasons.active"),
    ("index", "first", "a GPU index (0, 1, ...) for index"),
    ("timestamp", "2026/11/27 6:47", "a timestamp like"),
])
def test_bad_values_still_error_with_file_line_and_field(h100x2, tmp_path, column, value, expected):
    def spoil(header, parts, state={"n": 0}):  # noqa: B006 - counts rows across calls
        state["n"] += 1
        if state["n"] == 4:  # line 5 of the file
            parts[header.index(column)] = value
        return parts

    p = rewrite(h100x2 / "units-l1.csv", tmp_path / "bad.csv", fn=spoil)
    with pytest.raises(IngestError) as e:
        read_nvidia_smi(p)
    assert str(e.value).startswith(f"{p}:5: expected {expected}")
    assert repr(value)[1:-1] in str(e.value)


def test_ragged_row_truncated_tail_and_blank_line(h100x2, tmp_path):
    lines = (h100x2 / "units-l1.csv").read_text().splitlines()
    p = tmp_path / "r.csv"
    p.write_text("\n".join(lines[:6] + [lines[6].rsplit(", ", 3)[0]] + lines[7:]) + "\n")
    with pytest.raises(IngestError, match=rf"{p}:7: expected 21 comma-separated fields"):
        read_nvidia_smi(p)
    p.write_text("\n".join(lines[:6] + [""] + lines[6:]) + "\n" + lines[-1][:60])
    with pytest.warns(TruncatedLineWarning):
        log = read_nvidia_smi_log(p)
    stats = log.gpu.attrs["ingest"]
    assert stats["lines_read"] == len(lines) + 1 and stats["lines_used"] == len(lines) - 1
    assert stats["lines_skipped"] == 2
    assert stats["notes"] == [f"{p}:{len(lines) + 2}: truncated final line skipped", f"{p}:7: blank line skipped"]
    assert list(log.gpus["samples"]) == [10, 10]


def test_seed_format_without_index_is_unchanged(fixtures):
    # the original project's 7-field query (one GPU, no index, no text): no gpus attributes
    log = read_nvidia_smi_log(fixtures / "nvidia-smi-580" / "h200-matmul.csv")
    assert list(log.gpus.columns) == ["gpu_index", "samples", "first_ts", "last_ts"]
    assert (log.gpu.gpu_index == 0).all() and log.gpu.attrs["ingest"]["notes"] == []
