"""Sweep and stress specs: strict pydantic models (a typo is an error that names the field).

A leaf module: it imports only pydantic and yaml, so every stage (targets, load, runs, the
orchestrator) can use the spec without importing each other. ``StrictModel`` (specs/base.py) is
the one strict base of the project's own configs and records; it is importable from here too.

A spec says *what load* to apply (payloads x concurrency x repeats, or an arrival-rate ramp),
the SLO that judges it, the probe, and, for the local target, the engine arguments, so a
baseline and a tuned run differ by one YAML file. Precedence: model defaults < file < CLI
(specs/resolve.py). Which cells a spec runs: specs/planning.py.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .base import StrictModel
from .workload import Trace, Workload, WorkloadError, load_workload


class Payload(StrictModel):
    prompt: str = Field(min_length=1)
    max_tokens: int = Field(gt=0, le=32768)
    ignore_eos: bool = Field(True, description="fixed answer length: every request generates max_tokens")
    temperature: float = Field(0.7, ge=0, le=2)


DEFAULT_PAYLOADS = {
    "short": Payload(prompt="Explain what a GPU is in two sentences.", max_tokens=64),
    "long": Payload(prompt="Write a detailed essay about the history of parallel computing and why GPUs matter for AI.",
                    max_tokens=256),
}


class Slo(StrictModel):
    """Per-request bounds, each held at its own percentile: a request is *good* when it
    succeeds and meets all three (analysis.token_slo). TTFT and TPOT default to p99, as
    MLPerf's server scenario; e2e keeps p95, as before. The older key ``e2e_p95_ms`` still
    reads, as ``e2e_ms`` at ``e2e_p`` 95; a spec that names TTFT/TPOT bounds without
    ``ttft_p``/``tpot_p`` (every spec before these fields) holds them at p99."""

    ttft_ms: float = Field(1000, gt=0, description="per-request time to first token bound")
    ttft_p: float = Field(99, gt=50, lt=100, description="percentile at which ttft_ms must hold (MLPerf server: 99)")
    tpot_ms: float = Field(200, gt=0, description="per-request time per output token bound")
    tpot_p: float = Field(99, gt=50, lt=100, description="percentile at which tpot_ms must hold (MLPerf server: 99)")
    e2e_ms: float = Field(30000, gt=0, description="per-request end-to-end bound (k6's duration; also a k6 threshold)")
    e2e_p: float = Field(95, gt=50, lt=100, description="percentile at which e2e_ms must hold")
    error_rate: float = Field(0.01, ge=0, le=1, description="max failed-request rate (k6 threshold)")

    @model_validator(mode="before")
    @classmethod
    def _older_e2e_key(cls, data):
        """``e2e_p95_ms: X`` (specs and run records before token SLOs) = ``e2e_ms: X, e2e_p: 95``."""
        if not isinstance(data, dict) or "e2e_p95_ms" not in data:
            return data
        if "e2e_ms" in data or data.get("e2e_p", 95) != 95:
            raise ValueError("slo: give e2e_ms (with e2e_p) or the older e2e_p95_ms, not both")
        rest = {k: v for k, v in data.items() if k != "e2e_p95_ms"}
        return {**rest, "e2e_ms": data["e2e_p95_ms"], "e2e_p": 95}


class Ramp(StrictModel):
    start_rate: int = Field(gt=0, description="requests per second at the start")
    end_rate: int = Field(gt=0)
    duration_s: int = Field(gt=0)
    pre_allocated_vus: int = Field(gt=0)
    max_vus: int = Field(gt=0)
    payload: str = "short"

    @model_validator(mode="after")
    def _vus(self) -> Ramp:
        if self.max_vus < self.pre_allocated_vus:
            raise ValueError("ramp.max_vus must be >= ramp.pre_allocated_vus")
        return self


class Capacity(StrictModel):
    """A certified max-sustainable-rate search (docs/capacity.md; analysis/certify.py). Steps
    hold a constant arrival rate; each SLO bound (the ``slo`` section: TTFT, TPOT, e2e at their
    percentiles) is judged by its violations among the steady window's requests.
    *Exploration*: steps of ``explore_requests`` from ``start_rate``, x ``growth`` until one is
    over the SLO, then bisected to ``explore_resolution``. *Certification*: steps at fixed
    multiples of that guess, ascending, each decided sequentially (``n_looks`` looks up to
    ``cap_requests``; a look runs as one k6 segment of the step). ``hold_s``, ``resolution``,
    ``boundary_repeats`` and ``min_achieved`` belong to the legacy bracket search of records
    made before issue 19 and are read, not used."""

    payload: str = "short"
    start_rate: float = Field(2.0, gt=0, description="requests/s of the first step")
    growth: float = Field(2.0, gt=1, description="exploration multiplies the rate by this until a step is over the SLO")
    max_rate: float = Field(10000, gt=0, description="give up (report '> max_rate') above this")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="of the certified lower bound and the boundary interval")
    explore_requests: int | None = Field(None, ge=20, description="requests of an exploration step; None: 20 expected "
                                         "violations at the strictest allowed share, at least 300")
    explore_resolution: float = Field(0.06, gt=0, lt=1, description="bisect exploration until (over - under) / under "
                                      "is below this")
    cap_requests: int | None = Field(None, ge=20, description="requests a certification step may run before it is "
                                     "'undecided' (a fail); None: 200 / (1 - q) of the strictest bound (p95: 4,000, "
                                     "p99: 20,000), the cap at which the rule's power was shown")
    n_looks: int = Field(5, ge=1, le=20, description="looks (k6 segments) a certification step may take up to its cap")
    max_explore_steps: int = Field(20, ge=2)
    cert_grid: list[float] | None = Field(None, min_length=3, description="certification steps as multiples of "
                                          "exploration's boundary guess (also fitted for the interval); None: "
                                          "0.86, 0.92, 0.96, 1.0, 1.04, 1.08, 1.12, 1.16 (the simulated coverage)")
    claim_grid: list[float] | None = Field(None, description="lower certification steps for the claim only (not "
                                           "fitted); None: 0.7, 0.8")
    hold_s: int = Field(30, ge=5, description="legacy bracket search only")
    warmup_s: int = Field(5, ge=0, description="first seconds of each step segment not judged")
    resolution: float = Field(0.1, gt=0, lt=1, description="legacy bracket search only")
    boundary_repeats: int = Field(2, ge=1, le=10, description="legacy bracket search only")
    min_achieved: float = Field(0.95, gt=0, le=1, description="legacy bracket search only")
    pre_allocated_vus: int = Field(64, gt=0, description="VUs started before a step: k6 drops sends while it starts "
                                   "more mid-step, a client artefact, so allocate what the step can need up front")
    max_vus: int = Field(256, gt=0)


class ProbeSpec(StrictModel):
    idle_requests: int = Field(5, ge=0, description="sequential streaming requests before the sweep")
    under_load_requests: int = Field(3, ge=0, description="per cell, sequential, while k6 runs")
    interval_s: float = Field(1.0, ge=0, description="pause between under-load probe requests")
    payload: Payload = Payload(prompt="Say hello and describe the weather.", max_tokens=64)


class EngineSpec(StrictModel):
    """How the local target starts vLLM (ignored for url/k8s targets)."""

    served_model_name: str = "smollm2"
    args: list[str] = Field(default_factory=lambda: ["--max-model-len", "2048"])
    env: dict[str, str] = Field(default_factory=lambda: {"VLLM_CPU_KVCACHE_SPACE": "2"})
    startup_timeout_s: float = Field(420, gt=0)

    @model_validator(mode="after")
    def _no_secrets(self) -> EngineSpec:
        if any(a.startswith("--api-key") for a in self.args) or "VLLM_API_KEY" in self.env:
            raise ValueError("engine.args/env must not carry the API key; it comes from platform/secrets/values/")
        return self


class EdgeSpec(StrictModel):
    """The local edge: Debian nginx in front of the target, configured as the platform's ingress
    (platform/base/vllm-ingress.yaml, ingress-nginx semantics): TLS from a CA the project makes,
    600 s proxy timeouts, buffering off, ``limit_req`` per client address with
    ``burst = rate x burst_multiplier`` and ``nodelay``, rejected with ``limit_status``."""

    tls: bool = True
    rate_limit_rps: float | None = Field(50, gt=0, description="limit-rps annotation; None: no rate limit")
    burst_multiplier: int = Field(5, ge=0, description="limit-burst-multiplier annotation (ingress-nginx default 5)")
    limit_status: int = Field(503, ge=400, le=599, description="limit-req-status-code (ingress-nginx default 503)")
    timeout_s: int = Field(600, gt=0, description="proxy-read/send-timeout annotations")


class ObserveSpec(StrictModel):
    """Observers of a run beside k6. Each costs CPU on a 2-core machine; docs/timing.md
    ("Observer overhead") gives the measured overhead of each (observer on vs off, the A/A method)."""

    traces: bool = Field(True, description="local engine: an OTLP receiver for the run; k8s: the run's spans from the "
                         "tracing component's Collector; vLLM exports one span per request (queue, prefill, "
                         "decode, TTFT), joined to k6's rows by X-Request-Id")
    detailed_traces: bool = Field(False, description="pass --collect-detailed-traces all (vLLM 0.24 on GPU: 48 more "
                                  "start-up spans, compilation and warm-up; 0.32 CPU: no change, its 12 start-up spans "
                                  "come with the endpoint alone)")
    edge: EdgeSpec | None = Field(None, description="run through the local edge (nginx, TLS, limit_req, JSON access log)")
    prometheus: bool = Field(False, description="local: Debian's Prometheus scrapes the engine (and edge) every second "
                             "and evaluates the platform's alert rules; the run window's series go into the run")
    sampler_interval_s: float | None = Field(1.0, gt=0, description="without Prometheus: a /metrics sampler at this "
                                             "interval fills the same server time-series table; None: off")
    alert_profile: Literal["platform", "test"] = Field("platform", description="local Prometheus: `test` caps every "
                                                       "rule's `for:` at 10 s and sets range windows to 20 s (never a "
                                                       "threshold) so alerts show within a short run; the report says so")
    prometheus_url: str | None = Field(None, description="k8s: the cluster's Prometheus base URL; the run window's "
                                       "vLLM, DCGM and ALERTS series are saved into the run (server/prometheus-cluster/)")


class LoadSpec(StrictModel):
    kind: Literal["sweep", "stress", "capacity"] = Field("sweep", description="capacity: a max-sustainable-rate "
                                                         "search (the capacity section), cells planned as it goes")
    name: str = Field(min_length=1, description="label part of the run_id")
    model: str = Field("smollm2", description="the model name requests ask for")
    payloads: dict[str, Payload] = Field(default_factory=lambda: dict(DEFAULT_PAYLOADS))
    use_payloads: list[str] = Field(default_factory=lambda: ["short", "long"])
    concurrency: list[int] = Field(default_factory=lambda: [1, 4], min_length=0)
    payload_concurrency: dict[str, list[int]] = Field(default_factory=dict, description="per payload, VUs that replace "
                                                       "`concurrency` (e.g. long answers only at 4 and 16 VUs)")
    executor: Literal["shared-iterations", "constant-vus"] = "shared-iterations"
    iterations_per_vu: int = Field(6, gt=0, description="shared-iterations: iterations = max(min, per_vu x VUs)")
    min_iterations: int = Field(12, gt=0)
    duration_s: int | None = Field(None, gt=0, description="constant-vus: seconds per cell")
    repeats: int = Field(1, ge=1, le=20)
    warmup_requests: int = Field(2, ge=0, description="requests before a cell's measured phase (k6 setup(), at the "
                                 "cell's concurrency), tagged phase=warmup, excluded from results")
    min_window_requests: int = Field(20, ge=1, description="measured requests inside each closed-loop cell's steady-state "
                                     "window: a cell runs max(min_iterations, iterations_per_vu x VUs, 2 x VUs + this): one round fills "
                                     "the server, one drains it (analysis/window.py)")
    ramp: Ramp | None = None
    capacity: Capacity = Capacity()
    probe: ProbeSpec = ProbeSpec()
    slo: Slo = Slo()
    stream: bool = Field(True, description="requests ask for an SSE stream with the usage chunk at its end, as chat "
                         "clients do (the stream clock times their tokens); False: one JSON answer, as before issue 19")
    engine: EngineSpec = EngineSpec()
    request_timeout_s: int = Field(600, gt=0)
    max_cell_duration_s: int = Field(1800, gt=0)
    tls_skip_verify: bool = False
    observe: ObserveSpec = ObserveSpec()
    workload: str | None = Field(None, description="a workload file or built-in name (lengths, prefixes, sessions, "
                                 "arrivals); None: the payloads above, as before")
    k6_segments: int = Field(1, ge=1, le=64, description="split each cell over N k6 processes (Job pods in-cluster), "
                             "one k6 execution segment each, for more load than one k6 makes; outputs kept per segment")

    @model_validator(mode="after")
    def _consistent(self) -> LoadSpec:
        if self.workload is not None:
            return self._workload_consistent()
        unknown = [p for p in self.use_payloads if p not in self.payloads]
        if unknown:
            raise ValueError(f"use_payloads names {unknown}, not in payloads {sorted(self.payloads)}")
        if self.ramp and self.ramp.payload not in self.payloads:
            raise ValueError(f"ramp.payload {self.ramp.payload!r} is not in payloads")
        if self.capacity.payload not in self.payloads:
            raise ValueError(f"capacity.payload {self.capacity.payload!r} is not in payloads")
        if self.executor == "constant-vus" and not self.duration_s:
            raise ValueError("executor constant-vus needs duration_s")
        if not self.concurrency and not self.ramp and self.kind != "capacity":
            raise ValueError("a spec needs concurrency values or a ramp")
        if any(v <= 0 for v in self.concurrency) or any(v <= 0 for vs in self.payload_concurrency.values() for v in vs):
            raise ValueError("concurrency values must be positive")
        unknown = [p for p in self.payload_concurrency if p not in self.use_payloads]
        if unknown:
            raise ValueError(f"payload_concurrency names {unknown}, not in use_payloads {self.use_payloads}")
        # k6 splits VUs (and iterations) between segments: a cell with fewer VUs than segments
        # would leave some segments idle and the rest carrying everything (measured: [10, 0])
        fewest = min([*self.concurrency, *(v for vs in self.payload_concurrency.values() for v in vs),
                      *([self.ramp.pre_allocated_vus] if self.ramp else [])], default=1)
        if self.k6_segments > fewest:
            raise ValueError(f"k6_segments={self.k6_segments} exceeds the fewest VUs of a cell ({fewest}); "
                             "k6 splits VUs between segments, so each needs at least one")
        return self

    def _workload_consistent(self) -> LoadSpec:
        """A workload replaces payloads, concurrency and ramp: its arrival plans the cells. A
        closed-loop workload may take its VU levels from ``concurrency`` (one cell per level)."""
        try:
            w = load_workload(self.workload)  # type: ignore[arg-type]
        except WorkloadError as exc:
            raise ValueError(str(exc)) from None
        given = self.model_fields_set
        clash = sorted(given & {"ramp", "use_payloads", "payload_concurrency", "executor", "duration_s"})
        if w.open_loop and "concurrency" in given:
            clash.append("concurrency")
        if clash:
            raise ValueError(f"workload {w.name!r} plans the cells ({w.arrival.kind} arrivals): drop {', '.join(clash)}")
        if self.kind == "capacity":  # constant-rate steps of the workload's own length and prefix mix
            if isinstance(w.arrival, Trace) and w.arrival.lengths == "trace":
                raise ValueError(f"workload {w.name!r}: a capacity search draws lengths from the workload's input/output "
                                 "(its steps hold their own constant rate); a trace with lengths: trace has none")
            return self
        if self.kind != "sweep":
            raise ValueError(f"a workload runs in a sweep or a capacity search, not kind {self.kind!r}")
        if any(v <= 0 for v in self.concurrency):
            raise ValueError("concurrency values must be positive")
        fewest = min(workload_vus(self, w))
        if w.open_loop and self.k6_segments > 1:
            # each k6 process times its sends from its own start: segments started moments apart
            # would skew the combined arrival stream while each one's send lag looks fine
            raise ValueError(f"workload {w.name!r} is open loop ({w.arrival.kind} arrivals): one k6 process keeps "
                             "its schedule; k6_segments must be 1")
        if self.k6_segments > min(fewest, w.sessions_per_cell):
            raise ValueError(f"k6_segments={self.k6_segments} exceeds the fewest VUs ({fewest}) or sessions "
                             f"({w.sessions_per_cell}) of a cell")
        return self

    def iterations(self, vus: int) -> int:
        """Measured iterations of a closed-loop cell (warm-up comes on top, in k6 setup())."""
        return max(self.min_iterations, self.iterations_per_vu * vus, 2 * vus + self.min_window_requests)

    def sample_size_warnings(self) -> list[str]:
        """Cells whose steady-state window cannot support the SLO's p95 (n (1 - q) >= 1 needs 20
        requests), with the number needed; p99 needs 100 and is reported as "too few" below that."""
        out = []
        if self.workload is not None:  # the workload's own cells: sessions_per_cell says the size
            return out
        levels = {v for p in self.use_payloads for v in self.payload_concurrency.get(p, self.concurrency)}
        for vus in sorted(levels) if self.executor == "shared-iterations" else []:
            window = self.iterations(vus) - 2 * vus
            if window < 20:
                out.append(f"c{vus}: {window} requests in the steady-state window cannot support a p95 (needs 20: "
                           f"set min_window_requests: 20 or iterations >= {2 * vus + 20})")
        return out


def workload_vus(spec: LoadSpec, w: Workload) -> list[int]:
    """VUs of a workload's cells: closed loop, the spec's ``concurrency`` when given, else the
    workload's ``vus``; open loop, one cell of ``max_vus`` (sessions waiting for their time)."""
    if w.open_loop:
        return [min(w.arrival.max_vus, w.sessions_per_cell)]  # type: ignore[union-attr]
    return list(spec.concurrency) if "concurrency" in spec.model_fields_set else [w.arrival.vus]  # type: ignore[union-attr]
