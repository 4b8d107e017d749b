"""Keep the local engine and its load generator off each other's cores.

On one host, k6 and vLLM compete for the same CPUs and the client's cost shows up as server
latency. Where there are enough cores (>= ``MIN_CORES`` usable by this process), the engine
gets the first half and k6 (and the probe, which runs in this process) the rest, via
``taskset -c`` on their command lines; the split is recorded in the run manifest
(``host.cpu_pinning``). Below that there is nothing sensible to split, and the manifest says so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..tools import which_tool

MIN_CORES = 4


@dataclass(frozen=True)
class Pinning:
    engine: tuple[int, ...]
    client: tuple[int, ...]

    def describe(self) -> str:
        return f"engine on CPUs {cpu_list(self.engine)}, k6 and probe on CPUs {cpu_list(self.client)} (taskset)"

    def engine_prefix(self) -> list[str]:
        return ["taskset", "-c", cpu_list(self.engine)]

    def client_prefix(self) -> list[str]:
        return ["taskset", "-c", cpu_list(self.client)]


def cpu_list(cpus: tuple[int, ...]) -> str:
    """taskset's list syntax with ranges: (0, 1, 2, 5) -> '0-2,5'."""
    out, start = [], None
    for i, c in enumerate(cpus):
        if start is None:
            start = c
        if i + 1 == len(cpus) or cpus[i + 1] != c + 1:
            out.append(str(start) if start == c else f"{start}-{c}")
            start = None
    return ",".join(out)


def plan_pinning(available: set[int] | None = None) -> tuple[Pinning | None, str]:
    """(pinning or None, what to record). ``available`` defaults to this process's affinity."""
    cpus = tuple(sorted(available if available is not None else os.sched_getaffinity(0)))
    if len(cpus) < MIN_CORES:
        return None, f"not pinned: {len(cpus)} usable cores (< {MIN_CORES}); engine and k6 share them"
    if not which_tool("taskset"):
        return None, "not pinned: taskset (util-linux) not found"
    half = (len(cpus) + 1) // 2  # the engine does the heavier work: it gets the odd core
    pin = Pinning(engine=cpus[:half], client=cpus[half:])
    return pin, pin.describe()
