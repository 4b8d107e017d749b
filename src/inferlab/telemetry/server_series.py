"""Server time series for a whole run: the one context manager the runner enters after the
target is up and exits before it stops.

``observe.prometheus``: a :class:`~.prometheus.LocalPrometheus` scrapes the target (and the
edge, as ``extra_targets``) every second and evaluates the platform's alert rules; at exit the
run window goes into ``server/prometheus/``. Otherwise, with ``observe.sampler_interval_s``, a
:class:`~.metrics_sampler.MetricsSampler` writes ``telemetry/metrics-samples.prom.gz``. Either
way ``load_run(...).series`` reads the same table. On Kubernetes, ``cluster_prometheus`` (the
cluster's Prometheus base URL) saves its vLLM, DCGM and ALERTS series for the same window at
exit (:func:`~.prom_query.save_cluster_window`), beside or instead of the above. ``notes`` collects what the manifest should
say (the rule profile, a failed save) for the caller to add.
"""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from ..runs.store import RunWriter
from ..specs.models import ObserveSpec
from .metrics_sampler import SAMPLES_FILE, MetricsSampler, ScrapeTarget
from ..runs.layout import unique_name
from .prom_query import PrometheusQueryError, save_cluster_window
from .prometheus import PLATFORM, LocalPrometheus, RuleProfile


class ServerSeries:
    """``with ServerSeries(w, base_url, headers, observe, verify_tls): ...``

    ``extra_targets``: more /metrics endpoints (the local edge), scraped as their own ``job``.
    ``rule_profile``: how the alert rules are evaluated (``prometheus.TEST`` shortens ``for:``
    and range windows, never thresholds; recorded in the run and in ``notes``)."""

    def __init__(self, w: RunWriter, base_url: str, headers: dict[str, str], observe: ObserveSpec,
                 verify_tls: bool | str = True, extra_targets: list[ScrapeTarget] | None = None,
                 rule_profile: RuleProfile = PLATFORM, cluster_prometheus: str | None = None,
                 cluster_headers: dict[str, str] | None = None, namespace: str | None = None) -> None:
        self.w, self.observe, self.profile = w, observe, rule_profile
        self.cluster = (cluster_prometheus, cluster_headers or {}, namespace) if cluster_prometheus else None
        self.started_at: datetime | None = None
        self.targets = [ScrapeTarget("vllm", f"{base_url.rstrip('/')}/metrics", dict(headers), verify_tls),
                        *(extra_targets or [])]
        self.prometheus: LocalPrometheus | None = None
        self.sampler: MetricsSampler | None = None
        self.notes: list[str] = []
        self.folder: str | None = None  # where the Prometheus window went

    def __enter__(self) -> ServerSeries:
        self.started_at = datetime.now(UTC)
        if self.observe.prometheus:
            self.prometheus = LocalPrometheus(self.targets, self.profile).start()
            try:
                down = {j: h for j, h in self.prometheus.wait_up().items() if h != "up"}
            except BaseException:  # __exit__ does not run when __enter__ raises: stop it here
                self.prometheus.stop()
                raise
            if down:
                self.notes.append(f"local Prometheus: targets not up at start: {down}")
            if self.profile.name != "platform":
                self.notes.append(f"alert rules evaluated under the {self.profile.name!r} profile: `for:` capped at "
                                  f"{self.profile.for_s} s, range windows {self.profile.range_s} s; thresholds as shipped")
        elif self.observe.sampler_interval_s:
            self.sampler = MetricsSampler(self.w.dir / unique_name(self.w.dir, SAMPLES_FILE), self.targets,
                                          self.observe.sampler_interval_s).__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.prometheus is not None:
            try:
                self.folder = self.prometheus.save(self.w, datetime.now(UTC))
            except (PrometheusQueryError, httpx.HTTPError, OSError) as e:
                self.notes.append(f"local Prometheus: saving the run window failed: {e}")
            finally:
                self.prometheus.stop()
        if self.cluster is not None:
            url, headers, namespace = self.cluster
            try:
                save_cluster_window(self.w, url, self.started_at, datetime.now(UTC), headers, namespace=namespace)
            except (httpx.HTTPError, ValueError, OSError) as e:  # query errors are in its meta.json
                self.notes.append(f"cluster Prometheus {url}: saving the run window failed: {type(e).__name__}: {e}")
        if self.sampler is not None:
            self.sampler.__exit__(*exc)
            self.w.seal_file(self.sampler.out)
            if self.sampler.failures:
                self.notes.append(f"/metrics sampler: {self.sampler.failures} of {self.sampler.scrapes} scrapes failed")
