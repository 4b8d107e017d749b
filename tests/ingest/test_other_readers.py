import json

import numpy as np
import pandas as pd
import pytest

from inferlab.ingest import (
    IngestError,
    TruncatedLineWarning,
    counter_delta,
    histogram_delta,
    histogram_quantile,
    read_k6_summary,
    read_nvidia_smi,
    read_probe,
    read_prometheus_text,
)


# --- k6 summary -------------------------------------------------------------------------
def test_summary_rows_and_threshold_semantics(tmp_path, fixtures):
    df = read_k6_summary(fixtures / "k6-1.1.0" / "short_c1.summary.json")
    p99 = df[(df.metric == "http_req_duration") & (df.stat == "p(99)")]["value"].item()
    assert p99 > 0
    doc = json.loads((fixtures / "k6-1.1.0" / "short_c1.summary.json").read_text())
    doc["metrics"]["http_req_duration"]["thresholds"] = {"p(95)<100": True, "p(95)<5000": False}
    p = tmp_path / "s.json"
    p.write_text(json.dumps(doc))
    th = {t["threshold"]: t["passed"] for t in read_k6_summary(p).attrs["thresholds"]}
    assert th == {"p(95)<100": False, "p(95)<5000": True}  # in the file, true means FAILED


def test_summary_bad_input(tmp_path):
    p = tmp_path / "s.json"
    p.write_text('{"metrics": ')
    with pytest.raises(IngestError, match="summary-export"):
        read_k6_summary(p)
    p.write_text('{"root_group": {}}')
    with pytest.raises(IngestError, match="'metrics'"):
        read_k6_summary(p)


# --- nvidia-smi ---------------------------------------------------------------------------
def test_nvidia_smi_reference(fixtures):
    df = read_nvidia_smi(fixtures / "nvidia-smi-580" / "h200-matmul.csv")
    assert set(df.metric) == {"utilization_gpu_pct", "utilization_memory_pct", "memory_used_mib",
                              "memory_total_mib", "temperature_gpu_c", "power_draw_w"}
    util = df[df.metric == "utilization_gpu_pct"]["value"]
    assert util.max() == 100 and util.min() == 0  # idle -> matmul at 100 % -> idle
    assert str(df.ts.dt.tz) == "UTC" and (df.gpu_index == 0).all()
    assert df[df.metric == "memory_total_mib"]["value"].iloc[0] == 143771


def test_nvidia_smi_nounits_subset_order_na_multi_gpu_offset(tmp_path):
    p = tmp_path / "smi.csv"
    p.write_text("timestamp, index, power.draw, utilization.gpu\n"
                 "2026/11/26 21:50:48.769, 0, 77.36, 5\n"
                 "2026/11/26 21:50:48.769, 1, [N/A], [Not Supported]\n")
    df = read_nvidia_smi(p, utc_offset_minutes=60)
    assert df.ts.iloc[0] == pd.Timestamp("2026-11-26 20:50:48.769", tz="UTC")
    assert sorted(df.gpu_index.unique()) == [0, 1]
    assert set(df.metric) == {"power_draw", "utilization_gpu"}  # nounits: no unit in the header
    gpu1 = df[df.gpu_index == 1]
    assert len(gpu1) == 2 and gpu1["value"].isna().all()  # N/A kept as NaN rows


def test_nvidia_smi_bad_header_and_value(tmp_path, fixtures):
    p = tmp_path / "x.csv"
    p.write_bytes((fixtures / "k6-1.1.0" / "short_c1.summary.json").read_bytes())
    with pytest.raises(IngestError, match=r"x.csv:1: expected an nvidia-smi"):
        read_nvidia_smi(p)
    p.write_text("timestamp, power.draw [W]\n2026/11/26 20:50:48.769, 77 W\n2026/11/26 20:50:49.769, lots W\n")
    with pytest.raises(IngestError, match=r"x.csv:3: expected a number"):
        read_nvidia_smi(p)


def test_nvidia_smi_truncated_tail(tmp_path, fixtures):
    text = (fixtures / "nvidia-smi-580" / "h200-matmul.csv").read_text()
    p = tmp_path / "t.csv"
    p.write_text(text + "2026/11/26 20:51:48.769, 3")
    with pytest.warns(TruncatedLineWarning):
        df = read_nvidia_smi(p)
    assert df.attrs["ingest"]["lines_skipped"] == 1


# --- probe ---------------------------------------------------------------------------------
def test_probe_legacy_fields(fixtures):
    reqs, gaps = read_probe(fixtures / "probe" / "idle-legacy.jsonl")
    assert len(reqs) == 20 and reqs["ok"].all()
    assert reqs["ttft_ms"].median() == pytest.approx(15.4, abs=0.5)  # the fixture's idle probe: 15.4 ms
    assert (reqs["headers_ms"] < reqs["ttft_ms"]).all()  # TTFB is not TTFT
    assert len(gaps) == sum(reqs["chunks"] - 1)
    assert gaps["itl_ms"].gt(0).all()


def test_probe_v1_fields(fixtures):
    reqs, gaps = read_probe(fixtures / "probe" / "v1-local.jsonl")
    assert reqs["completion_tokens"].iloc[0] == 64
    assert str(reqs["sent_ts"].dt.tz) == "UTC"
    r = reqs.iloc[0]
    assert r["tpot_ms"] == pytest.approx((r["e2e_ms"] - r["ttft_ms"]) / 63, rel=1e-6)


def test_probe_bad_and_truncated(tmp_path, fixtures):
    good = (fixtures / "probe" / "idle-legacy.jsonl").read_text().splitlines()
    p = tmp_path / "p.jsonl"
    p.write_text("\n".join(good[:2] + ['{"foo": 1}'] + good[2:]) + "\n")
    with pytest.raises(IngestError, match=r"p.jsonl:3: expected a probe record"):
        read_probe(p)
    p.write_text("\n".join(good[:3]) + "\n" + good[3][:50])
    with pytest.warns(TruncatedLineWarning):
        reqs, _ = read_probe(p)
    assert len(reqs) == 3


# --- Prometheus ----------------------------------------------------------------------------
def test_prometheus_deltas_match_the_matrix(fixtures):
    b = read_prometheus_text(fixtures / "vllm-0.24.0" / "metrics_before.prom")
    a = read_prometheus_text(fixtures / "vllm-0.24.0" / "metrics_after.prom")
    assert counter_delta(b, a, "request_success") == 1584
    assert counter_delta(b, a, "generation_tokens") == 253440
    assert counter_delta(b, a, "request_success", finished_reason="length") == 1584
    h = histogram_delta(b, a, "ttft_seconds")
    assert h["count"].iloc[-1] == 1584 and np.isinf(h["le"].iloc[-1])


def test_histogram_quantile_known_answer():
    b = pd.DataFrame({"le": [0.1, 0.2, 0.4, np.inf], "count": [0, 50, 100, 100]})
    assert histogram_quantile(b, 0.5) == pytest.approx(0.2)
    assert histogram_quantile(b, 0.25) == pytest.approx(0.15)
    assert histogram_quantile(b, 0.75) == pytest.approx(0.3)


def test_prometheus_garbage(tmp_path, fixtures):
    p = tmp_path / "m.prom"
    p.write_bytes((fixtures / "nvidia-smi-580" / "h200-matmul.csv").read_bytes())
    with pytest.raises(IngestError, match="Prometheus text"):
        read_prometheus_text(p)


def _prom_lines(fixtures):
    return (fixtures / "vllm-0.24.0" / "metrics_after.prom").read_text().splitlines()


def _samples(df):
    return df[["family", "sample", "labels", "le", "value"]].reset_index(drop=True)


@pytest.mark.parametrize("cut", [len('http_request_duration_seconds_created{handler="/v1/ch'),  # mid-label
                                 len('http_request_duration_seconds_created{handler="/v1/chat/completions",'
                                     'method="POST"} 1.79')])  # mid-number: parses, but to a wrong value
def test_prometheus_truncated_final_line_is_tolerated_warned_and_counted(tmp_path, fixtures, cut):
    lines = _prom_lines(fixtures)
    assert lines[-1].startswith("http_request_duration_seconds_created{")
    p = tmp_path / "m.prom"
    p.write_text("\n".join(lines) + "\n")
    full = read_prometheus_text(p)
    p.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:cut])  # the writer died mid-line
    with pytest.warns(TruncatedLineWarning, match=rf"m.prom:{len(lines)}: truncated final line skipped"):
        df = read_prometheus_text(p)
    stats = df.attrs["ingest"]
    assert stats["lines_read"] == len(lines) and stats["lines_skipped"] == 1
    assert stats["lines_used"] == full.attrs["ingest"]["lines_used"] - 1
    assert stats["notes"] == [f"{p}:{len(lines)}: truncated final line skipped"]
    pd.testing.assert_frame_equal(_samples(df), _samples(full).iloc[:-1])  # only the cut sample is gone
    b = read_prometheus_text(fixtures / "vllm-0.24.0" / "metrics_before.prom")
    assert counter_delta(b, df, "request_success") == 1584  # the deltas are untouched


def test_prometheus_truncated_line_in_the_middle_is_an_error(tmp_path, fixtures):
    lines = _prom_lines(fixtures)
    i = next(n for n, l in enumerate(lines) if l.startswith("vllm:generation_tokens_total{"))
    lines[i] = lines[i][:30]  # 'vllm:generation_tokens_total{e': cut inside the label set
    p = tmp_path / "m.prom"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(IngestError, match=rf"m.prom:{i + 1}: expected Prometheus text"):
        read_prometheus_text(p)
    p.write_text("\n".join(lines))  # and also when the last line is cut as well
    with pytest.raises(IngestError, match=rf"m.prom:{i + 1}: expected Prometheus text"), \
            pytest.warns(TruncatedLineWarning):
        read_prometheus_text(p)


def test_prometheus_complete_file_has_no_warning_and_invalid_utf8_is_an_error(tmp_path, fixtures):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        df = read_prometheus_text(fixtures / "vllm-0.24.0" / "metrics_after.prom")
    assert df.attrs["ingest"]["lines_skipped"] == 0
    data = (fixtures / "vllm-0.24.0" / "metrics_after.prom").read_bytes()
    data = data.replace(b'model_name="smollm2"', b'model_name="smoll\xe9m2"', 1)
    p = tmp_path / "m.prom"
    p.write_bytes(data)
    line = data[: data.index(b"\xe9")].count(b"\n") + 1
    with pytest.raises(IngestError, match=rf"m.prom:{line}: expected valid UTF-8, but byte 0xe9"):
        read_prometheus_text(p)


def test_probe_invalid_utf8_is_an_error_and_blank_lines_are_noted(tmp_path, fixtures):
    good = (fixtures / "probe" / "idle-legacy.jsonl").read_bytes().splitlines()
    p = tmp_path / "p.jsonl"
    p.write_bytes(b"\n".join(good[:2] + [b""] + good[2:]) + b"\n")
    reqs, _ = read_probe(p)
    assert len(reqs) == 20 and reqs.attrs["ingest"]["notes"] == [f"{p}:3: blank line skipped"]
    bad = good[4].replace(b'"status"', b'"st\xfftus"', 1)
    p.write_bytes(b"\n".join(good[:4] + [bad] + good[5:]) + b"\n")
    with pytest.raises(IngestError, match=r"p.jsonl:5: expected valid UTF-8, but byte 0xff"):
        read_probe(p)
