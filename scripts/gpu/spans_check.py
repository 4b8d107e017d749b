"""[M] item 2 on the GPU host: does vLLM 0.24 post one ``llm_request`` span per request, with
``gen_ai.request.id`` = ``chatcmpl-<X-Request-Id>`` and the latency and usage attributes?

Sends N non-streaming and S streaming chat requests (the project's short payload, 4 at a time),
each with a unique X-Request-Id, to a traced engine; waits up to WAIT_S for the spans in the sink's
file (otlp_sink.py); writes ``spans_check.json`` (verdict, attribute names seen, per-request
match) and ``spans_client.jsonl`` (client-side rows) into OUT_DIR.

usage: python3 spans_check.py BASE_URL SPANS_FILE OUT_DIR [N] [S] [WAIT_S]
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import MODEL, SHORT, api_key  # noqa: E402

REQUIRED = ["gen_ai.request.id", "gen_ai.latency.time_to_first_token", "gen_ai.latency.time_in_queue",
            "gen_ai.latency.time_in_model_prefill", "gen_ai.latency.time_in_model_decode", "gen_ai.latency.e2e",
            "gen_ai.usage.prompt_tokens", "gen_ai.usage.completion_tokens"]
PREFIX = "gpu-spans."


def send(base: str, rid: str, stream: bool, key: str) -> dict:
    body = {"model": MODEL, "messages": [{"role": "user", "content": SHORT["prompt"]}],
            "max_tokens": SHORT["max_tokens"], "ignore_eos": SHORT["ignore_eos"], "temperature": SHORT["temperature"],
            "stream": stream}
    req = urllib.request.Request(f"{base}/v1/chat/completions", data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}",
                                          "X-Request-Id": rid})
    t0 = time.time()
    with urllib.request.urlopen(req, timeout=60) as r:
        raw = r.read()
        status = r.status
    t1 = time.time()
    if stream:
        first = next(json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: {"))
        resp_id = first.get("id")
    else:
        resp_id = json.loads(raw).get("id")
    return {"x_request_id": rid, "stream": stream, "status": status, "response_id": resp_id,
            "start": t0, "end": t1, "e2e_ms": round((t1 - t0) * 1000, 2)}


def read_spans(path: Path) -> list[dict]:
    spans = []
    if not path.exists():
        return spans
    for line in path.read_text().splitlines():
        for rs in json.loads(line).get("resourceSpans", []):
            for ss in rs.get("scopeSpans", []):
                for sp in ss.get("spans", []):
                    attrs = {a["key"]: next(iter(a["value"].values()), None) for a in sp.get("attributes", [])}
                    spans.append({"name": sp.get("name"), "attributes": attrs,
                                  "scope": ss.get("scope", {}).get("name")})
    return spans


def main(base: str, spans_file: Path, out: Path, n: int = 16, s: int = 4, wait_s: float = 30) -> int:
    key = api_key()
    ids = [(f"{PREFIX}m{i}", False) for i in range(n)] + [(f"{PREFIX}s{i}", True) for i in range(s)]
    with ThreadPoolExecutor(4) as pool:
        rows = list(pool.map(lambda a: send(base, a[0], a[1], key), ids))
    want = {f"chatcmpl-{rid}" for rid, _ in ids}
    deadline = time.monotonic() + wait_s
    while True:
        spans = read_spans(spans_file)
        got = {sp["attributes"].get("gen_ai.request.id") for sp in spans if sp["name"] == "llm_request"}
        if want <= got or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    req_spans = [sp for sp in spans if sp["name"] == "llm_request" and sp["attributes"].get("gen_ai.request.id") in want]
    per_id = {}
    for sp in req_spans:
        per_id.setdefault(sp["attributes"]["gen_ai.request.id"], []).append(sp)
    names_seen = sorted({k for sp in req_spans for k in sp["attributes"]})
    missing = {k: sum(k not in sp["attributes"] for sp in req_spans) for k in REQUIRED}
    for r in rows:
        sp = per_id.get(f"chatcmpl-{r['x_request_id']}", [])
        r["spans"] = len(sp)
        r["response_id_matches"] = r["response_id"] == f"chatcmpl-{r['x_request_id']}"
        if sp:
            a = sp[0]["attributes"]
            r["span_e2e_ms"] = round(float(a.get("gen_ai.latency.e2e", "nan")) * 1000, 2)
            r["span_ttft_ms"] = round(float(a.get("gen_ai.latency.time_to_first_token", "nan")) * 1000, 2)
    verdict = (all(r["status"] == 200 for r in rows) and all(r["spans"] == 1 for r in rows)
               and not any(missing.values()))
    result = {
        "verdict": "PASS" if verdict else "FAIL",
        "requests": len(rows), "request_spans_matched": len(req_spans),
        "one_span_per_request": all(r["spans"] == 1 for r in rows),
        "response_id_is_chatcmpl_x_request_id": all(r["response_id_matches"] for r in rows),
        "required_attributes": REQUIRED, "required_missing_counts": missing,
        "llm_request_attribute_names_seen": names_seen,
        "other_span_names_seen": sorted({sp["name"] for sp in spans if sp["name"] != "llm_request"}),
        "scopes_seen": sorted({str(sp["scope"]) for sp in spans}),
        "spans_total_in_file": len(spans),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "spans_check.json").write_text(json.dumps(result, indent=1))
    (out / "spans_client.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(json.dumps(result, indent=1))
    return 0 if verdict else 1


if __name__ == "__main__":
    a = sys.argv[1:]
    sys.exit(main(a[0], Path(a[1]), Path(a[2]), *(int(x) for x in a[3:5]), *(float(x) for x in a[5:6])))
