"""Streaming probe: sequential SSE chat requests that measure what k6 cannot.

Per request (JSONL, schema ``inferlab.probe/1``): sent_at, headers_ms (response headers =
TTFB; on vLLM streams they arrive long before the first token, so TTFB is *not* TTFT),
ttft_ms (first non-empty content delta), itl_ms (every gap between content deltas),
tpot_ms, e2e_ms, chunks, prompt/completion tokens (``stream_options.include_usage``),
status and error. Each record is flushed as it completes, so a killed probe keeps its lines.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from ..specs import Payload

SCHEMA = "inferlab.probe/1"


def probe_once(client: httpx.Client, base_url: str, api_key: str | None, model: str, payload: Payload,
               timeout_s: float = 600, request_id: str | None = None) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": payload.prompt}],
            "max_tokens": payload.max_tokens, "ignore_eos": payload.ignore_eos, "temperature": payload.temperature,
            "stream": True, "stream_options": {"include_usage": True}}
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    if request_id:  # joins the server's span and the edge's log line, like k6's requests
        headers["X-Request-Id"] = request_id
    rec: dict = {"schema": SCHEMA, "sent_at": datetime.now(UTC).isoformat(), "request_id": request_id, "status": None, "headers_ms": None,
                 "ttft_ms": None, "e2e_ms": None, "tpot_ms": None, "itl_ms": [], "chunks": 0,
                 "prompt_tokens": None, "completion_tokens": None, "error": None}
    t0 = time.perf_counter()
    stamps: list[float] = []
    try:
        with client.stream("POST", f"{base_url.rstrip('/')}/v1/chat/completions", json=body, headers=headers,
                           timeout=timeout_s) as r:
            rec["headers_ms"] = (time.perf_counter() - t0) * 1000
            rec["status"] = r.status_code
            if r.status_code != 200:
                rec["error"] = f"HTTP {r.status_code}: {r.read().decode(errors='replace')[:200]}"
            else:
                for line in r.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    event = json.loads(data)
                    if event.get("usage"):
                        rec["prompt_tokens"] = event["usage"].get("prompt_tokens")
                        rec["completion_tokens"] = event["usage"].get("completion_tokens")
                    choices = event.get("choices") or []
                    if choices and (choices[0].get("delta") or {}).get("content"):
                        stamps.append((time.perf_counter() - t0) * 1000)
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        rec["error"] = f"{type(exc).__name__}: {exc}"[:300]
    rec["e2e_ms"] = (time.perf_counter() - t0) * 1000
    rec["chunks"] = len(stamps)
    if stamps:
        rec["ttft_ms"] = stamps[0]
        rec["itl_ms"] = [b - a for a, b in zip(stamps, stamps[1:])]
        n = rec["completion_tokens"] or len(stamps)
        if n > 1:
            rec["tpot_ms"] = (rec["e2e_ms"] - stamps[0]) / (n - 1)
    return rec


def run_probe(out: Path, base_url: str, api_key: str | None, model: str, payload: Payload, n: int,
              interval_s: float = 0.0, stop: threading.Event | None = None, verify_tls: bool | str = True,
              request_id_prefix: str | None = None) -> int:
    """Send ``n`` sequential streaming requests, appending one JSON line each to ``out``
    (created exclusively: raw files are write-once). Returns how many were sent. With
    ``request_id_prefix`` request i carries ``X-Request-Id: <prefix><i>``."""
    sent = 0
    fd = out.open("x")
    with fd, httpx.Client(verify=verify_tls) as client:
        for i in range(n):
            if stop is not None and stop.is_set():
                break
            rid = f"{request_id_prefix}{i}" if request_id_prefix else None
            fd.write(json.dumps(probe_once(client, base_url, api_key, model, payload, request_id=rid)) + "\n")
            fd.flush()
            sent += 1
            if interval_s and (stop.wait(interval_s) if stop is not None else time.sleep(interval_s)):
                break
    out.chmod(0o444)
    return sent


class BackgroundProbe:
    """Runs :func:`run_probe` in a thread alongside a k6 cell; ``stop()`` returns the count."""

    def __init__(self, **kwargs) -> None:
        self._stop = threading.Event()
        self._count = 0
        self._error: BaseException | None = None
        self._kwargs = kwargs
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self._count = run_probe(stop=self._stop, **self._kwargs)
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self._error = exc

    def start(self) -> BackgroundProbe:
        self._thread.start()
        return self

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(timeout=120)
        return self._count
