"""Server time series: the recorded sampler file and the recorded Prometheus answers (same
engine, same window: tests/fixtures/prometheus-query/) give the same tidy table; the window
arithmetic (rates, resets, quantiles) on small files built here; errors name file, line, field;
the Kubernetes path (save_cluster_window) against a loopback server replaying the recording."""

from __future__ import annotations

import gzip
import json
import math
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest

from inferlab.ingest import IngestError
from inferlab.ingest.series import SERIES_COLUMNS, read_samples, read_series
from inferlab.telemetry.prom_query import save_cluster_window

from ..telemetry.test_prometheus import new_writer

REC = Path(__file__).resolve().parents[1] / "fixtures" / "prometheus-query"
QUERY_FILES = [REC / "vllm-000.json.gz", REC / "alerts-000.json.gz", REC / "dcgm-000.json.gz"]
KEY = ["family", "kind", "labels"]


@pytest.fixture(scope="module")
def from_prometheus() -> pd.DataFrame:
    return read_series(QUERY_FILES)


@pytest.fixture(scope="module")
def from_sampler() -> pd.DataFrame:
    return read_series(REC / "metrics-samples.prom.gz")


def test_tidy_columns_and_kinds(from_prometheus):
    df = from_prometheus
    assert list(df.columns) == SERIES_COLUMNS
    assert str(df["ts"].dtype) == "datetime64[ns, UTC]"
    kinds = df.groupby("family")["kind"].agg(set)
    assert kinds["vllm:num_requests_waiting"] == {"gauge"}
    assert kinds["vllm:generation_tokens"] == {"rate"}  # counter -> per-second rate
    assert kinds["vllm:e2e_request_latency_seconds"] == {"rate", "p50", "p95", "p99"}
    assert kinds["ALERTS"] == {"gauge"}
    assert json.loads(df.loc[df["family"] == "vllm:num_requests_waiting", "labels"].iloc[0])["job"] == "vllm"
    assert not df["labels"].str.contains('"instance"').any()
    assert not df["family"].isin(["up", "scrape_duration_seconds"]).any()


def test_both_sources_give_the_same_table(from_prometheus, from_sampler):
    """Same families, kinds and label sets; per-window rates and gauges agree within what the
    two scrape times (<= 1 s apart) can change."""
    p = from_prometheus[from_prometheus["family"] != "ALERTS"]
    assert set(map(tuple, from_sampler[KEY].drop_duplicates().to_numpy())) == set(map(tuple, p[KEY].drop_duplicates().to_numpy()))
    for fam, kind in [("vllm:generation_tokens", "rate"), ("vllm:e2e_request_latency_seconds", "rate")]:
        a, b = (s[(s["family"] == fam) & (s["kind"] == kind)].groupby("ts")["value"].sum() for s in (from_sampler, p))
        both = pd.concat({"s": a, "p": b}, axis=1).dropna()
        assert len(both) >= 3
        assert both["s"].sum() == pytest.approx(both["p"].sum(), rel=0.1)
    w = [s[s["family"] == "vllm:num_requests_waiting"]["value"].max() for s in (from_sampler, p)]
    assert w[0] == w[1] > 50


def test_quantiles_are_bounded_and_ordered(from_prometheus):
    q = from_prometheus[from_prometheus["family"] == "vllm:e2e_request_latency_seconds"]
    wide = q[q["kind"].isin(["p50", "p95", "p99"])].pivot_table(index="ts", columns="kind", values="value")
    assert len(wide) >= 3
    assert ((wide["p50"] <= wide["p95"]) & (wide["p95"] <= wide["p99"])).all()
    assert wide["p95"].max() > 10  # the overload the recording was made under (the e2e alert's threshold)


def _sampler_file(tmp_path: Path, scrapes: list[tuple[str, str]], name: str = "s.prom.gz") -> Path:
    text = "".join(f"# inferlab-scrape ts={ts} job=vllm status=200 elapsed_ms=1.0\n{body}" for ts, body in scrapes)
    p = tmp_path / name
    p.write_bytes(gzip.compress(text.encode()))
    return p


def _scrape(tokens: float, buckets: dict[str, float], waiting: float = 0) -> str:
    lines = ["# TYPE vllm:generation_tokens_total counter", f'vllm:generation_tokens_total{{engine="0"}} {tokens}',
             "# TYPE vllm:num_requests_waiting gauge", f'vllm:num_requests_waiting{{engine="0"}} {waiting}',
             "# TYPE vllm:e2e_request_latency_seconds histogram"]
    lines += [f'vllm:e2e_request_latency_seconds_bucket{{engine="0",le="{le}"}} {n}' for le, n in buckets.items()]
    lines += [f'vllm:e2e_request_latency_seconds_count{{engine="0"}} {buckets["+Inf"]}',
              'vllm:e2e_request_latency_seconds_sum{engine="0"} 1.0']
    return "\n".join(lines) + "\n"


def test_window_arithmetic_rates_resets_and_quantiles(tmp_path):
    b0 = {"1.0": 0, "2.0": 0, "+Inf": 0}
    b1 = {"1.0": 0, "2.0": 10, "+Inf": 10}  # 10 observations in (1, 2]: p50 = 1.5
    p = _sampler_file(tmp_path, [("2026-11-27T10:00:00.5+00:00", _scrape(100, b0)),
                                 ("2026-11-27T10:00:01.5+00:00", _scrape(130, b1, waiting=3)),
                                 ("2026-11-27T10:00:02.5+00:00", _scrape(20, b1))])  # counter reset
    df = read_series(p, window_s=1)
    gen = df[df["family"] == "vllm:generation_tokens"].set_index("ts")["value"]
    assert gen.tolist() == [30.0, 20.0]  # +30 in 1 s; after the reset the new value counts
    assert gen.index[0] == pd.Timestamp("2026-11-27T10:00:02", tz="UTC")  # the window's end
    q = df[df["family"] == "vllm:e2e_request_latency_seconds"].set_index("kind")["value"]
    assert q["p50"] == pytest.approx(1.5) and q["p99"] == pytest.approx(1.99) and q["rate"].tolist() == [10.0, 0.0]
    assert df[df["family"] == "vllm:num_requests_waiting"]["value"].tolist() == [0, 3, 0]


@pytest.mark.parametrize(("text", "line", "match"), [
    ("vllm:x 1\n", 1, "inferlab-scrape"),
    ("# inferlab-scrape ts=2026-13-01T00:00:00+00:00 job=vllm status=200 elapsed_ms=1\n", 1, "field ts"),
    ("# inferlab-scrape ts=2026-11-27T10:00:00 job=vllm status=200 elapsed_ms=1\n", 1, "field ts"),
    ("# inferlab-scrape ts=2026-11-27T10:00:00+00:00 job=vllm status=200 elapsed_ms=1\nvllm:x{a=\"1\"} abc\n", 2,
     "field value"),
    ("# inferlab-scrape ts=2026-11-27T10:00:00+00:00 job=vllm status=200 elapsed_ms=1\nvllm:x 1\nvllm:y{a=1} 2\n", 3,
     "a sample"),
    ("# inferlab-scrape ts=2026-11-27T10:00:00+00:00 job=vllm\n", 1, "header"),
])
def test_sampler_errors_name_file_line_and_field(tmp_path, text, line, match):
    p = tmp_path / "bad.prom.gz"
    p.write_bytes(gzip.compress(text.encode()))
    with pytest.raises(IngestError, match=match) as e:
        read_samples(p)
    assert e.value.line == line and e.value.path == str(p)


@pytest.mark.parametrize(("doc", "match"), [
    ({"status": "error", "error": "bad"}, 'field status: "success"'),
    ({"status": "success", "data": {"resultType": "vector", "result": []}}, "field data.resultType"),
    ({"status": "success", "data": {"resultType": "matrix", "result": [{"metric": {}, "values": []}]}},
     r"field data.result\[0\]"),
    ({"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {"__name__": "vllm:x"}, "values": [[1, "1"], [2, "one"]]}]}}, r"field data.result\[0\].values\[1\]"),
])
def test_query_errors_name_the_field(tmp_path, doc, match):
    p = tmp_path / "q.json.gz"
    p.write_bytes(gzip.compress(json.dumps(doc).encode()))
    with pytest.raises(IngestError, match=match) as e:
        read_samples(p)
    assert e.value.path == str(p)


def test_a_truncated_final_line_is_skipped_and_counted(tmp_path):
    body = "# inferlab-scrape ts=2026-11-27T10:00:00+00:00 job=vllm status=200 elapsed_ms=1\nvllm:x 1\nvllm:y 2"
    p = tmp_path / "t.prom"
    p.write_text(body)
    with pytest.warns(UserWarning, match="truncated final line"):
        raw = read_samples(p)
    assert raw["name"].tolist() == ["vllm:x"] and raw.attrs["ingest"]["lines_skipped"] == 1


# ---- Kubernetes: the cluster Prometheus path, offline -----------------------------------------

class _Replay:
    """A loopback Prometheus stand-in that answers each query_range with the recorded body for
    that query (by the meta.json of the recording) and records what it was asked."""

    def __init__(self) -> None:
        meta = json.loads((REC / "meta.json").read_text())
        by_query = {q: gzip.decompress((REC / f"{stem}-000.json.gz").read_bytes()) for stem, q in meta["queries"].items()}
        self.asked: list[dict] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                u = urlsplit(self.path)
                qs = {k: v[0] for k, v in parse_qs(u.query).items()}
                outer.asked.append({"path": u.path, **qs, "auth": self.headers.get("Authorization")})
                body = (REC / "metadata.json").read_bytes() if u.path == "/api/v1/metadata" else by_query.get(qs.get("query"))
                self.send_response(200 if body else 400)
                self.end_headers()
                self.wfile.write(body or b'{"status":"error","error":"unknown query"}')

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def test_cluster_window_saves_vllm_dcgm_and_alerts_into_the_same_table(tmp_path, from_prometheus):
    meta = json.loads((REC / "meta.json").read_text())
    replay = _Replay()
    try:
        w = new_writer(tmp_path)
        start, end = datetime.fromisoformat(meta["start"]), datetime.fromisoformat(meta["end"])
        folder = save_cluster_window(w, replay.url, start, end, headers={"Authorization": "Bearer cluster-token"})
    finally:
        replay.httpd.shutdown()
    ranges = [a for a in replay.asked if a["path"] == "/api/v1/query_range"]
    assert {a["query"] for a in ranges} == set(meta["queries"].values())
    assert all(a["step"] == "1s" and float(a["start"]) == math.floor(start.timestamp()) and a["auth"] == "Bearer cluster-token"
               for a in ranges)
    saved = json.loads((w.dir / folder / "meta.json").read_text())
    assert saved["source"] == "cluster" and not saved["errors"]
    again = read_series(sorted((w.dir / folder).glob("*-000.json.gz")))
    pd.testing.assert_frame_equal(again.reset_index(drop=True), from_prometheus.reset_index(drop=True))
    assert {"vllm", "dcgm", "alerts"} <= {p.name.split("-")[0] for p in (w.dir / folder).glob("*.json.gz")}


def test_a_failing_query_is_recorded_and_the_rest_saved(tmp_path):
    replay = _Replay()
    try:
        w = new_writer(tmp_path)
        from inferlab.telemetry.prom_query import save_window
        folder = save_window(w, replay.url, datetime(2026, 11, 27, tzinfo=UTC), datetime(2026, 11, 27, 0, 1, tzinfo=UTC),
                             {"nope": "not_a_recorded_query", "alerts": "ALERTS"})
    finally:
        replay.httpd.shutdown()
    saved = json.loads((w.dir / folder / "meta.json").read_text())
    assert "nope-000" in saved["errors"] and f"{folder}/alerts-000.json.gz" in saved["files"]


def test_server_series_saves_the_cluster_window_at_exit(tmp_path):
    from inferlab.specs.models import ObserveSpec
    from inferlab.telemetry.server_series import ServerSeries

    replay = _Replay()
    try:
        w = new_writer(tmp_path)
        off = ObserveSpec(prometheus=False, sampler_interval_s=None)
        with ServerSeries(w, "http://127.0.0.1:9", {}, off, cluster_prometheus=replay.url) as ss:
            pass
    finally:
        replay.httpd.shutdown()
    assert not ss.notes
    meta = json.loads((w.dir / "server/prometheus-cluster/meta.json").read_text())
    assert meta["source"] == "cluster" and set(meta["queries"]) == {"vllm", "dcgm", "alerts"}
