"""Max sustainable rate (MSR) of one target on the GPU host: k6 constant-arrival-rate steps with the
project's k6 script (chat.js, frozen copy), judged and searched by the project's
inferlab.analysis.capacity (frozen copy: judge_step, next_rate, bracket, msr_summary), so the
verdict rule is the project's: in the steady-state window (first warmup_s cut) error rate and p95
e2e within the SLO, no dropped sends, achieved >= min_achieved x offered.

Resumable: steps already in OUT_DIR/steps.jsonl count, so a search cut by a call's time limit
(--deadline-s) goes on in the next call. Per step: k6 NDJSON (gzip), summary, console log, and a
/metrics scrape of every engine before and after.

usage: python3 msr.py NAME BASE_URL --metrics URL [--metrics URL] [options]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from common import FROZEN, MODEL, OUT, SHORT, WORK, api_key, load_frozen, scrape  # noqa: E402

capacity = load_frozen("inferlab_capacity", "inferlab/analysis/capacity.py")
K6 = str(WORK / "bin" / "k6")
SCRIPT = str(FROZEN / "inferlab" / "load" / "chat.js")


def cell_id(rate: float, repeat: int) -> str:
    """The project's step name: short-at<rate>[-r<n>], '.' written as 'p'."""
    return f"short-at{rate:g}".replace(".", "p") + (f"-r{repeat}" if repeat else "")


def k6_config(a, rate: float, cell: str) -> dict:
    """chat.js's INFERLAB_K6_CONFIG for one constant-rate step (inferlab.load.k6.k6_config's fields)."""
    return {"base_url": a.base_url.rstrip("/"), "model": MODEL, "run_id": f"gpu-{a.name}", "cell_id": cell,
            "payload": "short", **SHORT, "executor": "constant-arrival-rate", "vus": None, "iterations": None,
            "duration_s": a.hold_s, "max_duration_s": a.hold_s + 120, "warmup": a.warmup_requests,
            "warmup_concurrency": a.warmup_requests, "warmup_rounds": 1, "timeout_s": a.timeout_s,
            "tls_skip_verify": False, "rate": rate, "pre_allocated_vus": a.vus, "max_vus": a.vus,
            "thresholds": {"http_req_duration{phase:measure}": [f"p(95)<{a.slo_e2e_p95_ms}"],
                           "http_req_failed{phase:measure}": [f"rate<{a.slo_error_rate}"]}}


def read_requests(path: Path) -> tuple[pd.DataFrame, int]:
    """Measured requests (one row per http_req_duration Point, phase=measure: end_ts, start_ts,
    duration_ms, ok = status 200) and the dropped-iteration count, from k6's NDJSON."""
    rows, dropped = [], 0
    with gzip.open(path, "rt") as fh:
        for line in fh:
            if '"type":"Point"' not in line:
                continue
            if line.startswith('{"metric":"dropped_iterations"'):
                dropped += int(json.loads(line)["data"]["value"])
            elif line.startswith('{"metric":"http_req_duration"'):
                d = json.loads(line)["data"]
                if d["tags"].get("phase") == "measure":
                    rows.append((d["time"], d["value"], d["tags"].get("status") == "200"))
    df = pd.DataFrame(rows, columns=["time", "duration_ms", "ok"])
    df["end_ts"] = pd.to_datetime(df["time"], utc=True, format="ISO8601")
    df["start_ts"] = df["end_ts"] - pd.to_timedelta(df["duration_ms"], unit="ms")
    return df.drop(columns="time"), dropped


def run_step(a, n: int, rate: float, repeat: int, out: Path) -> dict:
    cell = cell_id(rate, repeat)
    stem = f"step{n:02d}-{cell}"
    for i, url in enumerate(a.metrics):
        scrape(url, out / f"{stem}.metrics{i}.before.prom")
    env = {**os.environ, "INFERLAB_K6_CONFIG": json.dumps(k6_config(a, rate, cell)), "INFERLAB_API_KEY": api_key(),
           "K6_NO_USAGE_REPORT": "true"}
    raw = out / f".{stem}.ndjson"
    t0 = time.time()
    with open(out / f"{stem}.log", "wb") as log:
        code = subprocess.call([K6, "run", "--no-color", "--quiet", "--out", f"json={raw}",
                                "--summary-export", str(out / f"{stem}.summary.json"), SCRIPT],
                               stdout=log, stderr=subprocess.STDOUT, env=env)
    t1 = time.time()
    for i, url in enumerate(a.metrics):
        scrape(url, out / f"{stem}.metrics{i}.after.prom")
    with open(raw, "rb") as src, gzip.open(out / f"{stem}.ndjson.gz", "wb", compresslevel=6) as dst:
        shutil.copyfileobj(src, dst)
    raw.unlink()
    reqs, dropped = read_requests(out / f"{stem}.ndjson.gz")
    step = capacity.judge_step(reqs, dropped, rate, a.slo_e2e_p95_ms, a.slo_error_rate, a.warmup_s, a.hold_s,
                               a.min_achieved)
    rec = {"n": n, "cell": cell, **asdict(step), "k6_exit": code, "requests": len(reqs),
           "k6_start": t0, "k6_end": t1}
    print(json.dumps(rec), flush=True)
    return rec


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("name")
    p.add_argument("base_url")
    p.add_argument("--metrics", action="append", required=True, help="a /metrics URL to scrape around each step")
    p.add_argument("--start-rate", type=float, default=100)
    p.add_argument("--growth", type=float, default=2)
    p.add_argument("--resolution", type=float, default=0.1)
    p.add_argument("--boundary-repeats", type=int, default=1)
    p.add_argument("--max-rate", type=float, default=10000)
    p.add_argument("--hold-s", type=int, default=20)
    p.add_argument("--warmup-s", type=int, default=5)
    p.add_argument("--min-achieved", type=float, default=0.95)
    p.add_argument("--slo-e2e-p95-ms", type=float, default=2000)
    p.add_argument("--slo-error-rate", type=float, default=0.01)
    p.add_argument("--vus", type=int, default=1500, help="pre-allocated = max VUs")
    p.add_argument("--warmup-requests", type=int, default=64)
    p.add_argument("--timeout-s", type=int, default=60)
    p.add_argument("--deadline-s", type=float, default=540, help="start no step that could end after this")
    a = p.parse_args()
    out = OUT / f"msr-{a.name}"
    out.mkdir(parents=True, exist_ok=True)
    log = out / "steps.jsonl"
    recs = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    started = time.monotonic()
    while True:
        steps = [capacity.Step(**{k: r[k] for k in ("rate", "passed", "reason", "achieved", "p95_ms", "error_rate",
                                                     "dropped")}) for r in recs]
        rate = capacity.next_rate(steps, a.start_rate, a.growth, a.resolution, a.boundary_repeats, a.max_rate)
        if rate is None:
            break
        if time.monotonic() - started + a.hold_s + 40 > a.deadline_s:
            print(f"deadline: next step {rate}/s left for the next call", flush=True)
            return 3
        rec = run_step(a, len(recs), rate, sum(r["rate"] == rate for r in recs), out)
        recs.append(rec)
        with open(log, "a") as fh:
            fh.write(json.dumps(rec) + "\n")
    summary = {**capacity.msr_summary(steps), "name": a.name, "base_url": a.base_url, "args": vars(a)}
    (out / "result.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
