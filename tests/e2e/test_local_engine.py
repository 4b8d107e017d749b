"""End to end against the REAL vLLM CPU engine (one per session) and the real k6 binary.

Faults use the same engine: a wrong key, an unreachable URL, a TCP relay cut mid-sweep
(the client sees the engine vanish), Ctrl-C of a real `inferlab sweep` process, then --resume.
A target killed mid-cell and resumed: tests/e2e/test_target_death.py (the stand-in server).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import inferlab
from inferlab.analysis.crosscheck import crosscheck
from inferlab.specs import builtin_spec, resolve_spec
from inferlab.sweep.runner import run
from inferlab.report import catalog, render

pytestmark = pytest.mark.engine
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def tiny(tiny_on_engine):
    """ci-tiny with its answers and probe sized for this machine's engine (conftest)."""
    return resolve_spec("ci-tiny", sets=tiny_on_engine)


@pytest.fixture
def keyed(workspace, engine, monkeypatch):
    monkeypatch.setenv("INFERLAB_API_KEY", engine.api_key)
    return engine


def test_engine_serves_and_keeps_key_off_argv(engine):
    assert engine.version() == "0.32.0"
    assert not any(engine.api_key in a for a in engine.argv)
    assert engine.api_key not in engine.log_path.read_text()


def test_the_test_engine_computes_in_one_process_on_one_thread(engine, engine_speed):
    """ci-tiny's engine layout (docs/local-engine.md, "The test engines"): no worker process
    beside the EngineCore (vLLM's CPU platform swaps ``uni`` for ``mp`` unless multiprocessing
    is off), and its compute on one thread: while it decodes one answer the EngineCore uses about
    one core (measured 0.98), where two threads used 1.87 of this machine's two."""
    import httpx
    import psutil

    tree = [psutil.Process(engine.proc.pid), *psutil.Process(engine.proc.pid).children(recursive=True)]
    names = [p.name() for p in tree]
    assert "VLLM::EngineCore" in names and not any("Worker" in n for n in names), names
    core = next(p for p in tree if p.name() == "VLLM::EngineCore")
    tokens = engine_speed.tokens_within(2.0, 16, 256)  # ~2 s of decoding, within --max-model-len
    body = {"model": engine.spec.served_model_name, "messages": [{"role": "user", "content": "Count to a thousand."}],
            "max_tokens": tokens, "ignore_eos": True}
    cpu0, t0 = sum(core.cpu_times()[:2]), time.monotonic()
    r = httpx.post(f"{engine.base_url}/v1/chat/completions", json=body, timeout=120,
                   headers={"Authorization": f"Bearer {engine.api_key}"})
    cores = (sum(core.cpu_times()[:2]) - cpu0) / (time.monotonic() - t0)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == tokens, r.text
    assert cores < 1.4, f"the EngineCore used {cores:.2f} cores while decoding: more than one compute thread"
    log = engine.log_path.read_text()
    assert "VllmWorker" not in log and "(Worker pid=" not in log


def test_sweep_writes_a_complete_checked_run(keyed, tiny_on_engine):
    # three idle probes, not ci-tiny's two: with an odd count the client's median is one request's
    # TTFT, whose bucket the server's histogram median interpolates in; with two it is their mean,
    # and one slow probe (80 and 135 ms) put it 53 % from the histogram's 70 ms (CI at 1924ccc)
    tiny = resolve_spec("ci-tiny", sets=[*tiny_on_engine, "probe.idle_requests=3"])
    rid = run(tiny, target="url", base_url=keyed.base_url)
    r = inferlab.load_run(rid)
    m = r.manifest
    assert m.status == "complete", m.reason
    assert [c.status for c in m.cells] == ["complete", "complete"]
    assert m.versions.vllm == "0.32.0" and m.versions.k6 == "v1.1.0"
    for cell in ("short-c1", "short-c2"):
        for f in ("k6.ndjson.gz", "k6-summary.json", "k6.log", "metrics-before.prom", "metrics-after.prom", "probe.jsonl"):
            assert (r.dir / "cells" / cell / f).is_file(), (cell, f)
    assert (r.dir / "probe" / "idle.jsonl").is_file() and (r.dir / "telemetry" / "host.csv").is_file()
    recorded = {f.path for f in m.files}
    assert "cells/short-c1/k6.ndjson.gz" in recorded and "telemetry/host.csv" in recorded
    req = r.requests
    measured = req[req.phase == "measure"]
    assert len(measured) == tiny.iterations(1) + tiny.iterations(2)
    # warm-up: at least warmup_requests and one full round of the cell's VUs, all before the measured phase
    assert (req.phase == "warmup").sum() == sum(max(tiny.warmup_requests, v) for v in (1, 2))
    for _, g in req.groupby("cell_id"):
        assert g.loc[g.phase == "warmup", "end_ts"].max() <= g.loc[g.phase == "measure", "start_ts"].min()
    assert measured.ok.all()
    # every measured request carried its own X-Request-Id: <run_id>.<cell_id>.m<iteration>
    assert measured.request_id.is_unique and measured.request_id.notna().all()
    assert (measured.request_id.str.rsplit(".", n=1).str[0] == rid + "." + measured.cell_id).all()
    # a url target exports no spans to the run (only an engine inferlab starts is given the
    # receiver): the table is empty, not guessed (tests/e2e/test_edge_run.py: the local target's)
    assert r.spans.empty and not any(f.endswith("spans.otlp.jsonl.gz") for f in recorded)
    assert r.probe["ttft_ms"].notna().all() and (r.probe["headers_ms"] < r.probe["e2e_ms"]).all()
    cc = crosscheck(r)
    counts = cc[cc.check.isin(["requests", "generated_tokens"])]
    assert set(counts.scope) == {"idle", "short-c1", "short-c2"} and len(counts) == 6 and counts.agrees.all(), cc
    # around the idle probe its requests are the only ones: TTFT like for like with the server
    idle = cc[cc.scope == "idle"].set_index("check")
    assert idle.loc["requests", "server"] == tiny.probe.idle_requests and idle.loc["ttft_median_ms", "agrees"], cc
    assert not r.host.empty and {"k6", "system"} <= set(r.host["process"])  # the client's CPU too
    text = "".join(p.read_text(errors="ignore") for p in r.dir.rglob("*") if p.is_file() and p.suffix != ".gz")
    assert keyed.api_key not in text
    # the load-test report renders from this real run (CPU telemetry instead of GPU): regression
    # for a host-telemetry row without line counts that once broke the data-quality section
    html = next(p for p in render.render(catalog.jobs_for(rid)[0], pdf=False) if p.suffix == ".html").read_text()
    for section in ("Results per cell", "Measurement cross-check", "Per pod", "Data quality", "CPU"):
        assert section in html, section
    assert keyed.api_key not in html


def test_wrong_key_fails_clearly(workspace, engine, monkeypatch, tiny):
    monkeypatch.setenv("INFERLAB_API_KEY", "wrong-key-000000")
    m = inferlab.load_run(run(tiny, target="url", base_url=engine.base_url)).manifest
    assert m.status == "failed" and "401" in m.reason


def test_unreachable_url_fails_clearly(workspace):
    tiny = resolve_spec("ci-tiny")  # no engine involved: the spec as shipped
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    m = inferlab.load_run(run(tiny, target="url", base_url=f"http://127.0.0.1:{port}")).manifest
    assert m.status == "failed" and "cannot reach" in m.reason


def test_k6_missing_is_a_clear_error(workspace, monkeypatch):
    tiny = resolve_spec("ci-tiny")
    from inferlab.tools import ToolNotFound

    monkeypatch.setattr("inferlab.tools.which_tool", lambda name: None)
    with pytest.raises(ToolNotFound, match="make setup"):
        run(tiny, target="url", base_url="http://127.0.0.1:9")


class Relay:
    """A TCP relay to the engine that can be cut: to the client, the engine is killed."""

    def __init__(self, upstream_port: int) -> None:
        self.up = upstream_port
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.alive = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _pipe(self, a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def _accept(self):
        while self.alive:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            u = socket.create_connection(("127.0.0.1", self.up))
            self.conns += [c, u]
            threading.Thread(target=self._pipe, args=(c, u), daemon=True).start()
            threading.Thread(target=self._pipe, args=(u, c), daemon=True).start()

    def cut(self):
        self.alive = False
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone does not
        except OSError:
            pass
        self.sock.close()
        for s in self.conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass


def test_engine_gone_mid_sweep_leaves_partial(keyed, tiny_on_engine):
    relay = Relay(int(keyed.base_url.rsplit(":", 1)[1]))
    spec = resolve_spec("ci-tiny", {"concurrency": [1, 2], "repeats": 2}, sets=tiny_on_engine)
    done = threading.Event()

    def cut_after_first_cell():
        runs = Path(os.environ["INFERLAB_HOME"]) / "data" / "runs"
        deadline = time.time() + 120
        while time.time() < deadline and not done.is_set():
            hits = list(runs.glob("*/cells/*/metrics-after.prom"))
            if hits:
                relay.cut()
                return
            time.sleep(0.05)

    t = threading.Thread(target=cut_after_first_cell, daemon=True)
    t.start()
    rid = run(spec, target="url", base_url=f"http://127.0.0.1:{relay.port}")
    done.set()
    m = inferlab.load_run(rid).manifest
    assert m.status == "partial", (m.status, m.reason)
    assert m.cells[0].status == "complete"
    assert any(c.status in ("failed", "pending") for c in m.cells[1:])
    assert "unhealthy" in m.reason or "not complete" in m.reason


def test_ctrl_c_mid_cell_then_resume(keyed, workspace, tiny_on_engine):
    # interrupt while the SECOND cell's k6 is writing requests (its NDJSON exists): the cut cell
    # is kept aside with its files still recorded, and --resume re-runs it under the same names
    spec = workspace / "ctrl-c.yaml"
    spec.write_text(builtin_spec("ci-tiny").read_text().replace("iterations_per_vu: 2", "iterations_per_vu: 12"))
    env = {**os.environ, "INFERLAB_HOME": str(workspace), "INFERLAB_API_KEY": keyed.api_key}
    argv = [sys.executable, "-m", "inferlab.cli", "sweep", str(spec), "--target", "url", "--base-url", keyed.base_url,
            *(a for item in tiny_on_engine for a in ("--set", item))]
    # Ctrl-C as a terminal's foreground job gets it: not ignored, whatever this session inherited
    # (a background job of a non-interactive shell, such as a CI harness's, ignores SIGINT, and
    # the sweep rightly keeps ignoring it then)
    proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    runs = workspace / "data" / "runs"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not list(runs.glob("*/cells/short-c2/.k6.ndjson.partial")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=120)[0].decode()
    rid = next(runs.iterdir()).name
    m = inferlab.load_run(rid).manifest
    assert m.status == "partial" and "Ctrl-C" in m.reason, out
    assert [c.status for c in m.cells] == ["complete", "partial"], out
    res = subprocess.run(argv + ["--resume", rid], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    m = inferlab.load_run(rid).manifest
    assert m.status == "complete" and all(c.status == "complete" for c in m.cells)
    assert any("resumed" in n for n in m.notes)
    recorded = {f.path for f in m.files}
    assert "cells/short-c2/k6.ndjson.gz" in recorded
    assert any(p.startswith("cells/.short-c2.attempt-") and p.endswith("k6.ndjson.gz") for p in recorded)
