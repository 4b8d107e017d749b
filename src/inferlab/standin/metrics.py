"""``/metrics`` of the stand-in: vLLM 0.32's metric names, labels and histogram buckets.

The families inferlab reads (``ingest.prometheus.VLLM_METRICS``, the alert rules, the
dashboards): request and token counters, running/waiting gauges, TTFT, inter-token, TPOT, e2e,
queue, prefill, decode and inference histograms, prefix-cache counters. Labels ``engine="0"``
and ``model_name``, and ``finished_reason`` on request_success, as vLLM sets them. KV-cache
usage is the running requests' tokens over a nominal 64k-token cache; preemptions stay 0.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from .stats import RequestRecord

FINISHED_REASONS = ("stop", "length", "abort", "error", "repetition")
KV_CACHE_TOKENS = 65536
# vLLM 0.32's buckets (v1/metrics/loggers.py), as in tests/fixtures/prometheus-query/vllm-0.32.0-metrics.prom
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                40.0, 80.0, 160.0, 640.0, 2560.0)
TOKEN_TIME_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                      40.0, 80.0)
REQUEST_TIME_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
                        240.0, 480.0, 960.0, 1920.0, 7680.0)
TOKEN_COUNT_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
# record field -> (histogram name, help, buckets)
REQUEST_HISTOGRAMS = {
    "ttft_s": ("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", TTFT_BUCKETS),
    "e2e_s": ("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", REQUEST_TIME_BUCKETS),
    "queue_s": ("vllm:request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.",
                REQUEST_TIME_BUCKETS),
    "prefill_s": ("vllm:request_prefill_time_seconds", "Histogram of time spent in PREFILL phase for request.",
                  REQUEST_TIME_BUCKETS),
    "decode_s": ("vllm:request_decode_time_seconds", "Histogram of time spent in DECODE phase for request.",
                 REQUEST_TIME_BUCKETS),
    "service_s": ("vllm:request_inference_time_seconds", "Histogram of time spent in RUNNING phase for request.",
                  REQUEST_TIME_BUCKETS),
    "prompt_tokens": ("vllm:request_prompt_tokens", "Number of prefill tokens processed.", TOKEN_COUNT_BUCKETS),
    "completion_tokens": ("vllm:request_generation_tokens", "Number of generation tokens processed.",
                          TOKEN_COUNT_BUCKETS),
}


class Metrics:
    """vLLM's metric families in a registry of their own; ``running``/``waiting``/``kv_tokens``
    are read at scrape time."""

    def __init__(self, model_name: str, running: Callable[[], int], waiting: Callable[[], int],
                 kv_tokens: Callable[[], int]) -> None:
        self.registry = r = CollectorRegistry()
        labels = {"engine": "0", "model_name": model_name}
        names = list(labels)

        def gauge(name: str, doc: str, fn: Callable[[], float]) -> None:
            Gauge(name, doc, names, registry=r).labels(**labels).set_function(fn)

        def counter(name: str, doc: str):
            return Counter(name, doc, names, registry=r).labels(**labels)

        gauge("vllm:num_requests_running", "Number of requests in model execution batches.", running)
        gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", waiting)
        gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.",
              lambda: min(1.0, kv_tokens() / KV_CACHE_TOKENS))
        self.prompt_tokens = counter("vllm:prompt_tokens", "Number of prefill tokens processed.")
        self.generation_tokens = counter("vllm:generation_tokens", "Number of generation tokens processed.")
        self.cache_queries = counter("vllm:prefix_cache_queries",
                                     "Prefix cache queries, in terms of number of queried tokens.")
        self.cache_hits = counter("vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.")
        self.prompt_tokens_cached = counter("vllm:prompt_tokens_cached", "Number of cached prompt tokens.")
        counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.")
        success = Counter("vllm:request_success", "Count of successfully processed requests.",
                          [*names, "finished_reason"], registry=r)
        self.success = {reason: success.labels(**labels, finished_reason=reason) for reason in FINISHED_REASONS}
        self.request = {field: Histogram(name, doc, names, buckets=buckets, registry=r).labels(**labels)
                        for field, (name, doc, buckets) in REQUEST_HISTOGRAMS.items()}
        self.itl = Histogram("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.",
                             names, buckets=TOKEN_TIME_BUCKETS, registry=r).labels(**labels)
        self.tpot = Histogram("vllm:request_time_per_output_token_seconds",
                              "Histogram of time_per_output_token_seconds per request.", names,
                              buckets=TOKEN_TIME_BUCKETS, registry=r).labels(**labels)

    def token(self, gap_s: float | None) -> None:
        """One generated token; ``gap_s`` since the request's previous one (None for the first)."""
        self.generation_tokens.inc()
        if gap_s is not None:
            self.itl.observe(gap_s)

    def finished(self, rec: RequestRecord) -> None:
        """A request answered in full: its counters and histograms. Decision: a request the
        client left is not counted (vLLM's stats see only requests the engine finished)."""
        self.success[rec.finish_reason or "length"].inc()
        self.prompt_tokens.inc(rec.prompt_tokens)
        self.cache_queries.inc(rec.prompt_tokens)
        self.cache_hits.inc(rec.cached_tokens)
        self.prompt_tokens_cached.inc(rec.cached_tokens)
        for field, hist in self.request.items():
            value = getattr(rec, field)
            if value is not None:
                hist.observe(value)
        if rec.completion_tokens > 1 and rec.decode_s is not None:
            self.tpot.observe(rec.decode_s / (rec.completion_tokens - 1))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
