"""What a run will do and how long it should take: the plan ``--dry-run`` prints, and the one
line a run prints before it starts (so ``make report`` says how long it expects before its sweep).

A cell of ``n`` requests (plus warm-up) of ``t`` output tokens at ``v`` VUs takes
``n * t / tokens_per_s(v)`` seconds on this machine's engine (:mod:`.engine_speed`, which says
where its figures come from), plus the engine's start-up for the local target, and the bundled
model's one-time conversion where this checkout has not converted it yet.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..analysis.capacity import describe_search, step_requests
from ..analysis.token_slo import sample_plan_line
from ..load.k6 import warmup_count
from ..load.workload import schedule_for
from ..specs import CellPlan, LoadSpec, plan_cells
from .engine_speed import EngineSpeed, engine_speed

PREFILL_COST = 1 / 35  # a prompt token costs ~1/35 of an output token (measured: ~1 ms vs ~35 ms/token)
CELL_OVERHEAD_S = 2.0  # k6 start, two /metrics scrapes, the checkpoint
# The bundled GGUF -> bf16 checkpoint, once per checkout, before the engine's first start:
# 28.4 s on a 2-core Intel Xeon (session 21, by hand), and not in a run record's start-up time.
MODEL_CONVERSION_S = 30.0


@dataclass(frozen=True)
class CellEstimate:
    """One cell's expected k6 requests (warm-up not counted) and seconds."""

    cell_id: str
    executor: str
    vus: int | None
    requests: int
    seconds: float


@dataclass(frozen=True)
class Estimate:
    """A run's expected k6 requests, probe requests and seconds (for the local target the engine's
    start-up included, and the bundled model's conversion where it is still to be done), cell by
    cell."""

    cells: list[CellEstimate]
    probe_requests: int
    probe_s: float
    startup_s: float
    speed: EngineSpeed
    extra_s: float = 0.0  # a capacity search's steps, planned as it goes
    conversion_s: float = 0.0  # the bundled model's one-time conversion (local target, first start)

    @property
    def requests(self) -> int:
        return sum(c.requests for c in self.cells)

    @property
    def seconds(self) -> float:
        return self.conversion_s + self.startup_s + self.probe_s + self.extra_s + sum(c.seconds for c in self.cells)


def estimate(spec: LoadSpec, target: str, cells: list[CellPlan] | None = None, speed: EngineSpeed | None = None,
             resumed: bool = False) -> Estimate:
    """The time ``cells`` (default: every planned cell) take on this machine's engine; ``resumed``:
    the idle probe already ran."""
    speed = speed or engine_speed(spec)
    cells = plan_cells(spec) if cells is None else cells
    one = speed.tokens_per_s(1)
    probe_n = 0 if resumed else spec.probe.idle_requests
    extra_s = 0.0
    if spec.kind == "capacity":
        extra_s = _certified_search_s(spec, speed)
    return Estimate(cells=[_cell(spec, c, speed) for c in cells],
                    probe_requests=probe_n + spec.probe.under_load_requests * len(cells),
                    probe_s=probe_n * spec.probe.payload.max_tokens / one,
                    startup_s=speed.startup_s if target == "local" else 0.0, speed=speed, extra_s=extra_s,
                    conversion_s=_conversion_s() if target == "local" else 0.0)


def _conversion_s() -> float:
    """:data:`MODEL_CONVERSION_S` where the local engine will serve the bundled model and this
    checkout has no converted checkpoint yet; else 0 (another model, or an engine choice that
    is invalid: the run's start says why)."""
    from ..targets.engine import EngineError, bundled_model_converted, engine_choice

    try:
        if engine_choice().model is not None:
            return 0.0
    except EngineError:
        return 0.0
    return 0.0 if bundled_model_converted() else MODEL_CONVERSION_S


def _certified_search_s(spec: LoadSpec, speed: EngineSpeed) -> float:
    """A typical certified search (analysis/certify.py): its exploration steps, and its
    certification steps at two looks each on average, at about the rate this engine sustains
    (its 16-VU token rate over the payload's answer length; a guess: the search finds the real
    one), plus each look's warm-up and overhead. An upper bound is every step to its cap
    (describe_search prints it)."""
    c, need = spec.capacity, step_requests(spec.capacity, spec.slo)
    rate = speed.tokens_per_s(16) / max(1, spec.payloads[c.payload].max_tokens)
    looks = need["explore_steps"] + 2 * need["cert_steps"]
    requests = need["explore_steps"] * need["explore"] + 2 * need["cert_steps"] * need["looks"][0]
    return requests / max(rate, 1e-6) + looks * (c.warmup_s + CELL_OVERHEAD_S)


def _cell(spec: LoadSpec, c: CellPlan, speed: EngineSpeed) -> CellEstimate:
    if c.executor == "ramping-arrival-rate":
        n = int((c.rate_from + c.rate_to) / 2 * c.duration_s)  # type: ignore[operator]
        secs = float(c.duration_s or 0)
    elif c.workload:
        wl, sched = schedule_for(spec.workload)  # type: ignore[arg-type]
        n = len(sched)  # requests: sessions x turns, after clipping
        work = float((sched["output_tokens"] + sched["input_tokens"] * PREFILL_COST).sum())
        span = float(sched["start_s"].max()) if wl.open_loop else 0.0
        secs = max(span, work / speed.tokens_per_s(c.vus or 4)) + CELL_OVERHEAD_S
    elif c.iterations:
        # every request the engine serves during the cell: measured, warm-up as k6 sends it (a
        # full round of VUs) and the streaming probe's requests under load
        n = c.iterations
        payload = spec.payloads[c.payload]
        served = n + warmup_count(spec.warmup_requests, c.vus or 1, c.executor)
        probe = spec.probe.under_load_requests * spec.probe.payload.max_tokens
        work = served * payload.max_tokens + probe  # short chat prompts: prefill ~1 token's time, left out
        secs = work / speed.tokens_per_s(c.vus or 1) + CELL_OVERHEAD_S
    else:
        n, secs = 0, float(c.duration_s or 0)
    return CellEstimate(c.cell_id, c.executor, c.vus, n, secs)


def expectation(spec: LoadSpec, target: str, cells: list[CellPlan] | None = None, resumed: bool = False,
                device: str | None = None) -> str:
    """The line a run prints before it starts: how long it expects, and where the figure came from.
    ``device``: the local engine's, where the caller has its choice (else :func:`_engine_device`)."""
    est = estimate(spec, target, cells, resumed=resumed)
    where = "this machine's CPU engine" if target == "local" else "a target as fast as this machine's CPU engine"
    if target == "local" and (device := device or _engine_device()) != "cpu":
        where = f"this machine's CPU engine (this run's engine is on {device}: far faster, so an upper bound)"
    parts = [f"the bundled model's one-time conversion ~{est.conversion_s:.0f} s"] if est.conversion_s else []
    parts += [f"engine start-up ~{est.startup_s:.0f} s"] if est.startup_s else []
    parts += [f"{len(est.cells)} cell{'s' if len(est.cells) != 1 else ''}"] if est.cells else []
    parts += ["a certified capacity search (typical; its most below)"] if est.extra_s else []
    return f"expected: ~{_minutes(est.seconds)} on {where} ({' + '.join(parts)}); {est.speed.source}"


def _engine_device() -> str:
    """The local engine's device (targets.engine.engine_choice); "cpu" where the choice is
    invalid (the engine's start reports that, not this estimate)."""
    from ..targets.engine import EngineError, engine_choice

    try:
        return engine_choice().device
    except EngineError:
        return "cpu"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def describe_plan(spec: LoadSpec, target: str, spans_given: bool = False) -> str:
    """Human-readable plan: cells, requests and the time estimate (for ``--dry-run``)."""
    est = estimate(spec, target)
    lines = [f"{spec.kind} {spec.name!r} on target {target}: {len(est.cells)} cells"
             + (f", workload {spec.workload}" if spec.workload else "")]
    lines += [f"  {c.cell_id:<24} {c.executor:<22} vus={c.vus or '-':<5} requests~{c.requests}" for c in est.cells]
    where = "on this machine's CPU engine" if target == "local" else \
        "if the target were as fast as this machine's CPU engine (a GPU target is far faster)"
    lines.append(f"total ~{est.requests} k6 requests (+{est.probe_requests} probe), "
                 f"est. {_minutes(est.seconds)} {where}")
    lines.append(f"  speed: {est.speed.source}")
    if spec.kind == "capacity":
        lines += describe_search(spec.capacity, spec.slo)
    elif spec.stream:  # a streamed sweep: what each cell's token-level percentiles need
        lines.append("token-level SLO per cell: " + sample_plan_line(spec.slo))
    lines.append("observers: " + ", ".join(observers(spec, target, spans_given)))
    lines += [f"warning: {w}" for w in spec.sample_size_warnings()]
    return "\n".join(lines)


def observers(spec: LoadSpec, target: str, spans_given: bool = False) -> list[str]:
    """What watches the run beside k6 (each costs CPU: docs/timing.md, "Observer overhead"). ``spans_given``:
    the caller passes a span receiver the target already exports to."""
    o = spec.observe
    out = ["k6 (every request, X-Request-Id)"]
    if o.traces and target == "local":
        out.append("OTLP server spans" + (" + engine start-up spans" if o.detailed_traces else ""))
    elif spans_given:
        out.append("OTLP server spans (the caller's receiver)")
    if o.edge:
        e = o.edge
        limit = f"limit_req {e.rate_limit_rps:g} r/s burst {e.rate_limit_rps * e.burst_multiplier:g}" if e.rate_limit_rps else "no rate limit"
        out.append(f"local edge (nginx, {'TLS' if e.tls else 'plain HTTP'}, {limit}, JSON access log)")
    if o.prometheus and target == "local":
        out.append("Prometheus (1 s scrapes, the platform's alert rules)")
    elif o.sampler_interval_s:
        out.append(f"/metrics sampler every {o.sampler_interval_s:g} s")
    return out
