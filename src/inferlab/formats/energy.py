"""A cell's GPU energy file (``cells/<cell_id>/energy.csv``): what ``telemetry.energy``
(write side) writes and ``ingest.energy`` (read side) reads.

One CSV row per GPU per reading, under :data:`HEADER`: ``ts`` (UTC, ISO 8601), ``gpu_index``,
``gpu_name``, ``energy_mj`` (NVML's total-energy counter as read, millijoules; empty where the
GPU has none), ``power_mw`` (NVML's power draw, milliwatts; empty where NVML refuses it).
"""

from __future__ import annotations

HEADER = ["ts", "gpu_index", "gpu_name", "energy_mj", "power_mw"]
