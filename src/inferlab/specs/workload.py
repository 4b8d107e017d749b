"""Workloads: what a cell sends, as a strict, seeded YAML file (lengths, prefixes, sessions, arrivals).

A workload is data, not requests: k6 renders every prompt from the seed and these parameters
(load/workload.py builds the per-request schedule, chat.js renders the text), so a workload of
thousands of requests travels in a few kilobytes, also in the in-cluster ConfigMap.

Lengths are tokens of the target's tokenizer: ``input`` is what a request adds to the
conversation (the whole prompt for single-turn requests, the new user message for later turns),
``output`` is ``max_tokens`` (held exactly when ``ignore_eos``). Built-in workloads live in
``specs/workloads/<name>.yaml``; a trace file named by a workload is relative to that file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from .base import StrictModel, read_mapping, validate_file

WORKLOADS_DIR = Path(__file__).resolve().parent / "workloads"


class Fixed(StrictModel):
    kind: Literal["fixed"]
    value: int = Field(gt=0)


class Uniform(StrictModel):
    """Integers in [low, high], both included."""

    kind: Literal["uniform"]
    low: int = Field(gt=0)
    high: int = Field(gt=0)

    @model_validator(mode="after")
    def _order(self) -> Uniform:
        if self.high < self.low:
            raise ValueError(f"uniform: high ({self.high}) must be >= low ({self.low})")
        return self


class Lognormal(StrictModel):
    """Lognormal with this mean and coefficient of variation (std / mean), rounded to integers."""

    kind: Literal["lognormal"]
    mean: float = Field(gt=0)
    cv: float = Field(gt=0, le=10)


class Histogram(StrictModel):
    """Empirical histogram: ``bins`` of [low, high, weight]; a bin is drawn by weight, then an
    integer uniformly in [low, high]."""

    kind: Literal["histogram"]
    bins: list[tuple[int, int, float]] = Field(min_length=1)

    @model_validator(mode="after")
    def _bins(self) -> Histogram:
        for i, (lo, hi, wt) in enumerate(self.bins):
            if lo <= 0 or hi < lo or wt < 0:
                raise ValueError(f"histogram bin {i} {[lo, hi, wt]}: expected 0 < low <= high and weight >= 0")
        if sum(w for _, _, w in self.bins) <= 0:
            raise ValueError("histogram: the weights sum to 0")
        return self


Length = Annotated[Fixed | Uniform | Lognormal | Histogram, Field(discriminator="kind")]


class Prefix(StrictModel):
    """``groups`` shared prefixes of ``tokens`` tokens; each request belongs to one (drawn
    uniformly) with probability ``fraction``, else its prompt starts with unique tokens."""

    groups: int = Field(1, ge=1, le=1000)
    tokens: int = Field(gt=0)
    fraction: float = Field(1.0, ge=0, le=1)


class Sessions(StrictModel):
    """Multi-turn conversations: every turn carries the earlier turns and the server's answers."""

    turns: int = Field(ge=1, le=64)
    think_time_s: float = Field(0.0, ge=0, description="pause between an answer and the next turn")


class Closed(StrictModel):
    """Closed loop: ``vus`` virtual users, each sending its next session when the last one ended."""

    kind: Literal["closed"]
    vus: int = Field(gt=0, le=1024)


class OpenLoop(StrictModel):
    max_vus: int = Field(64, gt=0, le=4096, description="k6 VUs holding sessions in flight; a send is late only when "
                         "all are busy")
    late_ms: float = Field(50, gt=0, description="a send later than this after its scheduled time counts as late")


class Constant(OpenLoop):
    """Open loop, evenly spaced sessions at ``rate`` per second."""

    kind: Literal["constant"]
    rate: float = Field(gt=0)


class Poisson(OpenLoop):
    """Open loop, exponential gaps at a mean ``rate`` per second (inter-arrival CV 1)."""

    kind: Literal["poisson"]
    rate: float = Field(gt=0)


class Trace(OpenLoop):
    """Replay of a production trace: send times from its timestamps (in the format's own unit:
    Azure wall-clock timestamps, Mooncake milliseconds, BurstGPT seconds) divided by
    ``speedup``; lengths from its token columns unless ``lengths: workload`` (then
    ``input``/``output`` are drawn). A Mooncake trace's ``hash_ids`` become shared prompt blocks
    of ``block_tokens`` tokens. Requests longer than ``max_total_tokens`` are fitted by ``fit``:
    ``scale`` multiplies every length and the block size by one factor (the longest request
    then fits; relative lengths and prefix sharing are kept), ``clip`` cuts only the requests
    that do not fit (the answer to what fits, then the prompt; its leading whole blocks that
    still fit are kept). docs/workloads.md states both rules."""

    kind: Literal["trace"]
    file: str = Field(min_length=1, description="trace path, relative to the workload file")
    format: Literal["azure", "mooncake", "burstgpt"] = Field("azure", description="the trace's layout")
    speedup: float = Field(1.0, gt=0, description="2 replays twice as fast (gaps halved)")
    skip: int = Field(0, ge=0, description="rows skipped at the start of the trace")
    lengths: Literal["trace", "workload"] = "trace"
    fit: Literal["scale", "clip"] = Field("scale", description="how trace lengths beyond max_total_tokens are fitted")
    block_tokens: int | None = Field(None, gt=0, description="tokens per Mooncake hash id; default 512, the "
                                     "published layout (formats/mooncake_trace.py)")

    @model_validator(mode="after")
    def _blocks(self) -> Trace:
        if self.format != "mooncake" and self.block_tokens is not None:
            raise ValueError(f"block_tokens applies to format mooncake only (this trace is {self.format})")
        return self


Arrival = Annotated[Closed | Constant | Poisson | Trace, Field(discriminator="kind")]


class Workload(StrictModel):
    name: str = Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", description="label; part of every cell id")
    description: str = ""
    seed: int = Field(ge=0, description="every length, gap, prefix choice and prompt word follows from it")
    sessions_per_cell: int = Field(gt=0, le=20000, description="sessions (= requests when single-turn) per cell; a "
                                   "trace replays at most this many rows")
    input: Length | None = Field(None, description="tokens a request adds; required unless a trace gives lengths")
    output: Length | None = Field(None, description="answer tokens (max_tokens)")
    min_input_tokens: int = Field(16, ge=8, description="floor of a drawn input (room for the unique lead)")
    max_total_tokens: int = Field(2000, gt=0, description="prompt + answer of any request (the engine's "
                                  "max-model-len minus a margin); longer draws are cut, later turns dropped")
    ignore_eos: bool = Field(True, description="hold answers at max_tokens")
    temperature: float = Field(0.7, ge=0, le=2)
    prefix: Prefix | None = None
    sessions: Sessions | None = None
    arrival: Arrival

    @model_validator(mode="after")
    def _complete(self) -> Workload:
        from_trace = isinstance(self.arrival, Trace) and self.arrival.lengths == "trace"
        if not from_trace and (self.input is None or self.output is None):
            raise ValueError("input and output lengths are required (only a trace with lengths: trace gives them)")
        if self.prefix and isinstance(self.arrival, Trace) and self.arrival.format == "mooncake":
            raise ValueError("prefix: a Mooncake trace gives the shared prefixes itself (hash_ids); drop prefix")
        if self.prefix and self.prefix.tokens + self.min_input_tokens >= self.max_total_tokens:
            raise ValueError(f"prefix.tokens ({self.prefix.tokens}) + min_input_tokens must stay below "
                             f"max_total_tokens ({self.max_total_tokens})")
        return self

    @property
    def turns(self) -> int:
        return self.sessions.turns if self.sessions else 1

    @property
    def open_loop(self) -> bool:
        return not isinstance(self.arrival, Closed)


class WorkloadError(ValueError):
    """A workload file is invalid; the message names the file and every bad field."""


def workload_path(name_or_path: str) -> Path:
    """A workload file by path, or a built-in by name (``chat`` -> specs/workloads/chat.yaml)."""
    p = Path(name_or_path)
    if p.is_file():
        return p.resolve()
    builtin = WORKLOADS_DIR / f"{name_or_path}.yaml"
    if not p.suffix and builtin.is_file():
        return builtin
    have = ", ".join(sorted(x.stem for x in WORKLOADS_DIR.glob("*.yaml")))
    raise WorkloadError(f"workload {name_or_path!r}: no such file and no built-in workload of that name (have: {have})")


def load_workload(name_or_path: str) -> Workload:
    """Read and validate a workload; errors name the file and each bad field."""
    p = workload_path(name_or_path)
    return validate_file(Workload, read_mapping(p, "workload", WorkloadError), p, "workload", WorkloadError)


def trace_file(name_or_path: str, w: Workload) -> Path | None:
    """The trace a workload replays (relative to the workload file), or None."""
    if not isinstance(w.arrival, Trace):
        return None
    return (workload_path(name_or_path).parent / w.arrival.file).resolve()


def workload_files_sha256(name_or_path: str) -> dict[str, str]:
    """sha256 of the workload file and of the trace it names: what the run manifest records."""
    w = load_workload(name_or_path)
    files = [workload_path(name_or_path), *filter(None, [trace_file(name_or_path, w)])]
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
