"""How fast this machine's local CPU engine is, for estimates: output tokens per second at each
VU level, and its start-up time, with where each figure came from.

In this order:

1. **measured on this machine**: the newest local run record in ``data/runs`` made on this
   host (same hostname, CPU model and core count), preferring one whose engine ran with the
   spec's engine arguments. Its complete closed-loop cells give the output tokens per second at
   each VU level (the cell's requests, warm-up and probe included, over its wall time), and a
   record whose engine started the same way (eager or compiled) the start-up time.
2. **a reference figure for the CPU class** (:func:`inferlab.machine.cpu_flags`) and the
   engine's dtype (the spec's ``--dtype``, else this CPU's: ``targets.engine.with_machine_dtype``),
   below.

Between known VU levels the throughput follows a power law through the two nearest (log-log
interpolation); beyond the known levels, batching gains ~sqrt(VUs), up to 16 VUs.

Warm-up is counted as k6 sends it (:func:`inferlab.load.k6.warmup_count`: at least one round of
the cell's VUs), not as a cell record's ``warmup_requests`` says (the spec's figure): at 16 VUs
that is 16 warm-up requests, not 2.
"""

from __future__ import annotations

import math
import socket
import statistics
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import psutil

from .. import machine, paths
from ..load.k6 import warmup_count
from ..runs.manifest import CellRecord, Manifest
from ..runs.records import RUNS
from ..runs.store import read_manifest
from ..specs import LoadSpec
from ..targets.engine import dtype_arg, with_machine_dtype

# Reference figures: SmolLM2-135M on the local CPU engine (vLLM 0.32 CPU build), 2 cores, output
# tokens per second (all streams together) by VU level, by (CPU class, engine dtype).
# - avx2, bfloat16: a 2-core CPU with AVX2 and no AVX-512 (issue 18): 9.4 tokens/s at 1 VU (a
#   64-token answer in 6.8 s); the 256-token x 16-VU cell took 281 s for 36 measured + 16 warm-up
#   requests (k6 sends a full round of VUs; the record's warmup_requests says the spec's 2) and 2
#   64-token probes: 47.8 tokens/s, 5.1x one VU.
# - avx2, float32: the same CPU, about 10 % faster (inferlab.machine.engine_dtype's measurement);
#   16 VUs scaled by the bf16 ratio (not measured).
# - avx512, bfloat16: the 2-core AMD EPYC with AVX-512 BF16 that made data/sample's local runs
#   (2026-11-27, --enforce-eager): 1 VU 27.9 tokens/s, the median of its 19 one-VU cells; 16 VUs
#   200 tokens/s, the median of the 12 A/A and baseline 16-VU cells, warm-up counted as k6 sent it.
REFERENCE_TOKENS_PER_S = {("avx2", "bfloat16"): {1: 9.4, 16: 47.8}, ("avx2", "float32"): {1: 10.3, 16: 52.4},
                          ("avx512", "bfloat16"): {1: 27.9, 16: 200.0}}
# Engine start-up (s) where this machine has recorded none: taken as the engine's first start.
# AVX-512: eager 25 s (the median of data/sample's 35 eager local runs); torch.compile 128 s, a
# fresh clone's first compiled start (`make report` on a 2-core Intel Xeon, session 21: 73 s of
# it inductor's compile, which vLLM caches in ~/.cache/vllm by model path, so a checkout at a new
# path compiles again; data/sample's one compiled run, on another machine, took 74 s). AVX2-only,
# not recorded: eager taken as 3x, like decode; compiled as the same 73 s of compile (C++ built
# by the compiler, no AVX-512 in it) + 3x the other 55 s (a slower machine overall would compile
# slower too: 2x the whole, 256 s, is as likely).
REFERENCE_STARTUP_S = {("avx512", True): 25.0, ("avx512", False): 128.0, ("avx2", True): 75.0, ("avx2", False): 240.0}
BATCH_GAIN_CAP_VUS = 16  # no further batching gain assumed beyond this many VUs (the matrix's largest level)
RECORDS_SCANNED = 50  # newest local run records read when looking for a measurement


@dataclass(frozen=True)
class EngineSpeed:
    """The local engine's output tokens per second at each known VU level, its start-up time,
    and where both came from (said beside every estimate)."""

    throughput: dict[int, float]
    startup_s: float
    source: str

    def tokens_per_s(self, vus: int) -> float:
        """Aggregate output tokens/s at ``vus`` VUs: measured at that level; between two known
        levels, the power law through them; else scaled from the nearest known level by
        sqrt(VUs) (capped at :data:`BATCH_GAIN_CAP_VUS`)."""
        v = max(1, min(vus, BATCH_GAIN_CAP_VUS))
        if v in self.throughput:
            return self.throughput[v]
        below = [k for k in self.throughput if k < v]
        above = [k for k in self.throughput if k > v]
        if below and above:
            lo, hi = max(below), min(above)
            slope = math.log(self.throughput[hi] / self.throughput[lo]) / math.log(hi / lo)
            return self.throughput[lo] * (v / lo) ** slope
        known = min(self.throughput, key=lambda k: (abs(k - v), k))
        return self.throughput[known] * (v / min(known, BATCH_GAIN_CAP_VUS)) ** 0.5


def engine_speed(spec: LoadSpec, runs_dir: Path | None = None, cpuinfo: str | None = None) -> EngineSpeed:
    """This machine's engine speed: measured in its newest local run record, else the reference
    figure for its CPU class (module docstring)."""
    eager = "--enforce-eager" in spec.engine.args
    measured = _measured_speed(spec, runs_dir or paths.runs_dir(), eager)
    if measured is not None:
        return measured
    flags = machine.cpu_flags(cpuinfo)
    cls = "avx512" if "avx512f" in flags else "avx2"
    dtype = dtype_arg(with_machine_dtype(spec.engine.args, cpuinfo))
    tps = REFERENCE_TOKENS_PER_S.get((cls, dtype))
    what = f"{dtype}, {'eager' if eager else 'torch.compile'} start-up"
    if tps is None:  # no figure for this dtype on this class: the class's bf16 figure
        tps, what = REFERENCE_TOKENS_PER_S[(cls, "bfloat16")], f"bfloat16 figure, the engine runs {dtype}"
    levels = ", ".join(f"{t:g} tokens/s at {v} VU{'s' if v > 1 else ''}" for v, t in sorted(tps.items()))
    name = {"avx512": "a CPU with AVX-512", "avx2": "an AVX2-only CPU"}[cls]
    slower = "" if cls == "avx512" or "avx2" in flags else "; this CPU lacks AVX2 and should be slower still"
    return EngineSpeed(dict(tps), REFERENCE_STARTUP_S[(cls, eager)],
                       f"reference figure for {name} ({levels}, {what}; no local run on this "
                       f"machine recorded yet){slower}")


def _measured_speed(spec: LoadSpec, runs_dir: Path, eager: bool) -> EngineSpeed | None:
    """The speed measured in this machine's newest local run record with closed-loop cells,
    preferring one that ran the spec's engine arguments; its start-up time when it started the
    engine the way the spec will (eager or compiled), else the newest such record's."""
    records = [m for m in _local_records(runs_dir) if _same_host(m)]
    args = _engine_args(with_machine_dtype(spec.engine.args))  # as a new run records them
    timed = [(m, t) for m in records if (t := throughput_of(m))]
    if not timed:
        return None
    same_args = [(m, t) for m, t in timed if _engine_args(m.target.engine_args) == args]
    m, throughput = (same_args or timed)[0]
    starts = [r for r in records if r.target.startup_s and ("--enforce-eager" in r.target.engine_args) == eager]
    started = starts[0] if starts else m
    other = "" if same_args else ", other engine arguments"
    levels = ", ".join(f"{v} VU{'s' if v > 1 else ''} {tps:.1f}" for v, tps in sorted(throughput.items()))
    startup = "" if started is m else f"; engine start-up measured in run {started.run_id}"
    return EngineSpeed(throughput, float(started.target.startup_s or 0.0),
                       f"measured on this machine in run {m.run_id} (output tokens/s: {levels}{other}){startup}")


def _local_records(runs_dir: Path) -> list[Manifest]:
    """The local-target run records among the newest :data:`RECORDS_SCANNED` in ``runs_dir``
    (this workspace's own runs: the shipped sample was made elsewhere), newest first (run ids
    start with their UTC time), listed by the one run store (:mod:`inferlab.runs.records`);
    records that cannot be read (another schema, a run being created) are skipped."""
    store = replace(RUNS, locations=lambda: [runs_dir])
    out = []
    for d in store.folders()[::-1][:RECORDS_SCANNED]:
        try:
            m = read_manifest(d)
        except (OSError, ValueError):
            continue
        if m.target.kind == "local":
            out.append(m)
    return out


def _same_host(m: Manifest) -> bool:
    h = m.host
    return (h.hostname, h.cpu_model, h.cores) == (socket.gethostname(), machine.cpu_model(), psutil.cpu_count())


def _engine_args(args: list[str]) -> list[str]:
    """Engine arguments that change its speed: the OTLP endpoint (a new port each run) dropped."""
    flag = "--otlp-traces-endpoint"
    at = {i for i, a in enumerate(args) if a == flag}
    return [a for i, a in enumerate(args) if not (i in at or i - 1 in at or a.startswith(flag + "="))]


def throughput_of(m: Manifest) -> dict[int, float]:
    """Output tokens/s by VU level (median over cells) in a record's complete closed-loop cells
    of fixed-length answers (``ignore_eos``): the cell's requests, warm-up and probe requests
    included, over its wall time. {} when it has none."""
    by_level: dict[int, list[float]] = {}
    try:
        payloads, probe_tokens = m.spec["payloads"], m.spec["probe"]["payload"]["max_tokens"]
    except (KeyError, TypeError):
        return {}
    for c in m.cells:
        p = payloads.get(c.payload) or {}
        if not (_closed_loop(c) and p.get("ignore_eos", True) and p.get("max_tokens")):
            continue
        secs = (c.ended_at - c.started_at).total_seconds()  # type: ignore[operator]
        requests = c.iterations + warmup_count(c.warmup_requests, c.vus, c.executor)  # type: ignore[operator,arg-type]
        tokens = requests * p["max_tokens"] + c.probe_requests * probe_tokens
        if secs > 0:
            by_level.setdefault(c.vus, []).append(tokens / secs)  # type: ignore[arg-type]
    return {v: statistics.median(x) for v, x in by_level.items()}


def _closed_loop(c: CellRecord) -> bool:
    return (c.status == "complete" and c.executor == "shared-iterations" and not c.workload and bool(c.vus)
            and bool(c.iterations) and isinstance(c.started_at, datetime) and isinstance(c.ended_at, datetime))
