"""``load_run(run_id_or_path) -> Run``: the only way analysis and reports read raw runs.

Every table is tidy, read lazily on first access, and carries ``run_id`` and ``cell_id``.
Times are tz-aware UTC; durations are ``_ms``. ``Run.data_quality`` lists, per file read, the
lines read, used and skipped, so reports can show that nothing was silently dropped.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import pandas as pd

from .. import paths
from ..ingest import read_k6, read_k6_points, read_k6_summary, read_nvidia_smi, read_probe, read_prometheus_text
from .layout import CELL_FILES, IDLE_PROBE, K6_SEGMENTED, MANIFEST, TELEMETRY, metrics_path, segment_glob
from .manifest import Manifest
from .store import reconcile


def find_run_dir(run: str | Path) -> Path:
    """Resolve a run id (in data/runs or data/sample, unique prefix allowed) or a path."""
    p = Path(run)
    if (p / MANIFEST).is_file():
        return p.resolve()
    for base in (paths.runs_dir(), paths.sample_dir()):
        if (base / str(run) / MANIFEST).is_file():
            return base / str(run)
    hits = [d for base in (paths.runs_dir(), paths.sample_dir()) if base.is_dir()
            for d in base.iterdir() if d.name.startswith(str(run)) and (d / MANIFEST).is_file()]
    if len(hits) == 1:
        return hits[0]
    known = ", ".join(sorted(r for r in list_runs()["run_id"])) or "none"
    why = "is ambiguous" if hits else "was not found"
    raise FileNotFoundError(f"run {run!r} {why} in {paths.runs_dir()} or {paths.sample_dir()} (known: {known})")


class Run:
    """One run record. Tables are pandas DataFrames, read on first access."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir
        self.manifest: Manifest = reconcile(run_dir)
        self._quality: list[dict] = []

    def __repr__(self) -> str:
        return f"Run({self.run_id!r}, status={self.manifest.status!r}, cells={len(self.manifest.cells)})"

    @property
    def run_id(self) -> str:
        return self.manifest.run_id

    def _cell_files(self, key: str):
        for cell in self.manifest.cells:
            d = self.dir / "cells" / cell.cell_id
            if (d / CELL_FILES[key]).is_file():
                yield cell, d / CELL_FILES[key]
            elif key in K6_SEGMENTED:  # a cell split over k6 processes/pods: every segment's file
                for p in sorted(d.glob(segment_glob(key))):
                    yield cell, p

    def _tag(self, df: pd.DataFrame, cell_id: str, **extra) -> pd.DataFrame:
        self._quality.append({"run_id": self.run_id, "cell_id": cell_id, **df.attrs.get("ingest", {})})
        df = df.assign(run_id=self.run_id, cell_id=cell_id, **extra)
        lead = ["run_id", "cell_id"]
        return df[lead + [c for c in df.columns if c not in lead]]

    @staticmethod
    def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
        frames = [f for f in frames if not f.empty]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["run_id", "cell_id"])

    @cached_property
    def requests(self) -> pd.DataFrame:
        """One row per HTTP request of every cell; ``phase`` is warmup|measure (measure when untagged)."""
        frames = []
        for cell, p in self._cell_files("k6"):
            df = read_k6(p)
            if "phase" not in df.columns:
                df["phase"] = "measure"
            frames.append(self._tag(df, cell.cell_id, payload=cell.payload, vus=cell.vus, executor=cell.executor))
        return self._concat(frames)

    @cached_property
    def points(self) -> pd.DataFrame:
        return self._concat([self._tag(read_k6_points(p), c.cell_id) for c, p in self._cell_files("k6")])

    @cached_property
    def summary(self) -> pd.DataFrame:
        return self._concat([self._tag(read_k6_summary(p), c.cell_id) for c, p in self._cell_files("summary")])

    @cached_property
    def _probe(self):
        reqs, gaps = [], []
        sources = [("idle", self.dir / IDLE_PROBE)] + [(c.cell_id, p) for c, p in self._cell_files("probe")]
        for cell_id, p in sources:
            if p.is_file():
                r = read_probe(p)
                reqs.append(self._tag(r.requests, cell_id))
                gaps.append(r.gaps.assign(run_id=self.run_id, cell_id=cell_id))
        return self._concat(reqs), self._concat(gaps)

    @property
    def probe(self) -> pd.DataFrame:
        """Streaming probe, one row per request; cell_id ``idle`` for the idle probe."""
        return self._probe[0]

    @property
    def probe_gaps(self) -> pd.DataFrame:
        """Inter-token gaps, long: run_id, cell_id, request_index, gap_index, itl_ms."""
        return self._probe[1]

    @cached_property
    def gpu(self) -> pd.DataFrame:
        """GPU samples (ts, gpu_index, metric, value, unit, source) from nvidia-smi and NVML."""
        frames = []
        smi = self.dir / TELEMETRY["nvidia_smi"]
        if smi.is_file():
            frames.append(self._tag(read_nvidia_smi(smi, self.manifest.host.utc_offset_minutes), "run", source="nvidia-smi"))
        nvml = self.dir / TELEMETRY["nvml"]
        if nvml.is_file():
            df = pd.read_csv(nvml, parse_dates=["ts"])
            df["ts"] = pd.to_datetime(df["ts"], utc=True)
            frames.append(self._tag(df, "run", source="nvml"))
        return self._concat(frames)

    @cached_property
    def host(self) -> pd.DataFrame:
        """CPU/memory samples of the engine, k6 and the system: ts, process, metric, value."""
        p = self.dir / TELEMETRY["host"]
        if not p.is_file():
            return pd.DataFrame(columns=["run_id", "cell_id", "ts", "process", "metric", "value"])
        df = pd.read_csv(p)
        df["ts"] = pd.to_datetime(df["ts"], utc=True, format="ISO8601")
        return self._tag(df, "run")

    @cached_property
    def server(self) -> pd.DataFrame:
        """Every /metrics sample with ``when`` = before|after and ``pod`` (the scraped pod on k8s,
        "" for a scrape through the Service or URL). cell_id is the cell, ``idle`` for the scrapes
        around the idle probe, ``run`` for run-level snapshots (imported runs)."""
        scopes = [(c.cell_id, f"cells/{c.cell_id}") for c in self.manifest.cells]
        scopes += [("idle", "probe"), ("run", "server")]
        frames = []
        for when in ("before", "after"):
            for scope, folder in scopes:
                direct = self.dir / metrics_path(folder, when)
                pods = sorted((self.dir / folder / "pods").glob(f"*/metrics-{when}.prom"))
                for p, pod in [(direct, ""), *[(p, p.parent.name) for p in pods]]:
                    if p.is_file():
                        frames.append(self._tag(read_prometheus_text(p), scope, when=when, pod=pod))
        return self._concat(frames)

    @property
    def data_quality(self) -> pd.DataFrame:
        """Lines read/used/skipped per file read so far (touch the tables first)."""
        return pd.DataFrame(self._quality)

    def cells_frame(self) -> pd.DataFrame:
        """The manifest's cells as a table."""
        return pd.DataFrame([c.model_dump() for c in self.manifest.cells]).assign(run_id=self.run_id)


def load_run(run: str | Path) -> Run:
    """Open a run by id (data/runs, then data/sample) or by path."""
    return Run(find_run_dir(run))


def list_runs() -> pd.DataFrame:
    """All runs in data/runs and data/sample with their status (stale writers reconciled)."""
    rows = []
    for where, base in (("runs", paths.runs_dir()), ("sample", paths.sample_dir())):
        if not base.is_dir():
            continue
        for d in sorted(base.iterdir()):
            if (d / MANIFEST).is_file():
                m = reconcile(d)
                done = sum(c.status == "complete" for c in m.cells)
                rows.append({"run_id": m.run_id, "where": where, "status": m.status, "kind": m.kind,
                             "target": m.target.kind, "model": m.target.model,
                             "cells": f"{done}/{len(m.cells)}", "created_at": m.created_at, "reason": m.reason})
    return pd.DataFrame(rows, columns=["run_id", "where", "status", "kind", "target", "model", "cells", "created_at", "reason"])
