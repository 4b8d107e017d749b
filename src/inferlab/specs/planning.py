"""Cell planning: which cells a spec's run has, in a deterministic order, and how a cell is named.

A cell id says what the cell does: ``short-c16`` (closed loop at 16 VUs), ``short-rate2to12``
(an arrival-rate ramp), ``short-at4p5`` (a constant or Poisson rate), ``bursty-trace-x2`` (a
trace replayed at 2x), ``-r<n>`` appended for repeats. The run layout names directories by it
(runs/layout.py), so it is a safe directory name and never holds a dot.
"""

from __future__ import annotations

import re

from pydantic import Field

from .base import StrictModel
from .models import LoadSpec, workload_vus
from .workload import load_workload

CELL_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]*-(c\d+|rate\d+to\d+|at\d+(p\d+)?|x\d+(p\d+)?)(-r\d+)?$")


def slug(text: str) -> str:
    """Lower-case label safe for a directory name."""
    s = re.sub(r"[^a-z0-9.-]+", "-", text.lower()).strip("-.")
    if not s:
        raise ValueError(f"label {text!r} has no usable characters (expected [a-z0-9.-])")
    return s


def _number(x: float) -> str:
    return f"{round(x, 2):g}".replace(".", "p")


def make_cell_id(payload: str, vus: int | None = None, rate: tuple[int, int] | None = None,
                 repeat: int | None = None, at: float | None = None, replay: float | None = None) -> str:
    """``short-c16`` (closed loop), ``short-rate2to12`` (ramp), ``short-at4p5`` (constant or
    Poisson 4.5 requests/s), ``bursty-trace-x2`` (a trace replayed at 2x speed); ``-r<n>``
    appended for repeats."""
    if sum(x is not None for x in (vus, rate, at, replay)) != 1:
        raise ValueError("a cell is closed loop (vus), a ramp (rate), an arrival rate (at) or a replay: exactly one")
    if vus is not None:
        body = f"c{vus}"
    elif rate is not None:
        body = f"rate{rate[0]}to{rate[1]}"
    elif at is not None:
        body = "at" + _number(at)
    else:
        body = "x" + _number(replay)  # type: ignore[arg-type]
    cell = f"{slug(payload)}-{body}" + (f"-r{repeat}" if repeat else "")
    if not CELL_ID_RE.match(cell):
        raise ValueError(f"cell_id {cell!r} is malformed")
    return cell


class CellPlan(StrictModel):
    """What one cell of a sweep asks for (made by :func:`plan_cells`)."""

    cell_id: str
    payload: str
    executor: str
    vus: int | None = None
    iterations: int | None = None
    duration_s: float | None = None
    rate_from: float | None = Field(None, description="arrival-rate ramp, requests/s")
    rate_to: float | None = None
    rate: float | None = Field(None, description="constant arrival rate, requests/s (capacity search; a workload's "
                               "mean session rate)")
    repeat: int | None = None
    workload: str | None = Field(None, description="the workload's name (payload carries it too)")


OPEN_LOOP_EXECUTOR = "scheduled"  # a workload's open loop: each session sent at its own time (chat.js)


def _workload_cells(spec: LoadSpec) -> list[CellPlan]:
    w = load_workload(spec.workload)  # type: ignore[arg-type]
    cells = []
    for vus in workload_vus(spec, w):
        for r in range(1, spec.repeats + 1):
            rep = r if spec.repeats > 1 else None
            common = dict(payload=w.name, workload=w.name, iterations=w.sessions_per_cell, repeat=rep,
                          duration_s=None)
            a = w.arrival
            if a.kind == "closed":
                cells.append(CellPlan(cell_id=make_cell_id(w.name, vus=vus, repeat=rep), executor="shared-iterations",
                                      vus=vus, **common))
            elif a.kind == "trace":
                cells.append(CellPlan(cell_id=make_cell_id(w.name, replay=a.speedup, repeat=rep),
                                      executor=OPEN_LOOP_EXECUTOR, **common))
            else:
                cells.append(CellPlan(cell_id=make_cell_id(w.name, at=a.rate, repeat=rep), executor=OPEN_LOOP_EXECUTOR,
                                      rate=a.rate, **common))
    return cells


def plan_cells(spec: LoadSpec) -> list[CellPlan]:
    """Deterministic cell order: payload, then concurrency, then repeat; the ramp last. A capacity
    search plans its cells as it goes (none up front). A workload plans its own cells (one per
    VU level of a closed loop, one for an open loop), then repeats."""
    cells = []
    if spec.kind == "capacity":
        return cells
    if spec.workload is not None:
        return _workload_cells(spec)
    for payload in spec.use_payloads:
        for vus in spec.payload_concurrency.get(payload, spec.concurrency):
            for r in range(1, spec.repeats + 1):
                rep = r if spec.repeats > 1 else None
                cells.append(CellPlan(
                    cell_id=make_cell_id(payload, vus=vus, repeat=rep), payload=payload, executor=spec.executor, vus=vus,
                    iterations=spec.iterations(vus) if spec.executor == "shared-iterations" else None,
                    duration_s=spec.duration_s, repeat=rep))
    if spec.ramp:
        r = spec.ramp
        cells.append(CellPlan(cell_id=make_cell_id(r.payload, rate=(r.start_rate, r.end_rate)), payload=r.payload,
                              executor="ramping-arrival-rate", duration_s=r.duration_s,
                              rate_from=r.start_rate, rate_to=r.end_rate))
    return cells
