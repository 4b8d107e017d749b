"""The two-GPU evidence (data/legacy-evidence/2026-11-27-h100x2-vllm0.24-spans-msr) re-judged from its
raw files with the project's own readers and capacity rule: a change to read_k6, read_spans or
judge_step that would alter a recorded GPU verdict fails here."""
import json
from pathlib import Path

import pytest

from inferlab.analysis import capacity
from inferlab.ingest import read_k6
from inferlab.ingest.spans import read_spans

D = Path(__file__).resolve().parents[2] / "data" / "legacy-evidence" / "2026-11-27-h100x2-vllm0.24-spans-msr"


@pytest.mark.parametrize("search", ["msr-single", "msr-single-gpu1", "msr-double"])
def test_step_verdicts_reproduce(search):
    steps = []
    for line in (D / search / "steps.jsonl").read_text().splitlines():
        r = json.loads(line)
        df = read_k6(D / search / f"step{r['n']:02d}-{r['cell']}.ndjson.gz")
        step = capacity.judge_step(df[df["phase"] == "measure"], r["dropped"], r["rate"], 2000, 0.01, 5, 20, 0.95)
        assert (step.passed, step.p95_ms) == (r["passed"], pytest.approx(r["p95_ms"]))
        steps.append(step)
    assert capacity.msr_summary(steps)["msr"] == json.loads((D / search / "result.json").read_text())["msr"]


def test_two_replicas_within_15_percent_of_twice_one():
    msr = {s: json.loads((D / s / "result.json").read_text())["msr"] for s in ("msr-single", "msr-double")}
    assert abs(msr["msr-double"] / (2 * msr["msr-single"]) - 1) <= 0.15


def test_one_request_span_per_request_with_latency_attributes():
    spans = read_spans(D / "spans" / "spans.otlp.jsonl")
    req = spans[spans["name"] == "llm_request"]
    client = [json.loads(x) for x in (D / "spans" / "spans_client.jsonl").read_text().splitlines()]
    assert sorted(req["request_id"]) == sorted(c["x_request_id"] for c in client)
    cols = ["ttft_ms", "queue_ms", "prefill_ms", "decode_ms", "e2e_ms", "prompt_tokens", "completion_tokens"]
    assert req[cols].notna().all().all()
