"""read_spans on real vLLM 0.32 OTLP/JSON files (tests/fixtures/otlp-vllm-0.32, see its README)."""

from __future__ import annotations

import gzip
import json
import os

import numpy as np
import pandas as pd
import pytest

from inferlab.ingest import IngestError, TruncatedLineWarning
from inferlab.ingest.spans import ATTRIBUTES, COLUMNS, read_spans

FILES = ["probe/spans.otlp.jsonl.gz", "cells/short-c1/spans.otlp.jsonl.gz", "cells/short-c4/spans.otlp.jsonl.gz"]
RUN = "20261127T000000Z-local-otlpfix"
# what vLLM 0.32's llm_request span carries (v1/engine/output_processor.py do_tracing), as observed
VLLM_032_REQUEST_ATTRIBUTES = {
    "gen_ai.request.id", "gen_ai.latency.time_to_first_token", "gen_ai.latency.e2e", "gen_ai.latency.time_in_queue",
    "gen_ai.latency.time_in_model_prefill", "gen_ai.latency.time_in_model_decode",
    "gen_ai.latency.time_in_model_inference", "gen_ai.usage.prompt_tokens", "gen_ai.usage.completion_tokens",
    "gen_ai.request.top_p", "gen_ai.request.max_tokens", "gen_ai.request.temperature", "gen_ai.request.n",
}


@pytest.fixture
def otlp(fixtures):
    return fixtures / "otlp-vllm-0.32"


@pytest.fixture
def spans(otlp) -> pd.DataFrame:
    return pd.concat([read_spans(otlp / f).assign(file=f) for f in FILES], ignore_index=True)


def test_golden(spans, otlp):
    """The whole table, against the golden CSV (UPDATE_GOLDENS=1 rewrites it, then fails)."""
    golden = otlp / "golden" / "spans.csv"
    if os.environ.get("UPDATE_GOLDENS") == "1":
        golden.parent.mkdir(exist_ok=True)
        spans.to_csv(golden, index=False)
        pytest.fail(f"{golden} rewritten: review the diff, then run without UPDATE_GOLDENS")
    want = pd.read_csv(golden, keep_default_na=False, na_values=[""])
    got = pd.read_csv(pd.io.common.StringIO(spans.to_csv(index=False)), keep_default_na=False, na_values=[""])
    pd.testing.assert_frame_equal(got, want)


def test_shape_and_counts(spans):
    assert list(spans.columns[:-1]) == COLUMNS
    assert str(spans["start_ts"].dtype) == "datetime64[ns, UTC]"
    req = spans[spans["name"] == "llm_request"]
    assert len(spans) == 34 and len(req) == 22  # 12 start-up spans, 2 probe, 4 + 16 cell requests
    assert req["request_id"].notna().all() and spans.loc[spans["name"] != "llm_request", "request_id"].isna().all()
    assert (req["request_id"].str.startswith("chatcmpl-")).sum() == 0  # the prefix is removed
    cell = req[req["file"] != FILES[0]]
    assert cell["request_id"].str.fullmatch(rf"{RUN}\.short-c[14]\.(m\d+|w0-\d+)").all()
    assert cell["request_id"].is_unique
    assert spans["trace_id"].str.fullmatch(r"[0-9a-f]{32}").all() and spans["span_id"].str.fullmatch(r"[0-9a-f]{16}").all()


def test_vllm_032_attribute_names(otlp):
    """Every llm_request span carries exactly these attributes (docs/timing.md lists them)."""
    seen = set()
    for f in FILES:
        for line in gzip.open(otlp / f):
            for rs in json.loads(line)["resourceSpans"]:
                for ss in rs["scopeSpans"]:
                    for s in ss["spans"]:
                        if s["name"] == "llm_request":
                            keys = {a["key"] for a in s["attributes"]}
                            assert keys == VLLM_032_REQUEST_ATTRIBUTES, keys ^ VLLM_032_REQUEST_ATTRIBUTES
                            seen.add(s["name"])
    assert seen == {"llm_request"}
    assert VLLM_032_REQUEST_ATTRIBUTES - {"gen_ai.request.id"} <= set(ATTRIBUTES)  # each has a column


def test_units_and_internal_consistency(spans):
    """Seconds became ms: e2e is the span's own length (start = arrival, end = the finishing
    iteration), TTFT contains prefill, inference = prefill + decode, tokens as sent."""
    req = spans[spans["name"] == "llm_request"]
    assert np.allclose(req["e2e_ms"], req["span_ms"], atol=5)
    assert (req["e2e_ms"] > 100).all() and (req["e2e_ms"] < 10_000).all()  # ms, not s
    assert (req["ttft_ms"] >= req["prefill_ms"]).all()
    assert np.allclose(req["inference_ms"], req["prefill_ms"] + req["decode_ms"], atol=0.01)
    assert (req["completion_tokens"] == 16).all() and (req["max_tokens"] == 16).all()
    assert (req["prompt_tokens"] > 0).all()
    assert json.loads(req["resource"].iloc[0])["vllm.instrumenting_module_name"] == "vllm.llm_engine"
    start = spans[spans["name"] == "Overall Loading"]
    assert len(start) == 1 and start["span_ms"].item() > 1000 and json.loads(start["attributes"].item())["code.function"]


def _lines(otlp) -> list[str]:
    return gzip.open(otlp / FILES[1], "rt").read().splitlines()


def test_malformed_line_names_file_line(tmp_path, otlp):
    lines = _lines(otlp)
    p = tmp_path / "s.jsonl"
    p.write_text("\n".join([lines[0], '{"resourceSpans": [', *lines[1:]]) + "\n")
    with pytest.raises(IngestError, match=r"s\.jsonl:2: expected an OTLP/JSON ExportTraceServiceRequest"):
        read_spans(p)


@pytest.mark.parametrize(("edit", "field"), [
    (lambda s: s.pop("startTimeUnixNano"), "span field startTimeUnixNano"),
    (lambda s: s.update(endTimeUnixNano="soon"), "span times/kind as integers"),
    (lambda s: s.update(endTimeUnixNano="18446744073709551615"), "outside 0 to 2\\*\\*63-1 ns"),  # uint64 max
    (lambda s: s.update(startTimeUnixNano=str(2 ** 63)), "outside 0 to 2\\*\\*63-1 ns"),
    (lambda s: s["attributes"][1].update(value={"stringValue": "fast"}), "gen_ai.latency.e2e: a number"),
    (lambda s: s["attributes"].append({"key": "x", "value": {"weirdValue": 1}}), "unknown AnyValue"),
])
def test_bad_field_names_it(tmp_path, otlp, edit, field):
    lines = _lines(otlp)
    doc = json.loads(lines[2])
    edit(doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0])
    p = tmp_path / "s.jsonl"
    p.write_text("\n".join([*lines[:2], json.dumps(doc), *lines[3:]]) + "\n")
    with pytest.raises(IngestError, match=r"s\.jsonl:3: .*bad field: .*" + field.replace("(", r"\(")):
        read_spans(p)


def test_not_otlp_json(tmp_path):
    p = tmp_path / "s.jsonl"
    p.write_text('{"resourceSpans": {"not": "a list"}}\n')
    with pytest.raises(IngestError, match="s.jsonl:1: .*resourceSpans: a list"):
        read_spans(p)


def test_truncated_tail_skipped_blank_counted_empty_file(tmp_path, otlp):
    lines = _lines(otlp)
    p = tmp_path / "s.jsonl"
    p.write_text("\n".join([lines[0], "", lines[1]]) + "\n" + lines[2][:100])
    with pytest.warns(TruncatedLineWarning):
        df = read_spans(p)
    assert len(df) == 2
    assert df.attrs["ingest"] | {"notes": None, "path": None} == {
        "path": None, "lines_read": 4, "lines_used": 2, "lines_skipped": 2, "notes": None}
    empty = tmp_path / "e.jsonl"
    empty.write_bytes(b"")
    df = read_spans(empty)
    assert df.empty and list(df.columns) == COLUMNS
    assert str(df["start_ts"].dtype) == str(read_spans(otlp / FILES[0])["start_ts"].dtype) == "datetime64[ns, UTC]"
