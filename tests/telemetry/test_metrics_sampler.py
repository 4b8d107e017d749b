"""The 1 s /metrics sampler against a real loopback HTTP server (a recorded vLLM 0.32 scrape
behind a bearer key): the file format, pacing, failed scrapes, a writer killed mid-file, the
key kept out of the record, and ServerSeries choosing the sampler without Prometheus."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import pytest

from inferlab.ingest.series import SCRAPE_HEADER, read_samples, read_series
from inferlab.specs.models import ObserveSpec
from inferlab.telemetry.metrics_sampler import SAMPLES_FILE, MetricsSampler, ScrapeTarget
from inferlab.telemetry.server_series import ServerSeries

from .serve_metrics import MetricsServer, advancing
from .test_prometheus import new_writer

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "prometheus-query" / "vllm-0.32.0-metrics.prom"
KEY = "sampler-test-key-0123456789"


@pytest.fixture
def server():
    with MetricsServer(advancing(FIXTURE.read_text()), KEY) as srv:
        yield srv


def test_samples_are_timestamped_raw_scrapes_on_a_fixed_schedule(tmp_path, server):
    out = tmp_path / "m.prom.gz"
    target = ScrapeTarget("vllm", f"{server.base_url}/metrics", {"Authorization": f"Bearer {KEY}"})
    with MetricsSampler(out, [target], interval_s=0.2) as s:
        time.sleep(1.1)
    assert 5 <= s.scrapes <= 7 and s.failures == 0
    text = gzip.decompress(out.read_bytes()).decode()
    headers = [ln for ln in text.splitlines() if ln.startswith("# inferlab-scrape")]
    assert len(headers) == s.scrapes and all(SCRAPE_HEADER.match(h) for h in headers)
    assert FIXTURE.read_text().splitlines()[0] in text  # the body byte for byte
    assert KEY not in text
    raw = read_samples(out)
    assert set(raw["job"]) == {"vllm"} and raw["name"].str.startswith("vllm:").all()
    ts = raw["ts"].drop_duplicates().sort_values()
    gaps = ts.diff().dt.total_seconds().dropna()
    assert gaps.between(0.1, 0.35).all(), gaps.tolist()
    rate = read_series(out, window_s=0.2)
    gen = rate[(rate["family"] == "vllm:generation_tokens") & (rate["kind"] == "rate")]
    assert gen["value"].median() == pytest.approx(7 / 0.2, rel=0.3)  # +7 per scrape, a scrape per 0.2 s


def test_failed_scrapes_are_headers_without_samples(tmp_path, server):
    out = tmp_path / "m.prom.gz"
    targets = [ScrapeTarget("vllm", f"{server.base_url}/metrics", {"Authorization": "Bearer wrong"}),
               ScrapeTarget("gone", "http://127.0.0.1:9/metrics")]
    with MetricsSampler(out, targets, interval_s=0.3, timeout_s=1) as s:
        time.sleep(0.5)
    assert s.failures == s.scrapes >= 2
    text = gzip.decompress(out.read_bytes()).decode()
    assert "status=401" in text and "status=error" in text
    raw = read_samples(out)
    assert raw.empty and "scrapes failed" in raw.attrs["ingest"]["notes"][0]


def test_a_sampler_killed_mid_file_still_reads_to_its_last_scrape(tmp_path, server):
    out = tmp_path / "m.prom.gz"
    with MetricsSampler(out, [ScrapeTarget("vllm", f"{server.base_url}/metrics", {"Authorization": f"Bearer {KEY}"})],
                        interval_s=0.2) as s:
        time.sleep(0.7)
        cut = out.read_bytes()  # what a killed writer leaves: sync-flushed blocks, no gzip trailer
    cut_path = tmp_path / "cut.prom.gz"
    cut_path.write_bytes(cut)
    raw = read_samples(cut_path)
    assert raw["ts"].nunique() >= 2
    assert any("ends early" in n for n in raw.attrs["ingest"]["notes"])
    assert raw["ts"].nunique() <= s.scrapes


def test_interval_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="interval_s"):
        MetricsSampler(tmp_path / "x", [], interval_s=0)


def test_server_series_without_prometheus_runs_the_sampler_into_the_run(tmp_path, server):
    w = new_writer(tmp_path)
    observe = ObserveSpec(prometheus=False, sampler_interval_s=0.2)
    with ServerSeries(w, server.base_url, {"Authorization": f"Bearer {KEY}"}, observe) as ss:
        assert ss.prometheus is None
        time.sleep(0.5)
    p = w.dir / SAMPLES_FILE
    assert p.is_file() and p.stat().st_mode & 0o222 == 0  # sealed: the writer records it at the next checkpoint
    with ServerSeries(w, server.base_url, {"Authorization": f"Bearer {KEY}"}, observe):  # a resumed session
        time.sleep(0.3)
    assert (w.dir / "telemetry/metrics-samples-resume1.prom.gz").is_file()
    w.checkpoint()
    assert {f.path for f in w.manifest.files} >= {SAMPLES_FILE, "telemetry/metrics-samples-resume1.prom.gz"}


def test_no_observer_when_both_are_off(tmp_path, server):
    w = new_writer(tmp_path)
    with ServerSeries(w, server.base_url, {}, ObserveSpec(prometheus=False, sampler_interval_s=None)) as ss:
        pass
    assert ss.sampler is None and ss.prometheus is None and not (w.dir / "telemetry").exists()
