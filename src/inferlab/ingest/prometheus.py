"""vLLM ``/metrics`` snapshots (Prometheus text) -> tidy samples, and deltas between two.

Parsing is prometheus_client's own parser. vLLM renames metrics between releases (the sample is
0.24, the local CPU engine 0.32); :data:`VLLM_METRICS` is the one place that maps a canonical
name to the names each release uses. Counters are compared as deltas (after - before), summed
over label sets such as ``finished_reason``; histogram bucket deltas give quantiles the way
Prometheus' ``histogram_quantile`` does (linear within a bucket). As for k6, the one defect
tolerated is a truncated final line (no newline at the end): skipped with a
:class:`TruncatedLineWarning` and counted; anything malformed before it is an IngestError.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from prometheus_client.parser import text_string_to_metric_families

from .errors import IngestError, LineStats, attach
from .lines import read_lines

# canonical name -> metric family names, newest release first. Families, not samples:
# prometheus_client strips `_total` from counter families.
VLLM_METRICS: dict[str, list[str]] = {
    "request_success": ["vllm:request_success"],
    "generation_tokens": ["vllm:generation_tokens"],
    "prompt_tokens": ["vllm:prompt_tokens"],
    "ttft_seconds": ["vllm:time_to_first_token_seconds"],
    "itl_seconds": ["vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"],
    "tpot_seconds": ["vllm:request_time_per_output_token_seconds", "vllm:time_per_output_token_seconds"],
    "e2e_seconds": ["vllm:e2e_request_latency_seconds"],
    "queue_seconds": ["vllm:request_queue_time_seconds"],
    "requests_running": ["vllm:num_requests_running"],
    "requests_waiting": ["vllm:num_requests_waiting"],
    "kv_cache_usage": ["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"],
    "preemptions": ["vllm:num_preemptions"],
}
COLUMNS = ["family", "type", "sample", "labels", "le", "value"]


def read_prometheus_text(path: str | Path) -> pd.DataFrame:
    """One row per sample: family, type, sample name, labels (JSON, sorted, without ``le``), le, value."""
    stats = LineStats(str(path))
    # The exposition format ends every line with a newline: the prologue drops a cut last line
    # (scrape aborted, writer killed) even when it still parses, as a sample cut inside its
    # number would read as a wrong value.
    text = "".join(line + "\n" for line in read_lines(path, stats))
    rows = []
    try:
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                labels = dict(s.labels)
                le = labels.pop("le", None)
                rows.append((fam.name, fam.type, s.name, json.dumps(labels, sort_keys=True),
                             float(le) if le is not None else math.nan, float(s.value)))
    except (ValueError, TypeError, IndexError) as exc:
        bad = _first_bad_line(text)
        raise IngestError(path, bad[0] if bad else None, "Prometheus text exposition format", bad[1] if bad else str(exc)) from exc
    if not rows and text.strip():
        raise IngestError(path, 1, "Prometheus text exposition format with at least one sample", text[:80])
    stats.lines_used = sum(1 for ln in text.splitlines() if ln and not ln.startswith("#"))
    return attach(pd.DataFrame(rows, columns=COLUMNS), stats)


def _first_bad_line(text: str) -> tuple[int, str] | None:
    for i, line in enumerate(text.splitlines(), start=1):
        if not line or line.startswith("#"):
            continue
        try:
            list(text_string_to_metric_families(line + "\n"))
        except (ValueError, TypeError, IndexError):
            return i, line
    return None


def resolve(df: pd.DataFrame, canonical: str) -> str | None:
    """The family name this snapshot uses for a canonical vLLM metric, or None."""
    present = set(df["family"])
    return next((n for n in VLLM_METRICS[canonical] if n in present), None)


def counter_delta(before: pd.DataFrame, after: pd.DataFrame, canonical: str, **label_filter: str) -> float:
    """after - before of a counter, summed over its label sets (optionally filtered)."""
    fam = resolve(after, canonical)
    if fam is None:
        return math.nan

    def total(df: pd.DataFrame) -> float:
        s = df[(df["family"] == fam) & df["sample"].str.endswith("_total")]
        for k, v in label_filter.items():
            s = s[s["labels"].map(lambda j: json.loads(j).get(k) == v)]
        return float(s["value"].sum())

    return total(after) - total(before)


def histogram_delta(before: pd.DataFrame, after: pd.DataFrame, canonical: str) -> pd.DataFrame:
    """Cumulative bucket counts (le, count) of after - before, summed over label sets."""
    fam = resolve(after, canonical)
    if fam is None:
        return pd.DataFrame(columns=["le", "count"])

    def buckets(df: pd.DataFrame) -> pd.Series:
        b = df[(df["family"] == fam) & df["sample"].str.endswith("_bucket")]
        return b.groupby("le")["value"].sum()

    d = buckets(after).sub(buckets(before), fill_value=0).sort_index()
    return pd.DataFrame({"le": d.index.to_numpy(), "count": d.to_numpy()})


def histogram_quantile(buckets: pd.DataFrame, q: float) -> float:
    """Prometheus-style quantile from cumulative buckets (le, count); NaN when empty."""
    if buckets.empty or buckets["count"].iloc[-1] <= 0:
        return math.nan
    le, cum = buckets["le"].to_numpy(float), buckets["count"].to_numpy(float)
    rank = q * cum[-1]
    i = int(np.searchsorted(cum, rank, side="left"))
    if i >= len(le) - 1 and math.isinf(le[-1]):
        return float(le[-2]) if len(le) > 1 else math.nan
    lo_le = 0.0 if i == 0 else le[i - 1]
    lo_cum = 0.0 if i == 0 else cum[i - 1]
    width = cum[i] - lo_cum
    return float(lo_le + (le[i] - lo_le) * ((rank - lo_cum) / width if width > 0 else 0.0))
