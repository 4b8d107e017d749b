"""``inferlab tune --objective energy``: the fixed-rate load each candidate runs, whether this
machine can witness its energy at all, and a trial's result.

The load: the tune spec's ``energy.spec``, a sweep whose workload arrives open loop at a constant
or Poisson rate (specs/workload.py), so every candidate is offered the same requests/s whatever
it can sustain: a candidate that falls behind serves fewer good requests and pays for it in J per
good request. ``--rate`` (or ``energy.rate``) states that rate; where it differs from the
workload's own, a copy of the workload at that rate is written once into the tune's folder
(``workload-<name>.yaml``, read-only) and the spec points at it, so the runs record the file
they ran (its sha256 is in each run's manifest, as any workload's).

The witness: energy comes from NVML's counter on the host the engine runs on (telemetry/energy.py),
or, on Kubernetes, from DCGM through the spec's ``observe.prometheus_url``. A tune that could not
get a single reading is refused before its first trial, naming why: a local engine on the CPU,
no NVML on this host (pynvml missing or no NVIDIA driver), a k8s target without a Prometheus URL.

Decision: the objective of a run is a ratio of totals (analysis/energy.energy_objective): its
cells' energy over their good requests; a run without a figure, or without a good request, is a
failed trial (with the reason), never a number made up to rank it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..runs.store import write_once
from ..specs import LoadSpec, SpecError, resolve_spec
from ..specs.tune import TuneSpec
from ..specs.workload import Constant, Poisson, load_workload, workload_path
from ..targets.engine import engine_choice
from ..telemetry.samplers import load_nvml


def energy_load(spec: TuneSpec, rate: float | None) -> tuple[LoadSpec, dict[str, Any]]:
    """The fixed-rate spec every candidate runs, as the spec names it (nothing written yet:
    :func:`pin_rate` does that), and what the record says of it (metric, rate, arrival,
    workload). ``rate``: ``--rate``, else ``energy.rate``, else the workload's own."""
    e = spec.energy
    if e is None:
        raise SpecError(f"tune spec {spec.name!r} has no `energy` section: --objective energy needs the fixed-rate "
                         "load it measures each candidate at (energy.spec: a sweep with an open-loop workload)")
    load = resolve_spec(e.spec, sets=e.set)
    w = load_workload(load.workload) if load.kind == "sweep" and load.workload else None
    if w is None or not isinstance(w.arrival, Constant | Poisson):
        raise SpecError(f"tune spec {spec.name!r}: energy.spec {e.spec!r} must be a sweep whose workload arrives "
                         "open loop at a constant or Poisson rate (the fixed rate every candidate is offered)")
    info = {"metric": e.metric, "rate": rate or e.rate or w.arrival.rate, "arrival": w.arrival.kind,
            "workload": load.workload, "workload_rate": w.arrival.rate}
    return load, info


def pin_rate(load: LoadSpec, info: dict[str, Any], folder: Path) -> tuple[LoadSpec, dict[str, Any]]:
    """``load`` at ``info``'s rate: where it differs from the workload's own, the workload's file
    with ``arrival.rate`` replaced, written once in ``folder`` (an existing copy, a resumed
    tune's, must hold the same bytes), and the spec pointing at it. ``info`` gains the resolved
    spec every trial runs."""
    if info["rate"] != info["workload_rate"]:
        data = yaml.safe_load(workload_path(info["workload"]).read_text())
        data["arrival"]["rate"] = info["rate"]
        text = (f"# written by inferlab tune --objective energy: {info['workload']} at {info['rate']:g} requests/s\n"
                + yaml.safe_dump(data, sort_keys=False)).encode()
        path = folder / f"workload-{data['name']}.yaml"
        if not path.exists():
            write_once(path, text)
        elif path.read_bytes() != text:
            raise RuntimeError(f"{path}: the fixed-rate workload of this tune changed since it was written")
        load_workload(str(path))  # the copy validates as the original did
        load = load.model_copy(update={"workload": str(path)})
    return load, {**info, "spec": load.model_dump(mode="json")}


def energy_objective_text(info: dict[str, Any]) -> str:
    """The record's ``objective`` sentence of an energy tune."""
    what = "J per good (in-SLO) request" if info["metric"] == "j_per_good_request" else "J per successful output token"
    return (f"{what}, lower is better, at a fixed {info['rate']:g} requests/s ({info['arrival']} arrivals, workload "
            f"{info['workload']}), from the GPUs' energy over each cell's steady window (analysis/energy.py); a "
            "candidate whose run has no energy reading or no good request is a failed trial")


def energy_witness(target: str, load: LoadSpec) -> str:
    """Why no run of this tune could have an energy reading ('' when one can): the tune refuses
    (RuntimeError) before its first trial, naming why."""
    if target == "k8s":
        if load.observe.prometheus_url:
            return ""
        return ("--objective energy on k8s reads DCGM's energy series through the cluster's Prometheus: set "
                "observe.prometheus_url in energy.set (e.g. observe.prometheus_url=http://...)")
    if target == "local":
        choice = engine_choice()
        if choice.cpu:
            return ("--objective energy needs GPU energy readings (NVML's counter on a GPU host), and the local engine "
                    "runs on the CPU (INFERLAB_ENGINE_DEVICE=cpu): no run of this tune would have a reading. Run it on "
                    "a GPU host with --engine-python/--engine-device cuda")
    if load_nvml() is None:
        return ("--objective energy needs GPU energy readings, and NVML is not available on this machine (no pynvml, "
                "or no NVIDIA driver): a CPU-only host has no energy counter to read")
    return ""


def energy_trial(run, metric: str) -> tuple[float | None, dict[str, Any], str]:
    """A trial's (objective value, figures, reason) from its run (analysis/energy.energy_objective)."""
    from ..analysis.energy import energy_objective

    out = energy_objective(run, metric)
    value, reason = out.pop("value"), out.pop("reason")
    return value, out, reason
