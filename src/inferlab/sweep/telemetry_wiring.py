"""Which telemetry watches a run, started and stopped around its cells: the server's time series
(Prometheus or the 1 s /metrics sampler, telemetry/server_series.py), nvidia-smi + NVML on a GPU
host, psutil always; and, on a cluster, the ingress controller's access log for the run's window."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import psutil

from ..runs.layout import INGRESS_LOG, unique_name
from ..runs.store import RunWriter
from ..specs import ObserveSpec
from ..targets.session import TargetSession
from ..telemetry.prometheus import PLATFORM, TEST
from ..telemetry.samplers import HostSampler, NvidiaSmiLogger, NvmlSampler
from ..telemetry.server_series import ServerSeries


def k6_children() -> list[int]:
    """PIDs of the k6 processes this sweep runs now (one per execution segment)."""
    out = []
    for child in psutil.Process().children():
        try:
            if child.name() == "k6":
                out.append(child.pid)
        except psutil.Error:
            continue
    return out


class RunTelemetry:
    """A context manager: on enter, the server series then every sampler that applies; on exit,
    the samplers in reverse, then the series (saves the window, stops Prometheus). Notes the
    series made (rule profile, scrape failures, a failed save) go into the manifest once."""

    def __init__(self, w: RunWriter, session: TargetSession, observe: ObserveSpec) -> None:
        self.w = w
        self.series = ServerSeries(
            w, session.base_url, session.headers(), observe, session.ca_file or session.verify_tls,
            rule_profile=TEST if observe.alert_profile == "test" else PLATFORM,
            cluster_prometheus=observe.prometheus_url if session.kind == "k8s" else None)
        self.samplers = [HostSampler(w.dir / unique_name(w.dir, "telemetry/host.csv"),
                                     lambda: {**session.pids, "k6": k6_children()})]
        if NvidiaSmiLogger.available():
            self.samplers.append(NvidiaSmiLogger(w.dir / unique_name(w.dir, "telemetry/nvidia-smi.csv")))
        if NvmlSampler.available():
            self.samplers.append(NvmlSampler(w.dir / unique_name(w.dir, "telemetry/nvml.csv")))
        elif not w.manifest.host.gpus:
            # a resumed run says it once
            w.note(f"no GPU telemetry: {w.manifest.host.gpu_note}; CPU/memory sampled with psutil")

    def __enter__(self) -> RunTelemetry:
        # one stack: a sampler that fails to start (or Ctrl-C between two) still stops the ones
        # already running, Prometheus included
        with contextlib.ExitStack() as stack:
            stack.callback(self._notes)
            stack.enter_context(self.series)  # first: Prometheus' window covers the whole run
            for s in self.samplers:
                stack.enter_context(s)
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc) -> None:
        self._stack.__exit__(*exc)

    def _notes(self) -> None:
        for note in self.series.notes:
            self.w.note(note)


def controller_log(w: RunWriter, session: TargetSession, since: datetime) -> None:
    """k8s through the ingress: the ingress-nginx controller's access log for the run's window,
    kept as ``edge/ingress-access.log`` (the edge table's source on a cluster). A cluster whose
    controller cannot be read leaves a note, never a failed run."""
    if session.edge_log is None:
        return
    try:
        text = session.edge_log(since, datetime.now(UTC))
    except Exception as exc:  # noqa: BLE001 - RBAC, no ingress-nginx: the report says the join is missing
        w.manifest.notes.append(f"ingress controller access log not collected: {type(exc).__name__}: {exc}"[:300])
        return
    w.write_text(unique_name(w.dir, INGRESS_LOG), text)
