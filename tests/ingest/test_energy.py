"""Energy readings as read: the NVML cell file (errors name file, line and field) and DCGM series
from a cluster Prometheus. No real DCGM answer can be recorded here: the query_range answer below
is shaped by dcgm-exporter's documented field names and units (DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION
in mJ, a counter; DCGM_FI_DEV_POWER_USAGE in W, a gauge) and its default labels (gpu, UUID,
modelName, Hostname), the shape every Prometheus range answer has."""

from __future__ import annotations

import gzip
import json
import re

import numpy as np
import pytest

from inferlab.ingest import IngestError
from inferlab.ingest.energy import DCGM_ENERGY, DCGM_POWER, dcgm_energy_samples, read_energy
from inferlab.ingest.series import read_samples
from inferlab.telemetry.prom_query import CLUSTER_QUERIES

GOOD = ("ts,gpu_index,gpu_name,energy_mj,power_mw\n"
        "2026-12-04T08:00:00+00:00,0,NVIDIA H200,1000000,250000\n"
        "2026-12-04T08:00:00.5+00:00,0,NVIDIA H200,1125000,\n"
        "2026-12-04T08:00:00+00:00,1,NVIDIA H200,,75000\n")


def test_nvml_file_in_joules_and_watts(tmp_path):
    p = tmp_path / "energy.csv"
    p.write_text(GOOD)
    df = read_energy(p)
    assert list(df.columns) == ["ts", "gpu", "energy_j", "power_w", "source"]
    assert df["energy_j"].tolist()[:2] == [1000.0, 1125.0] and np.isnan(df["energy_j"].iloc[2])
    assert df["power_w"].iloc[0] == 250.0 and np.isnan(df["power_w"].iloc[1])
    assert str(df["ts"].dt.tz) == "UTC" and df.attrs["ingest"]["lines_used"] == 4


@pytest.mark.parametrize(("line", "field"), [
    ("2026-12-04T08:00:01+00:00,0,NVIDIA H200,abc,1", "energy_mj a number"),
    ("2026-12-04T08:00:01+00:00,0,NVIDIA H200,-5,1", "energy_mj a finite number >= 0"),
    ("yesterday,0,NVIDIA H200,1,1", "ts an ISO 8601 time"),
    ("2026-12-04T08:00:01+00:00,gpu0,NVIDIA H200,1,1", "gpu_index a GPU index"),
    ("2026-12-04T08:00:01+00:00,0,1,1", "5 fields"),
])
def test_a_bad_row_names_file_line_and_field(tmp_path, line, field):
    p = tmp_path / "energy.csv"
    p.write_text(GOOD + line + "\n")
    with pytest.raises(IngestError, match=re.escape(f"{p}:5: expected {field}")):
        read_energy(p)


def test_a_wrong_header_is_refused(tmp_path):
    p = tmp_path / "energy.csv"
    p.write_text("ts,gpu,joules\n")
    with pytest.raises(IngestError, match=r":1: expected the header ts,gpu_index"):
        read_energy(p)


def _dcgm_answer() -> dict:
    labels = {"gpu": "0", "UUID": "GPU-0000", "modelName": "NVIDIA H200", "Hostname": "node-a",
              "DCGM_FI_DRIVER_VERSION": "580.159.04", "job": "dcgm-exporter", "instance": "10.0.0.7:9400"}
    t = 1_764_835_200  # 2025-12-04T08:00:00Z
    return {"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {"__name__": DCGM_ENERGY, **labels}, "values": [[t, "5000000"], [t + 15, "9500000"], [t + 30, "14000000"]]},
        {"metric": {"__name__": DCGM_POWER, **labels}, "values": [[t, "300.5"], [t + 15, "299.5"], [t + 30, "300"]]},
        {"metric": {"__name__": "DCGM_FI_DEV_GPU_UTIL", **labels}, "values": [[t, "97"]]},
    ]}}


def test_dcgm_series_through_the_cluster_query_and_reader(tmp_path):
    # the cluster window's DCGM query selects both fields (telemetry/prom_query.py saves its answer)
    selector = re.fullmatch(r'\{__name__=~"(.+)"\}', CLUSTER_QUERIES["dcgm"]).group(1)
    assert re.fullmatch(selector, DCGM_ENERGY) and re.fullmatch(selector, DCGM_POWER)
    # and the project's field list (platform/schemas, from dcgm-exporter's default counters) has them
    from inferlab.platform import promql

    fields = (promql.SCHEMAS / "dcgm-exporter-fields.txt").read_text()
    assert f"{DCGM_ENERGY} counter" in fields and f"{DCGM_POWER} gauge" in fields
    p = tmp_path / "dcgm-000.json.gz"
    p.write_bytes(gzip.compress(json.dumps(_dcgm_answer()).encode()))
    raw = read_samples(p, types={DCGM_ENERGY: "counter", DCGM_POWER: "gauge"})
    df = dcgm_energy_samples(raw)
    assert list(df.columns) == ["ts", "gpu", "energy_j", "power_w", "source"]
    assert df["gpu"].unique().tolist() == ["node-a/0"] and (df["source"] == "dcgm").all()
    assert df["energy_j"].tolist() == [5000.0, 9500.0, 14000.0]  # mJ -> J
    assert df["power_w"].tolist() == [300.5, 299.5, 300.0]
    assert dcgm_energy_samples(raw[raw["name"] == "DCGM_FI_DEV_GPU_UTIL"]).empty
