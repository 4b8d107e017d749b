"""Real-engine evidence for the answer check: which engine flags change greedy answers.

Starts the local vLLM CPU engine once per configuration (ci-tiny's size when the evidence was
recorded: --max-model-len 1024 --enforce-eager, VLLM_CPU_KVCACHE_SPACE=1, in vLLM's own process
layout, not ci-tiny's one process; plus the configuration's flags), runs the
shipped prompt set (greedy, 32 tokens) as the answer check does, and writes every pass's answer
file plus ``findings.json`` (each comparison's DiffResult) into ``--out``:

- per configuration: pass 1 at 8 in flight, pass 2 at 8 in flight on the same engine (prefix
  cache warm when caching is on: the control's "same engine" case); the first configuration also
  pass 3 at 1 in flight (batching off; the slowest pass, so only once);
- across configurations: each configuration's pass 1 against the default's pass 1.

    .venv/bin/python scripts/answers_evidence.py --out data/answers-evidence \
        default= noprefix=--no-enable-prefix-caching   # (fp32=--dtype,float32 adds a configuration)

One engine start (~30-60 s on 2 cores) and ~3 passes per configuration: run it when nothing else does.
"""

from __future__ import annotations

import argparse
import json
import secrets
import tempfile
from pathlib import Path

from inferlab.analysis.answers import diff_answers
from inferlab.ingest.answers import read_answers
from inferlab.probe.answers import collect
from inferlab.runs.answer_record import LOGPROB_ABS_TOL
from inferlab.specs import EngineSpec
from inferlab.specs.answer_prompts import NAME, SHA256, load_prompt_set
from inferlab.targets.engine import EngineError, LocalEngine

BASE_ARGS = ["--max-model-len", "1024", "--enforce-eager"]
PASSES = [("c8", 8), ("c8-again", 8), ("c1", 1)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("configs", nargs="+", help="NAME=FLAG,VALUE,... (commas separate argv items; empty: defaults)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--max-tokens", type=int, default=32)
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    prompts = load_prompt_set()
    order = [p.id for p in prompts]
    key = secrets.token_hex(16)
    findings: dict = {"prompt_set": NAME, "sha256": SHA256, "max_tokens": a.max_tokens, "temperature": 0,
                      "base_args": BASE_ARGS, "configs": {}, "comparisons": []}
    for item in a.configs:
        name, _, flags = item.partition("=")
        extra = [f for f in flags.split(",") if f]
        spec = EngineSpec(args=[*BASE_ARGS, *extra], env={"VLLM_CPU_KVCACHE_SPACE": "1"})
        with tempfile.TemporaryDirectory() as tmp:
            try:
                with LocalEngine(spec, key, Path(tmp) / "engine.log") as eng:
                    findings["configs"][name] = {"args": eng.engine_args, "version": eng.version()}
                    first = item == a.configs[0]
                    for tag, conc in PASSES if first else PASSES[:2]:  # the 1-in-flight pass once
                        data = collect(eng.base_url, key, spec.served_model_name, prompts, a.max_tokens, conc, tag=tag)
                        (out / f"{name}-{tag}.jsonl").write_bytes(data)
                        print(f"{name} {tag}: {sum(x.ok for x in read_answers(out / f'{name}-{tag}.jsonl'))} answered",
                              flush=True)
            except EngineError as exc:
                findings["configs"][name] = {"args": [*BASE_ARGS, *extra], "error": str(exc)[-1500:]}
                print(f"{name}: engine failed: {str(exc)[-400:]}", flush=True)
                continue

    def cmp(x: str, y: str, what: str) -> None:
        fx, fy = out / f"{x}.jsonl", out / f"{y}.jsonl"
        if fx.exists() and fy.exists():
            d = diff_answers(read_answers(fx), read_answers(fy), LOGPROB_ABS_TOL, order=order)
            findings["comparisons"].append({"what": what, "a": x, "b": y, **d.model_dump(mode="json")})
            print(f"{what}: {d.summary}; max |dlogprob| {d.max_logprob_diff}", flush=True)

    names = [n for n, c in findings["configs"].items() if "error" not in c]
    for n in names:
        cmp(f"{n}-c8", f"{n}-c8-again", f"{n}: A/A at 8 in flight, same engine (second pass)")
        cmp(f"{n}-c8", f"{n}-c1", f"{n}: 8 in flight vs 1 (batching)")
    for n in names[1:]:
        cmp(f"{names[0]}-c8", f"{n}-c8", f"{names[0]} vs {n} at 8 in flight")
    (out / "findings.json").write_text(json.dumps(findings, indent=1) + "\n")


if __name__ == "__main__":
    main()
