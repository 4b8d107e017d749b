"""The stand-in's OpenAI surface over real HTTP (httpx): auth, chat with and without SSE,
answers, limits, tokenize, and the command line that takes vLLM's arguments."""

import json
import time

import httpx
import pytest

from inferlab.load.workload import calibrate
from inferlab.standin import StandIn, StandInConfig, standin_argv
from inferlab.standin.config import parse_args

CHAT = "/v1/chat/completions"


def body(content: str = "Explain what a GPU is in two sentences.", **extra) -> dict:
    return {"model": "smollm2", "messages": [{"role": "user", "content": content}], "max_tokens": 8, **extra}


@pytest.fixture(scope="module")
def server():
    with StandIn(tpot_ms=10, api_key="secret") as s:
        yield s


def test_health_models_and_the_key_guards_v1_only(server):
    assert httpx.get(f"{server.base_url}/health").status_code == 200
    assert httpx.get(f"{server.base_url}/v1/models").status_code == 401
    assert httpx.post(f"{server.base_url}{CHAT}", json=body(), headers={"Authorization": "Bearer wrong"}).json() == \
        {"error": "Unauthorized"}
    models = httpx.get(f"{server.base_url}/v1/models", headers=server.headers()).json()
    assert [m["id"] for m in models["data"]] == ["smollm2"]
    assert httpx.get(f"{server.base_url}/metrics").status_code == 200  # open, as vLLM's
    assert httpx.get(f"{server.base_url}/version").json()["version"].startswith("standin-")


def test_a_plain_answer_is_deterministic_and_honours_max_tokens(server):
    r = httpx.post(f"{server.base_url}{CHAT}", json=body(), headers={**server.headers(), "X-Request-Id": "t.a.m0"})
    doc = r.json()
    assert r.status_code == 200 and doc["id"] == "chatcmpl-t.a.m0" and doc["object"] == "chat.completion"
    assert doc["usage"]["completion_tokens"] == 8 and doc["choices"][0]["finish_reason"] == "length"
    text = doc["choices"][0]["message"]["content"]
    assert len(text.split()) == 8
    again = httpx.post(f"{server.base_url}{CHAT}", json=body(temperature=0.7), headers=server.headers()).json()
    assert again["choices"][0]["message"]["content"] == text  # same prompt, same answer
    other = httpx.post(f"{server.base_url}{CHAT}", json=body("Something else."), headers=server.headers()).json()
    assert other["choices"][0]["message"]["content"] != text
    # prompt tokens: words and punctuation + the chat template (4 a message, 3 for the answer's turn)
    assert doc["usage"]["prompt_tokens"] == 9 + 4 + 3
    tok = httpx.post(f"{server.base_url}/tokenize", json={"model": "smollm2", "messages": body()["messages"],
                                                          "add_generation_prompt": True}).json()
    assert tok["count"] == doc["usage"]["prompt_tokens"] == len(tok["tokens"])
    cal = calibrate(server.base_url, server.api_key, "smollm2")  # the workload calibration reads /tokenize
    assert (cal["method"], cal["tokens_per_word"], cal["message_tokens"]) == ("tokenize", 1.0, 4.0)


def test_a_stream_sends_one_event_per_token_as_it_is_made_then_usage_and_done(server):
    stamps, events = [], []
    t0 = time.perf_counter()
    with httpx.stream("POST", f"{server.base_url}{CHAT}", headers=server.headers(),
                      json=body(max_tokens=6, stream=True, stream_options={"include_usage": True})) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data:"):
                events.append(line[5:].strip())
                stamps.append(time.perf_counter() - t0)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    content = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert len(content) == 6 and content[-1]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 6
    # per-token timing: the events come as the tokens are made (5 gaps of 10 ms), not in one burst;
    # the bound is loose because a busy client reads late and catches up
    token_times = [stamps[i] for i, e in enumerate(events[:-1]) if chunks[i] in content]
    assert token_times[-1] >= 5 * 0.010 and token_times[-1] - token_times[0] >= 2 * 0.010
    plain = httpx.post(f"{server.base_url}{CHAT}", json=body(max_tokens=6, logprobs=True),
                       headers=server.headers()).json()
    assert "".join(c["choices"][0]["delta"]["content"] for c in content) == plain["choices"][0]["message"]["content"]
    # log-probabilities, when asked, are as deterministic as the text
    lps = [e["logprob"] for e in plain["choices"][0]["logprobs"]["content"]]
    assert len(lps) == 6 and all(-2 < lp <= 0 for lp in lps) and content[0]["choices"][0]["logprobs"] is None
    again = httpx.post(f"{server.base_url}{CHAT}", json=body(max_tokens=6, logprobs=True, stream=True),
                       headers=server.headers()).text
    streamed = [json.loads(ln[5:])["choices"][0]["logprobs"]["content"][0]["logprob"] for ln in again.splitlines()
                if ln.startswith("data:") and '"logprobs":{' in ln]
    assert streamed == lps


def test_refusals_as_vllm_answers_them(server):
    h = server.headers()
    assert httpx.post(f"{server.base_url}{CHAT}", json=body(model="other"), headers=h).status_code == 404
    assert httpx.post(f"{server.base_url}{CHAT}", json=body(max_tokens=5000), headers=h).status_code == 400
    assert httpx.post(f"{server.base_url}{CHAT}", content=b"{not json", headers=h).status_code == 400
    assert httpx.get(f"{server.base_url}/nothing").status_code == 404


def test_eos_and_output_seed_change_the_answer_not_its_timing_model():
    with StandIn(tpot_ms=1, eos_tokens=4) as s, StandIn(tpot_ms=1, output_seed=7) as other:
        stop = httpx.post(f"{s.base_url}{CHAT}", json=body(max_tokens=50)).json()
        assert stop["choices"][0]["finish_reason"] == "stop" and 2 <= stop["usage"]["completion_tokens"] <= 6
        forced = httpx.post(f"{s.base_url}{CHAT}", json=body(max_tokens=50, ignore_eos=True)).json()
        assert forced["usage"]["completion_tokens"] == 50
        a = httpx.post(f"{s.base_url}{CHAT}", json=body(ignore_eos=True)).json()["choices"][0]["message"]["content"]
        b = httpx.post(f"{other.base_url}{CHAT}", json=body()).json()["choices"][0]["message"]["content"]
        assert a != b


def test_the_command_line_takes_vllm_arguments(monkeypatch):
    monkeypatch.setenv("VLLM_API_KEY", "from-env")
    cfg, ignored = parse_args(["--port", "0", "--max-model-len", "2048", "--max-num-seqs", "1", "--enforce-eager",
                               "--dtype", "float32", "--no-enable-prefix-caching", "--tpot-ms", "3.5"])
    assert (cfg.slots, cfg.max_model_len, cfg.enable_prefix_caching, cfg.tpot_ms) == (1, 2048, False, 3.5)
    assert cfg.api_key == "from-env" and ignored == ["--enforce-eager", "--dtype", "float32"]
    argv = standin_argv(cfg)
    assert argv[1:3] == ["-m", "inferlab.standin"]
    assert "from-env" not in argv  # the key travels in $VLLM_API_KEY (standin_env), never on argv
    assert parse_args(argv[3:])[0] == cfg  # the flags (and the environment) give the same configuration back
    with pytest.raises(ValueError):
        StandInConfig(slots=0)
