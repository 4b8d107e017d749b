"""Save a run window's series from a Prometheus into the run record (write-once).

Used twice: by the local Prometheus (:mod:`.prometheus`) at the end of a run, and on Kubernetes
with the cluster's Prometheus URL (vLLM and DCGM series per pod). Either way the run gets the
same files, the Prometheus HTTP API responses byte for byte (gzip'd)::

    server/prometheus/<name>-<chunk>.json.gz   /api/v1/query_range responses (chunk 000, 001, ...);
                                               server/prometheus-cluster/ for the cluster's
    server/prometheus/metadata.json            /api/v1/metadata (metric types, for the reader)
    server/prometheus/meta.json                what was asked: source, URL, window, step, queries,
                                               rule profile; the files written

Decision: range queries rather than a TSDB snapshot: a snapshot needs the admin API and a
Prometheus of the same format to read it back, and a cluster's Prometheus cannot be snapshotted
per run. A query_range answer is capped at 11,000 points per series, so long windows are
split into chunks of at most ``MAX_POINTS`` steps. A resumed run writes ``prometheus-resume<N>/``.
"""

from __future__ import annotations

import gzip
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from ..runs.layout import unique_name
from ..runs.store import RunWriter

PROM_DIR = "server/prometheus"  # the local Prometheus' window
CLUSTER_DIR = "server/prometheus-cluster"  # the cluster Prometheus' window (k8s)
MAX_POINTS = 10_000  # Prometheus refuses more than 11,000 points per series in one query_range
VLLM_QUERY = '{__name__=~"vllm:.+"}'
DCGM_QUERY = '{__name__=~"DCGM_FI_.+"}'
ALERTS_QUERY = "ALERTS"
CLUSTER_QUERIES = {"vllm": VLLM_QUERY, "dcgm": DCGM_QUERY, "alerts": ALERTS_QUERY}


class PrometheusQueryError(RuntimeError):
    """A Prometheus did not answer a query with status "success"."""


def query_range(client: httpx.Client, base_url: str, query: str, start: datetime, end: datetime,
                step_s: float) -> bytes:
    """The raw body of ``/api/v1/query_range``; raises unless HTTP 200 and status "success"."""
    url = f"{base_url.rstrip('/')}/api/v1/query_range"
    r = client.get(url, params={"query": query, "start": f"{start.timestamp():.3f}",
                                "end": f"{end.timestamp():.3f}", "step": f"{step_s:g}s"})
    try:
        ok = r.status_code == 200 and r.json().get("status") == "success"
    except ValueError:
        ok = False
    if not ok:
        raise PrometheusQueryError(f"{url} query={query!r}: HTTP {r.status_code}: {r.text[:300]}")
    return r.content


def chunks(start: datetime, end: datetime, step_s: float, max_points: int = MAX_POINTS) -> list[tuple[datetime, datetime]]:
    """[start, end] cut into consecutive ranges of at most ``max_points`` steps (no overlap:
    each chunk starts one step after the previous one ended)."""
    span = timedelta(seconds=step_s * (max_points - 1))
    out, s = [], start
    while True:
        e = min(end, s + span)
        out.append((s, e))
        if e >= end:
            return out
        s = e + timedelta(seconds=step_s)


def save_window(w: RunWriter, base_url: str, start: datetime, end: datetime, queries: dict[str, str],
                step_s: float = 1.0, headers: dict[str, str] | None = None, verify_tls: bool | str = True,
                source: str = "cluster", extra_meta: dict[str, Any] | None = None, timeout_s: float = 60,
                folder: str = PROM_DIR) -> str:
    """Query ``queries`` ({file stem: PromQL}) over [start, end] and write the answers into the
    run; returns the folder written (``folder`` or a ``-resume<N>`` sibling). A query
    that fails is recorded in meta.json's ``errors`` and the others are still saved."""
    if end <= start:
        raise ValueError(f"empty window: start {start.isoformat()} >= end {end.isoformat()}")
    # whole steps: answers sit on an epoch-aligned grid, and the last point is at or after
    # ``end`` (a grid starting at ``start`` could end up to a step before it and miss the last
    # evaluation, e.g. an alert that began firing in the window's final second)
    start = datetime.fromtimestamp(math.floor(start.timestamp() / step_s) * step_s, UTC)
    end = datetime.fromtimestamp(math.ceil(end.timestamp() / step_s) * step_s, UTC)
    folder = unique_name(w.dir, folder)
    files, errors = [], {}
    with httpx.Client(headers=headers or {}, verify=verify_tls, timeout=timeout_s) as client:
        for stem, query in queries.items():
            for i, (s, e) in enumerate(chunks(start, end, step_s)):
                try:
                    body = query_range(client, base_url, query, s, e, step_s)
                except (httpx.HTTPError, PrometheusQueryError) as exc:
                    errors[f"{stem}-{i:03d}"] = f"{type(exc).__name__}: {exc}"[:500]
                    continue
                rel = f"{folder}/{stem}-{i:03d}.json.gz"
                w.write_bytes(rel, gzip.compress(body, mtime=0))
                files.append(rel)
        try:
            r = client.get(f"{base_url.rstrip('/')}/api/v1/metadata")
            if r.status_code == 200:
                w.write_bytes(f"{folder}/metadata.json", r.content)
                files.append(f"{folder}/metadata.json")
        except httpx.HTTPError as exc:
            errors["metadata"] = f"{type(exc).__name__}: {exc}"[:500]
    meta = {"schema": "inferlab.prometheus-window/1", "source": source, "prometheus_url": base_url,
            "start": start.astimezone(UTC).isoformat(), "end": end.astimezone(UTC).isoformat(), "step_s": step_s,
            "queries": queries, "files": files, "errors": errors, **(extra_meta or {})}
    w.write_text(f"{folder}/meta.json", json.dumps(meta, indent=2, default=str) + "\n")
    return folder


def save_cluster_window(w: RunWriter, prometheus_url: str, start: datetime, end: datetime,
                        headers: dict[str, str] | None = None, verify_tls: bool | str = True,
                        namespace: str | None = None) -> str:
    """Kubernetes: the cluster Prometheus' vLLM and DCGM series and ALERTS over the run window.
    ``namespace`` narrows the vLLM series to the run's namespace. DCGM series are not narrowed:
    how the exporter's pod/namespace labels arrive depends on the cluster's relabelling (the
    reader keeps every label, so the report can pick the run's pods). Step: 1 s, coarser only
    for windows over ~11 days (more than 100 chunks)."""
    queries = dict(CLUSTER_QUERIES)
    if namespace:
        queries["vllm"] = f'{{__name__=~"vllm:.+",namespace="{namespace}"}}'
    step = max(1.0, math.ceil((end - start).total_seconds() / (MAX_POINTS * 100)))  # >100 chunks: coarser steps
    return save_window(w, prometheus_url, start, end, queries, step_s=step, headers=headers, verify_tls=verify_tls,
                       source="cluster", folder=CLUSTER_DIR)
