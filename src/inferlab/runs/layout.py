"""Names and paths of the run-record contract (docs/run-record.md).

data/runs/<run_id>/                  run_id = YYYYmmddTHHMMSSZ-<target>-<label>
  run.json                           manifest; the only file ever replaced (atomically)
  cells/<cell_id>/                   cell_id = <payload>-c<vus> | <payload>-rate<from>to<to> [-r<n>]
    k6.ndjson.gz k6-summary.json k6.log metrics-before.prom metrics-after.prom probe.jsonl
    spans.otlp.jsonl.gz                (vLLM's OTLP spans, one line per export batch; local engine, or k8s + tracing)
    stream-clock.jsonl                 (streamed cells, k6 on this machine: the stream clock's line per request)
    energy.csv                         (NVML hosts: every GPU's energy counter and power over the cell's load)
    (k6 split into N execution segments: k6.seg1ofN.ndjson.gz k6-summary.seg1ofN.json k6.seg1ofN.log ...)
    pods/<pod>/metrics-before.prom metrics-after.prom   (k8s: every vLLM pod scraped directly)
  probe/idle.jsonl probe/metrics-before.prom probe/metrics-after.prom   (scrapes around the idle probe)
  probe/spans.otlp.jsonl.gz          (the idle probe's spans, and engine start-up spans when detailed)
  edge/access.log                    (the local edge's JSON access log: one line per request)
  edge/ingress-access.log            (k8s through the ingress: the controller's log for the run's window)
  workload.json                      (a workload run: workload file(s) + sha256, the workload, token calibration)
  capacity.json                      (a capacity run whose search ran to its end: the claim, the interval, every step)
  capacity-partial.json              (a capacity search stopped early: the steps decided so far, no claim; a resumed
                                      session cut again writes capacity-partial-resume<N>.json)
  telemetry/nvidia-smi.csv nvml.csv host.csv
  telemetry/metrics-samples.prom.gz  (1 s /metrics sampler without Prometheus: gzip'd raw scrapes, each after
                                      '# inferlab-scrape ts=... job=... status=...')
  server/prometheus/                 (local Prometheus: query_range answers vllm-000.json.gz alerts-000.json.gz,
                                      metadata.json, meta.json, rules.yml, prometheus.yml, prometheus.log)
  server/prometheus-cluster/         (k8s: the cluster Prometheus' vLLM/DCGM/ALERTS answers for the run window)
  engine/engine.log
A resumed run never overwrites: a run-level file it writes again gets a ``-resume<N>`` sibling
(``telemetry/host-resume1.csv``, ``engine/engine-resume1.log``); readers take them all.
"""

from __future__ import annotations

import re
from pathlib import Path
from datetime import UTC, datetime
from collections.abc import Callable, Iterable

from ..specs.planning import CELL_ID_RE, make_cell_id, slug  # noqa: F401 - names of the run layout, defined with the plan

RUN_ID_RE = re.compile(r"^(\d{8}T\d{6}Z)-(local|url|k8s)-([a-z0-9][a-z0-9.-]*)$")
TARGET_KINDS = ("local", "url", "k8s")

MANIFEST = "run.json"
CELL_FILES = {
    "k6": "k6.ndjson.gz",
    "summary": "k6-summary.json",
    "log": "k6.log",
    "metrics_before": "metrics-before.prom",
    "metrics_after": "metrics-after.prom",
    "probe": "probe.jsonl",
    "stream_clock": "stream-clock.jsonl",  # streamed cells: the stream clock's per-request token timing
    "energy": "energy.csv",  # telemetry/energy.py: NVML energy counter + power per GPU over the load
}
IDLE_PROBE = "probe/idle.jsonl"
SPANS = "spans.otlp.jsonl.gz"  # in cells/<cell_id>/, probe/, and the run's root for late arrivals
EDGE_LOG = "edge/access.log"
INGRESS_LOG = "edge/ingress-access.log"  # k8s: the ingress-nginx controller's log for the run's window
WORKLOAD = "workload.json"  # a workload run: its file(s) and sha256, the validated workload, token calibration
CAPACITY = "capacity.json"  # a capacity search that ran to its end (sweep/capacity_search.py)
CAPACITY_PARTIAL = "capacity-partial.json"  # one stopped early: decided steps, no claim (then -resume<N> siblings)
TELEMETRY = {"nvidia_smi": "telemetry/nvidia-smi.csv", "nvml": "telemetry/nvml.csv", "host": "telemetry/host.csv",
             "metrics_samples": "telemetry/metrics-samples.prom.gz"}
ENGINE_LOG = "engine/engine.log"


def resume_name(rel: str, n: int) -> str:
    """``telemetry/host.csv`` -> ``telemetry/host-resume1.csv``: the name a resumed run writes
    when the first session's file already exists (write-once: never overwritten)."""
    stem, dot, ext = rel.rpartition("/")[2].partition(".")
    folder = rel.rpartition("/")[0]
    return (f"{folder}/" if folder else "") + f"{stem}-resume{n}{dot}{ext}"


def first_free(base: Path, rel: str, variant: Callable[[int], str], start: int = 2) -> str:
    """``rel`` where ``base / rel`` does not exist, else the first ``variant(n)`` for n = start,
    start + 1, ... that does not: the one home of "take the next free name" (run ids, resumed
    files, attempts set aside), so a name is never reused and nothing is overwritten."""
    if not (base / rel).exists():
        return rel
    n = start
    while (base / variant(n)).exists():
        n += 1
    return variant(n)


def unique_name(run_dir: Path, rel: str) -> str:
    """``rel`` (a file or folder) or, where a session already wrote it, its first free
    ``-resume<N>`` sibling: the write-once name of a run-level file on resume."""
    return first_free(run_dir, rel, lambda n: resume_name(rel, n), start=1)


def with_resumes(rel: str, present: Iterable[str]) -> list[str]:
    """``rel`` and its ``-resume<N>`` siblings among ``present`` (relative paths), in session order."""
    folder, _, name = rel.rpartition("/")
    stem, dot, ext = name.partition(".")
    head = re.escape(f"{folder}/" if folder else "") + re.escape(stem)
    pattern = re.compile(head + r"-resume(\d+)" + re.escape(dot + ext) + "$")
    found = sorted((int(m.group(1)), r) for r in present if (m := pattern.match(r)))
    return ([rel] if rel in present else []) + [r for _, r in found]


def make_run_id(target: str, label: str, when: datetime | None = None, runs_dir: Path | None = None) -> str:
    """``YYYYmmddTHHMMSSZ-<target>-<label>``. With ``runs_dir``, an id already taken there (two
    runs of one label started within the same second: an A/B's back-to-back repeats of one
    side) gets the first free ``-2``, ``-3`` ... suffix, so the id stays a name, never a clash."""
    when = (when or datetime.now(UTC)).astimezone(UTC)
    run_id = f"{when:%Y%m%dT%H%M%SZ}-{target}-{slug(label)}"
    if not RUN_ID_RE.match(run_id):
        raise ValueError(f"run_id {run_id!r} does not match YYYYmmddTHHMMSSZ-<local|url|k8s>-<label>")
    return run_id if runs_dir is None else first_free(runs_dir, run_id, lambda n: f"{run_id}-{n}")


K6_SEGMENTED = ("k6", "summary", "log")


def segment_name(name: str, index: int, count: int) -> str:
    """``k6.ndjson.gz`` -> ``k6.seg1of2.ndjson.gz`` (index 0-based); unchanged when count is 1."""
    if count == 1:
        return name
    stem, _, rest = name.partition(".")
    return f"{stem}.seg{index + 1}of{count}.{rest}"


def segment_files(index: int, count: int) -> dict[str, str]:
    """The k6 output names of one execution segment: ndjson, summary, log."""
    return {"ndjson": segment_name(CELL_FILES["k6"], index, count),
            "summary": segment_name(CELL_FILES["summary"], index, count),
            "log": segment_name(CELL_FILES["log"], index, count)}


def segment_glob(key: str) -> str:
    """Glob for the segmented variants of a k6 cell file."""
    stem, _, rest = CELL_FILES[key].partition(".")
    return f"{stem}.seg*of*.{rest}"


def metrics_path(folder: str, when: str, pod: str | None = None) -> str:
    """A /metrics scrape around a cell (``cells/<cell_id>``) or the idle probe (``probe``):
    through the target's URL, or of one pod directly (k8s, any number of replicas)."""
    return f"{folder}/pods/{pod}/metrics-{when}.prom" if pod else f"{folder}/metrics-{when}.prom"


def cell_path(cell_id: str, key: str) -> str:
    """Relative path of one cell file by its key in CELL_FILES."""
    return f"cells/{cell_id}/{CELL_FILES[key]}"


def base_cell(cell_id: str) -> str:
    """A cell id without its ``-r<n>`` repeat suffix (the cell a within-run repeat belongs to)."""
    return re.sub(r"-r\d+$", "", cell_id)
