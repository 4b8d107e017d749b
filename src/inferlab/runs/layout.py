"""Names and paths of the run-record contract (README: "Run records").

data/runs/<run_id>/                  run_id = YYYYmmddTHHMMSSZ-<target>-<label>
  run.json                           manifest; the only file ever replaced (atomically)
  cells/<cell_id>/                   cell_id = <payload>-c<vus> | <payload>-rate<from>to<to> [-r<n>]
    k6.ndjson.gz k6-summary.json k6.log metrics-before.prom metrics-after.prom probe.jsonl
    (k6 split into N execution segments: k6.seg1ofN.ndjson.gz k6-summary.seg1ofN.json k6.seg1ofN.log ...)
    pods/<pod>/metrics-before.prom metrics-after.prom   (k8s: every vLLM pod scraped directly)
  probe/idle.jsonl probe/metrics-before.prom probe/metrics-after.prom   (scrapes around the idle probe)
  telemetry/nvidia-smi.csv nvml.csv host.csv
  engine/engine.log
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

RUN_ID_RE = re.compile(r"^(\d{8}T\d{6}Z)-(local|url|k8s)-([a-z0-9][a-z0-9.-]*)$")
CELL_ID_RE = re.compile(r"^[a-z0-9]+-(c\d+|rate\d+to\d+)(-r\d+)?$")
TARGET_KINDS = ("local", "url", "k8s")

MANIFEST = "run.json"
CELL_FILES = {
    "k6": "k6.ndjson.gz",
    "summary": "k6-summary.json",
    "log": "k6.log",
    "metrics_before": "metrics-before.prom",
    "metrics_after": "metrics-after.prom",
    "probe": "probe.jsonl",
}
IDLE_PROBE = "probe/idle.jsonl"
TELEMETRY = {"nvidia_smi": "telemetry/nvidia-smi.csv", "nvml": "telemetry/nvml.csv", "host": "telemetry/host.csv"}
ENGINE_LOG = "engine/engine.log"


def slug(text: str) -> str:
    """Lower-case label safe for a directory name."""
    s = re.sub(r"[^a-z0-9.-]+", "-", text.lower()).strip("-.")
    if not s:
        raise ValueError(f"label {text!r} has no usable characters (expected [a-z0-9.-])")
    return s


def make_run_id(target: str, label: str, when: datetime | None = None) -> str:
    when = (when or datetime.now(UTC)).astimezone(UTC)
    run_id = f"{when:%Y%m%dT%H%M%SZ}-{target}-{slug(label)}"
    if not RUN_ID_RE.match(run_id):
        raise ValueError(f"run_id {run_id!r} does not match YYYYmmddTHHMMSSZ-<local|url|k8s>-<label>")
    return run_id


def make_cell_id(payload: str, vus: int | None = None, rate: tuple[int, int] | None = None,
                 repeat: int | None = None) -> str:
    """``short-c16``, ``short-rate2to12``; ``-r<n>`` appended when the spec repeats cells."""
    if (vus is None) == (rate is None):
        raise ValueError("a cell is either closed loop (vus) or an arrival-rate ramp (rate), not both")
    body = f"c{vus}" if vus is not None else f"rate{rate[0]}to{rate[1]}"  # type: ignore[index]
    cell = f"{slug(payload)}-{body}" + (f"-r{repeat}" if repeat else "")
    if not CELL_ID_RE.match(cell):
        raise ValueError(f"cell_id {cell!r} is malformed")
    return cell


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
