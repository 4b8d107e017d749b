"""``load_run(run_id_or_path) -> Run``: the only way analysis and reports read raw runs.

Every table is tidy, read lazily on first access, and carries ``run_id`` and ``cell_id``.
Times are tz-aware UTC; durations are ``_ms``. ``Run.data_quality`` lists, per file read, the
lines read, used and skipped, so reports can show that nothing was silently dropped.

Reading never writes: a ``running`` run whose writer is gone shows as ``interrupted (not
reconciled)`` until ``inferlab reconcile`` records it (:func:`inferlab.runs.store.reconcile`).

Every file is read as recorded: its bytes are hashed while the table is read (same pass) and a
size or sha256 that differs from ``run.json`` raises ``RecordMismatchError`` naming the file
(:mod:`inferlab.runs.verify`). A file the manifest does not list is refused in a finished run
and read unverified, with a note, while a run is still being written. Telemetry a resumed run
wrote beside the first session's (``telemetry/host-resume1.csv`` ...) is read too.
"""

from __future__ import annotations

import json
import re
from fnmatch import fnmatch
from functools import cached_property
from pathlib import Path

import pandas as pd

from ..ingest import read_edge_log, read_k6, read_k6_points, read_k6_summary, read_nvidia_smi_log, read_probe, read_prometheus_text
from ..ingest.k6 import empty_requests
from ..ingest.series import RAW_COLUMNS, read_metric_types, read_samples, tidy_series
from .layout import (CAPACITY, CAPACITY_PARTIAL, CELL_FILES, EDGE_LOG, IDLE_PROBE, INGRESS_LOG, K6_SEGMENTED, SPANS,
                     TELEMETRY, WORKLOAD, metrics_path, segment_glob, with_resumes)
from .manifest import Manifest
from .records import RUNS
from .store import INTERRUPTED, interruption, read_manifest
from .verify import Problem, RecordMismatchError, open_verified, read_verified, verify_run

SERIES_WINDOW_S = 5.0  # window of Run.series' rates and quantiles (Run.series_at for others)
PROM_FOLDER = re.compile(r"^server/prometheus(-cluster)?(-resume\d+)?$")


def status_as_read(m: Manifest) -> tuple[str, str]:
    """(status, reason) as readers show them: the manifest's, except a ``running`` run whose
    writer is gone, which is :data:`~inferlab.runs.store.INTERRUPTED` with how to record it."""
    why = interruption(m)
    if why is None:
        return m.status, m.reason
    return INTERRUPTED, f"{why}; `inferlab reconcile {m.run_id}` records it as partial"


def find_run_dir(run: str | Path) -> Path:
    """Resolve a run by path, exact id or unique id prefix (data/runs, then data/sample): the
    one id rule of :data:`inferlab.runs.records.RUNS`; an unknown or ambiguous one is a
    ``FileNotFoundError`` naming the folders or the candidates."""
    return RUNS.find(run)


class Run:
    """One run record, opened read-only. Tables are pandas DataFrames, read on first access.
    ``status``/``reason``: as read (:func:`status_as_read`); ``manifest``: run.json as recorded."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir
        self.manifest: Manifest = read_manifest(run_dir)
        self.status, self.reason = status_as_read(self.manifest)
        self._quality: list[dict] = []
        self._recorded = {f.path: f for f in self.manifest.files}

    def __repr__(self) -> str:
        return f"Run({self.run_id!r}, status={self.status!r}, cells={len(self.manifest.cells)})"

    @property
    def run_id(self) -> str:
        return self.manifest.run_id

    def verify(self) -> list[Problem]:
        """Every missing, changed or unrecorded file (``inferlab verify``); empty when intact."""
        return verify_run(self)

    def _unrecorded(self, p: Path) -> None:
        """A file run.json does not list: refused once the run is finished; read unverified,
        with a data-quality note, while the run is still being written (or was interrupted and
        is not reconciled yet: its last files were never recorded)."""
        if self.manifest.status != "running":
            raise RecordMismatchError(p, "no such file",
                                      f"present but not recorded (the run is {self.manifest.status})")
        why = "the run is still being written" if self.status == "running" else f"the run is {self.status}"
        self._quality.append({"run_id": self.run_id, "path": str(p),
                              "notes": [f"{p}: not recorded yet ({why}): read unverified"]})

    def _read(self, p: Path, reader, *args, **kw):
        """``reader(p, ...)`` with the file verified against its record in the same pass."""
        entry = self._recorded.get(p.relative_to(self.dir).as_posix())
        if entry is None:
            self._unrecorded(p)
            return reader(p, *args, **kw)
        return read_verified(p, entry, reader, *args, **kw)

    def _read_csv(self, p: Path, **kw) -> pd.DataFrame:
        """pandas.read_csv through the hashing file: verified in the same pass."""
        entry = self._recorded.get(p.relative_to(self.dir).as_posix())
        if entry is None:
            self._unrecorded(p)
            return pd.read_csv(p, **kw)
        with open_verified(p, entry) as fh:
            return pd.read_csv(fh, **kw)

    def _present(self, folder: str) -> set[str]:
        """Relative paths of the files directly in ``folder``: on disk or recorded. A recorded
        file that is gone stays a candidate, so reading it fails (naming it) instead of its rows
        silently vanishing from a table."""
        d = self.dir / folder
        head = f"{folder}/" if folder else ""  # "" is the run's own folder
        disk = {head + p.name for p in d.iterdir() if p.is_file()} if d.is_dir() else set()
        return disk | {r for r in self._recorded if r.rpartition("/")[0] == folder}

    def _matching(self, folder: str, pattern: str) -> list[Path]:
        return [self.dir / r for r in sorted(self._present(folder)) if fnmatch(r.rpartition("/")[2], pattern)]

    def _cell_files(self, key: str):
        for cell in self.manifest.cells:
            folder = f"cells/{cell.cell_id}"
            if f"{folder}/{CELL_FILES[key]}" in self._present(folder):
                yield cell, self.dir / folder / CELL_FILES[key]
            elif key in K6_SEGMENTED:  # a cell split over k6 processes/pods: every segment's file
                for p in self._matching(folder, segment_glob(key)):
                    yield cell, p

    def _telemetry(self, key: str) -> list[Path]:
        """A telemetry file and the ``-resume<N>`` siblings resumed sessions wrote."""
        return [self.dir / r for r in with_resumes(TELEMETRY[key], self._present("telemetry"))]

    def _tag(self, df: pd.DataFrame, cell_id: str, **extra) -> pd.DataFrame:
        self._quality.append({"run_id": self.run_id, "cell_id": cell_id, **df.attrs.get("ingest", {})})
        df = df.assign(run_id=self.run_id, cell_id=cell_id, **extra)
        lead = ["run_id", "cell_id"]
        return df[lead + [c for c in df.columns if c not in lead]]

    @staticmethod
    def _concat(frames: list[pd.DataFrame], columns: list[str] | tuple[str, ...] = (),
                empty: pd.DataFrame | None = None) -> pd.DataFrame:
        """The non-empty frames as one; none: ``empty`` where given (a typed table), else an
        empty table of run_id, cell_id and ``columns``."""
        frames = [f for f in frames if not f.empty]
        if frames:
            return pd.concat(frames, ignore_index=True)
        return empty if empty is not None else pd.DataFrame(columns=["run_id", "cell_id", *columns])

    @cached_property
    def requests(self) -> pd.DataFrame:
        """One row per HTTP request of every cell; ``phase`` is warmup|measure (measure when untagged).
        A run that recorded no request (every cell cut before its first answer) gives an empty
        table with the same columns, so readers need no special case."""
        frames = []
        for cell, p in self._cell_files("k6"):
            df = self._read(p, read_k6)
            if "phase" not in df.columns:
                df["phase"] = "measure"
            frames.append(self._tag(df, cell.cell_id, payload=cell.payload, vus=cell.vus, executor=cell.executor))
        return self._concat(frames, empty=empty_requests({"run_id": "object", "cell_id": "object", "phase": "object",
                                                          "payload": "object", "vus": "int64", "executor": "object"}))

    @cached_property
    def points(self) -> pd.DataFrame:
        return self._concat([self._tag(self._read(p, read_k6_points), c.cell_id) for c, p in self._cell_files("k6")])

    @cached_property
    def summary(self) -> pd.DataFrame:
        return self._concat([self._tag(self._read(p, read_k6_summary), c.cell_id)
                             for c, p in self._cell_files("summary")])

    @cached_property
    def _probe(self):
        reqs, gaps = [], []
        idle = [("idle", self.dir / IDLE_PROBE)] if IDLE_PROBE in self._present("probe") else []
        for cell_id, p in idle + [(c.cell_id, p) for c, p in self._cell_files("probe")]:
            r = self._read(p, read_probe)
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
    def _smi(self) -> list:
        """nvidia-smi logs, parsed once: (gpu long table, gpus attributes) per file."""
        return [self._read(smi, read_nvidia_smi_log, self.manifest.host.utc_offset_minutes)
                for smi in self._telemetry("nvidia_smi")]

    @cached_property
    def gpus(self) -> pd.DataFrame:
        """One row per GPU in nvidia-smi's log(s): gpu_index, samples, first_ts, last_ts, and its
        text fields (name, uuid, pci_bus_id, driver_version, pstate, ...)."""
        return self._concat([log.gpus.assign(run_id=self.run_id, cell_id="run") for log in self._smi])

    @cached_property
    def gpu(self) -> pd.DataFrame:
        """GPU samples (ts, gpu_index, metric, value, unit, source) from nvidia-smi and NVML
        (a resumed run's ``-resume<N>`` files included)."""
        frames = []
        for log in self._smi:
            frames.append(self._tag(log.gpu, "run", source="nvidia-smi"))
        for nvml in self._telemetry("nvml"):
            df = self._read_csv(nvml, parse_dates=["ts"])
            df["ts"] = pd.to_datetime(df["ts"], utc=True)
            frames.append(self._tag(df, "run", source="nvml"))
        return self._concat(frames)

    @cached_property
    def energy(self) -> pd.DataFrame:
        """GPU energy readings over each cell's load (``cells/<id>/energy.csv``, NVML: telemetry/
        energy.py), verified: run_id, cell_id, ts, gpu, energy_j (the counter), power_w, source.
        Empty where none was recorded (no NVML); a cluster's DCGM series are in ``series``'s raw
        samples instead (analysis.energy reads both)."""
        from ..ingest.energy import COLUMNS, read_energy

        return self._concat([self._tag(self._read(p, read_energy), c.cell_id) for c, p in self._cell_files("energy")],
                            COLUMNS)

    @cached_property
    def host(self) -> pd.DataFrame:
        """CPU/memory samples of the engine, k6 and the system: ts, process, metric, value
        (a resumed run's ``telemetry/host-resume<N>.csv`` included)."""
        frames = []
        for p in self._telemetry("host"):
            df = self._read_csv(p)
            df["ts"] = pd.to_datetime(df["ts"], utc=True, format="ISO8601")
            frames.append(self._tag(df, "run"))
        return self._concat(frames, ["ts", "process", "metric", "value"])

    @cached_property
    def spans(self) -> pd.DataFrame:
        """The server's OTLP spans (the local engine's receiver, or on k8s the tracing component's
        Collector), one row per span, verified; cell_id is the cell whose window received them
        (``idle`` for the idle probe and start-up, ``run`` for late ones). Empty where the target
        exported none (url, k8s without the tracing component, or traces off)."""
        from ..ingest.spans import read_spans

        scopes = [(c.cell_id, f"cells/{c.cell_id}") for c in self.manifest.cells] + [("idle", "probe"), ("run", "")]
        frames = []
        for scope, folder in scopes:
            rel = f"{folder}/{SPANS}" if folder else SPANS
            for r in with_resumes(rel, self._present(folder)):
                frames.append(self._tag(self._read(self.dir / r, read_spans), scope))
        return self._concat(frames)

    @cached_property
    def stream_clock(self) -> pd.DataFrame:
        """The stream clock's record of every streamed request (``stream-clock.jsonl`` per cell,
        ingest.stream_clock's ``client_*`` columns), verified, tagged with its cell; analysis
        joins it to k6's rows by ``request_id`` (analysis.requests.join_requests). Empty for a
        run whose cells sent no stream through the clock. Not fatal: a cut last line is skipped
        and noted (data_quality), and a cell that streamed without a clock file is noted here."""
        from ..ingest.stream_clock import COLUMNS, read_stream_clock

        frames, have = [], set()
        for cell, p in self._cell_files("stream_clock"):
            frames.append(self._tag(self._read(p, read_stream_clock), cell.cell_id))
            have.add(cell.cell_id)
        if self.manifest.spec.get("stream"):  # a spec before streaming (no key) sent JSON answers
            for cell in self.manifest.cells:
                if cell.cell_id not in have and cell.status not in ("pending", "skipped"):
                    self._quality.append({"run_id": self.run_id, "cell_id": cell.cell_id, "notes": [
                        f"cells/{cell.cell_id}/{CELL_FILES['stream_clock']}: missing: the cell's TTFT/TPOT come "
                        "from server spans only, where there are any (k6 in the cluster sends without the clock)"]})
        return self._concat(frames, COLUMNS)

    @cached_property
    def edge(self) -> pd.DataFrame:
        """The edge's access log, one row per request through it, verified: the local edge's, or on
        k8s the ingress-nginx controller's for the run's window; empty without either."""
        frames = [self._tag(self._read(self.dir / r, read_edge_log, source=source), "run")
                  for rel, source in ((EDGE_LOG, "edge"), (INGRESS_LOG, "controller"))
                  for r in with_resumes(rel, self._present("edge"))]
        return self._concat(frames)

    def _prometheus_folders(self) -> list[str]:
        """server/prometheus*, every session's (recorded or on disk)."""
        disk = {f"server/{d.name}" for d in (self.dir / "server").glob("prometheus*") if d.is_dir()}
        recorded = {r.rpartition("/")[0] for r in self._recorded if r.startswith("server/prometheus")}
        return sorted(f for f in disk | recorded if PROM_FOLDER.match(f))

    @cached_property
    def _series_raw(self) -> pd.DataFrame:
        """Raw server samples: the Prometheus window(s) (metadata.json read and verified first),
        else the /metrics sampler files; each file verified against run.json as it is read."""
        frames = []
        for folder in self._prometheus_folders():
            types = (self._read(self.dir / folder / "metadata.json", read_metric_types)
                     if f"{folder}/metadata.json" in self._present(folder) else {})
            for p in self._matching(folder, "*-[0-9][0-9][0-9].json.gz"):
                frames.append(self._read(p, read_samples, types=types))
        if not frames:  # one source per run: Prometheus where it ran, else the sampler
            frames += [self._read(p, read_samples) for p in self._telemetry("metrics_samples")]
        for f in frames:
            self._quality.append({"run_id": self.run_id, "cell_id": "run", **f.attrs.get("ingest", {})})
        frames = [f for f in frames if not f.empty]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=RAW_COLUMNS)

    @property
    def series_raw(self) -> pd.DataFrame:
        """The server samples as read, before windowing (ingest.series.RAW_COLUMNS): counters
        as counters, for readers that cut their own windows (analysis.energy: DCGM's energy)."""
        return self._series_raw

    def series_at(self, window_s: float) -> pd.DataFrame:
        """Server time series with rates and quantiles over ``window_s`` windows (see ``series``)."""
        df = tidy_series(self._series_raw, window_s)
        return df.assign(run_id=self.run_id)[["run_id", *df.columns]]

    @cached_property
    def series(self) -> pd.DataFrame:
        """Server time series, tidy: run_id, ts, family, labels (JSON), value, kind (gauge | rate |
        p50 | p95 | p99) over 5 s windows, from the run's Prometheus window(s) or its 1 s /metrics
        sampler. ALERTS rows feed ``inferlab.analysis.alerts.alert_timeline``."""
        return self.series_at(SERIES_WINDOW_S)

    @cached_property
    def prometheus_meta(self) -> list[dict]:
        """Each saved Prometheus window's meta.json (source, window, queries, rule_profile), verified."""
        return [self._read(self.dir / f / "meta.json", lambda p: json.loads(Path(p).read_bytes()))
                for f in self._prometheus_folders() if f"{f}/meta.json" in self._present(f)]

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
                rel = metrics_path(folder, when)
                direct = [(self.dir / rel, "")] if rel in self._present(folder) else []
                pods = sorted({p.parent.name for p in (self.dir / folder / "pods").glob(f"*/metrics-{when}.prom")}
                              | {r.split("/")[-2] for r in self._recorded
                                 if r.startswith(f"{folder}/pods/") and r.endswith(f"/metrics-{when}.prom")})
                for p, pod in [*direct, *[(self.dir / metrics_path(folder, when, pod), pod) for pod in pods]]:
                    frames.append(self._tag(self._read(p, read_prometheus_text), scope, when=when, pod=pod))
        return self._concat(frames)

    @property
    def data_quality(self) -> pd.DataFrame:
        """Lines read/used/skipped per file read so far (touch the tables first)."""
        return pd.DataFrame(self._quality)

    @cached_property
    def workload(self) -> dict:
        """A workload run's ``workload.json`` (files + sha256, the workload, token calibration),
        verified; {} for a payload run."""
        p = self.dir / WORKLOAD
        if not p.is_file():
            return {}
        return self._read(p, lambda path: json.loads(Path(path).read_bytes()))

    @cached_property
    def capacity(self) -> dict:
        """A capacity run's record, verified; {} when it has none. The one that counts:
        ``capacity.json`` (a search that ran to its end: claim, interval, steps), else the last
        partial record (``capacity-partial.json`` or a resumed session's
        ``capacity-partial-resume<N>.json``: the steps decided before the search stopped,
        ``complete: false`` and no claim; analysis.capacity.is_complete tells them apart)."""
        present = self._present("")
        chosen = [CAPACITY] if CAPACITY in present else with_resumes(CAPACITY_PARTIAL, present)[-1:]
        if not chosen:
            return {}
        return self._read(self.dir / chosen[0], lambda path: json.loads(Path(path).read_bytes()))

    def cells_frame(self) -> pd.DataFrame:
        """The manifest's cells as a table."""
        return pd.DataFrame([c.model_dump() for c in self.manifest.cells]).assign(run_id=self.run_id)


def load_run(run: str | Path) -> Run:
    """Open a run by id (data/runs, then data/sample) or by path."""
    return Run(find_run_dir(run))


def list_runs() -> pd.DataFrame:
    """All runs in data/runs and data/sample with their status as read (:func:`status_as_read`)."""
    rows = []
    for d in RUNS.folders():
        m = read_manifest(d)
        status, reason = status_as_read(m)
        done = sum(c.status == "complete" for c in m.cells)
        rows.append({"run_id": m.run_id, "where": "runs" if d.parent == RUNS.home else "sample", "status": status,
                     "kind": m.kind, "target": m.target.kind, "model": m.target.model,
                     "cells": f"{done}/{len(m.cells)}", "created_at": m.created_at, "reason": reason})
    return pd.DataFrame(rows, columns=["run_id", "where", "status", "kind", "target", "model", "cells", "created_at", "reason"])
