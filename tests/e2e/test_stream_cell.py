"""A streamed sweep end to end, on the stand-in server (which, like vLLM, sends a stream's
headers at once and its first token after prefill) and the REAL k6: each cell's k6 sends
through the stream clock, whose ``stream-clock.jsonl`` is a recorded cell file; the reader
joins it to k6's rows by request id, and TTFT/TPOT come from the client stream when the
target exports no spans (a URL target without traces) and from the server span when it does.
A cut clock file (the writer killed mid-line) or a missing one is reported, not fatal.

The real engine's check (client TTFT against the spans of the same requests) is
scripts/ttft_agreement.py; tests/e2e/test_edge_run.py streams through the clock to the edge."""

from __future__ import annotations

import json
import os
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest

import inferlab
from inferlab.analysis import token_slo as ts
from inferlab.analysis.requests import join_run, join_summary
from inferlab.analysis.summary import cell_summary
from inferlab.ingest.errors import TruncatedLineWarning
from inferlab.runs.layout import CELL_FILES
from inferlab.runs.store import sha256_file
from inferlab.runs.verify import verify_run
from inferlab.specs import builtin_spec, load_spec
from inferlab.standin import StandIn
from inferlab.sweep.runner import run
from inferlab.telemetry.otlp import OtlpReceiver

from ..conftest import make_workspace

PREFILL_MS, TPOT_MS, TOKENS = 120.0, 10.0, 8
STANDIN = dict(process=True, slots=4, tpot_ms=TPOT_MS, batch_alpha=0, prefill_base_ms=PREFILL_MS,
               prefill_ms_per_token=0)


def _spec():
    return load_spec(builtin_spec("ci-tiny"), {
        "concurrency": [2], "iterations_per_vu": 5, "min_iterations": 10, "min_window_requests": 1,
        "payloads": {"short": {"prompt": "Say hi.", "max_tokens": TOKENS}},
        "probe": {"idle_requests": 0, "under_load_requests": 0},
        "slo": {"ttft_ms": 1000, "ttft_p": 90, "tpot_ms": 50, "tpot_p": 90, "e2e_ms": 5000}})


@pytest.fixture(scope="module")
def clock_run(tmp_path_factory):
    """One streamed run against the stand-in without spans: (its workspace, run id, the
    stand-in's ground truth per request id)."""
    home = tmp_path_factory.mktemp("ws")
    mp = pytest.MonkeyPatch()
    make_workspace(home, mp, sample=False)
    try:
        with StandIn(**STANDIN) as s:
            rid = run(_spec(), target="url", base_url=s.base_url)
            truth = {r.request_id: r for r in s.stats().requests}
        yield home, rid, truth
    finally:
        mp.undo()


def test_a_streamed_cell_records_its_clock_file_and_the_reader_joins_it(clock_run, monkeypatch):
    home, rid, truth = clock_run
    monkeypatch.setenv("INFERLAB_HOME", str(home))
    r = inferlab.load_run(rid)
    assert r.manifest.status == "complete", r.manifest.reason
    cell = r.manifest.cells[0].cell_id
    rel = f"cells/{cell}/{CELL_FILES['stream_clock']}"
    assert rel in {f.path for f in r.manifest.files}  # recorded with its sha256, like k6's files
    assert verify_run(r) == []
    clock = r.stream_clock
    assert (clock["cell_id"] == cell).all() and (clock["client_status"] == 200).all()
    kinds = clock["request_id"].str.extract(r"\.([mw])[\d-]+$")[0].value_counts()
    assert kinds["m"] == 10 and kinds["w"] == 2  # the measured requests and the warm-up round passed the clock
    j = join_run(r)
    assert len(j) == 10 and j["joined_clock"].all() and not j["joined_server"].any()
    s = join_summary(j, r.spans, r.edge).set_index("cell_id")
    assert s.loc[cell, "joined_clock"] == 10 and s.loc[cell, "share_joined_clock"] == 1.0


def test_without_spans_ttft_and_tpot_come_from_the_client_stream_and_agree_with_the_truth(clock_run, monkeypatch):
    home, rid, truth = clock_run
    monkeypatch.setenv("INFERLAB_HOME", str(home))
    r = inferlab.load_run(rid)
    t = ts.run_request_timings(r)
    assert (t["ttft_ms_source"] == ts.CLIENT_STREAM).all() and (t["tpot_ms_source"] == ts.CLIENT_STREAM).all()
    true_ttft = np.array([truth[i].ttft_s * 1000 for i in t["request_id"]])
    diff = t["ttft_ms"].to_numpy() - true_ttft
    assert (true_ttft >= PREFILL_MS).all()
    # the clock sees the first token a little after the stand-in made it (HTTP out, loopback in);
    # k6's own waiting ends at the headers, long before (the reason the clock exists). Never
    # early; late by more only when a process is descheduled (2 shared cores: a share, not a max)
    assert (diff > -1).all() and np.median(diff) < 10 and (diff < 25).mean() >= 0.7, diff
    j = join_run(r)
    # k6's waiting ends at the headers, before the prefill ends; as above, a descheduled process
    # may be late, so a share and the median (not every request) carry the claim
    assert np.median(j["waiting_ms"]) < PREFILL_MS / 2 and (j["waiting_ms"] < PREFILL_MS / 2).mean() >= 0.7
    true_tpot = np.array([truth[i].decode_s * 1000 / (TOKENS - 1) for i in t["request_id"]])
    assert np.allclose(t["tpot_ms"], true_tpot, rtol=0.15, atol=1.5)
    assert (t["output_tokens"] == TOKENS).all() and (t["output_tokens_source"] == ts.CLIENT_STREAM).all()
    # goodput and the percentile table judge TTFT and TPOT, from the client stream
    cells = cell_summary(r)
    row = cells.iloc[0]
    assert row["slo_good_share"] == 1.0 and row["slo_unmeasured"] == ""
    assert row["slo_sources"] == "TTFT: client stream; TPOT: client stream"
    assert row["slo_goodput"] == pytest.approx(row["rps"])
    table = ts.slo_percentile_table(t, ts.slo_bounds(r.manifest.spec["slo"])).set_index("metric")
    assert table.loc["ttft_ms", "label"] == "p90 TTFT" and table.loc["ttft_ms", "source"] == ts.CLIENT_STREAM
    assert table.loc["ttft_ms", "n"] == 10 and bool(table.loc["ttft_ms", "met"])  # a p90 from 10 requests
    assert table.loc["ttft_ms", "needed"] == 29  # to be *shown* met at 95 % confidence


def test_with_spans_ttft_and_tpot_come_from_the_server_span(workspace, monkeypatch):
    with OtlpReceiver() as rx:
        for k, v in rx.engine_env().items():  # the exporter's schedule, as the engine gets it
            monkeypatch.setenv(k, v)
        with StandIn(**STANDIN, otlp_traces_endpoint=rx.endpoint) as s:
            rid = run(_spec(), target="url", base_url=s.base_url, spans=rx)
    r = inferlab.load_run(rid)
    assert r.manifest.status == "complete", r.manifest.reason
    j = join_run(r)
    assert j["joined_server"].all() and j["joined_clock"].all()
    t = ts.request_timings(j)
    assert (t["ttft_ms_source"] == ts.SERVER).all() and (t["tpot_ms_source"] == ts.SERVER).all()
    assert (t["ttft_ms"] == j["ttft_ms"]).all()  # the span's value, not the clock's
    gap = j["client_ttft_ms"] - j["ttft_ms"]  # both witnesses kept: client - span, small and positive
    assert (gap > -1).all() and gap.median() < 10, gap
    assert cell_summary(r).iloc[0]["slo_sources"] == "TTFT: server span; TPOT: server span"


def _copied_clock_run(clock_run, tmp_path, monkeypatch):
    """A writable copy of the clock run (files and folders unsealed) in a fresh workspace made
    the current one: (run id, its folder, its cell, that cell's clock file relative to the run)."""
    home, rid, _ = clock_run
    dst = make_workspace(tmp_path / "ws2", monkeypatch, sample=False) / "data" / "runs" / rid
    shutil.copytree(home / "data" / "runs" / rid, dst)
    for root, dirs, files in os.walk(dst):
        os.chmod(root, 0o755)
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)
    cell = json.loads((dst / "run.json").read_text())["cells"][0]["cell_id"]
    return rid, dst, cell, f"cells/{cell}/{CELL_FILES['stream_clock']}"


def _rerecord(run_dir, rel, gone=False):
    """run.json with ``rel``'s entry as the file now is (or without it): what a reconciled run
    whose clock was cut, or never written, records."""
    m = json.loads((run_dir / "run.json").read_text())
    files = [f for f in m["files"] if f["path"] != rel]
    if not gone:
        p = run_dir / rel
        files.append({"path": rel, "sha256": sha256_file(p), "bytes": p.stat().st_size})
    m["files"] = sorted(files, key=lambda f: f["path"])
    (run_dir / "run.json").write_text(json.dumps(m))


def test_a_cut_clock_file_is_read_up_to_the_cut_and_reported(clock_run, tmp_path, monkeypatch):
    rid, d, cell, rel = _copied_clock_run(clock_run, tmp_path, monkeypatch)
    data = (d / rel).read_bytes()
    last = data.rstrip(b"\n").rfind(b"\n") + 1
    cut_id = json.loads(data[last:])["request_id"]
    (d / rel).write_bytes(data[: last + 40])  # the writer died 40 bytes into its last line
    _rerecord(d, rel)
    r = inferlab.load_run(rid)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        j = join_run(r)
    assert any(issubclass(w.category, TruncatedLineWarning) for w in caught)
    assert verify_run(r) == []
    notes = [n for q in r.data_quality["notes"].dropna() for n in q]
    assert any("truncated final line skipped" in n and rel in n for n in notes), notes
    assert len(j) == 10  # every k6 row stays
    assert cut_id in set(j["request_id"])  # the last line is a measured request's (warm-up ends before them)
    t = ts.request_timings(j).set_index("request_id")
    assert np.isnan(t.loc[cut_id, "ttft_ms"]) and pd.isna(t.loc[cut_id, "ttft_ms_source"])
    assert j["joined_clock"].sum() == 9
    s = join_summary(j, r.spans, r.edge).set_index("cell_id")
    assert s.loc[cell, "no_clock_record"] == 1
    # a request without a TTFT violates the TTFT bound: never counted as good
    assert ts.goodput_table(ts.request_timings(j), ts.slo_bounds(r.manifest.spec["slo"])).iloc[0]["good"] == 9


def test_a_missing_clock_file_is_noted_and_the_token_bounds_unmeasured(clock_run, tmp_path, monkeypatch):
    rid, d, _, rel = _copied_clock_run(clock_run, tmp_path, monkeypatch)
    (d / rel).unlink()
    _rerecord(d, rel, gone=True)
    r = inferlab.load_run(rid)
    assert r.stream_clock.empty
    notes = [n for q in r.data_quality["notes"].dropna() for n in q]
    assert any(rel in n and "missing" in n for n in notes), notes
    j = join_run(r)
    assert j["joined_clock"].isna().all()
    row = cell_summary(r).iloc[0]
    assert row["slo_unmeasured"] == "ttft_ms, tpot_ms" and row["slo_sources"] == "TTFT: none; TPOT: none"


def test_through_the_local_edge_the_clock_speaks_tls_and_every_request_joins(workspace):
    """The clock in front of the TLS edge (real nginx, the project CA) in front of the stand-in:
    k6 -> clock (plain HTTP, loopback) -> edge (TLS) -> stand-in. Every request reaches the
    edge's log and the clock's file under its id; the clock's connections (TLS handshakes to
    the edge) are opened ahead of the requests."""
    spec = load_spec(builtin_spec("ci-tiny"), {
        **{k: v for k, v in _spec().model_dump(mode="json").items()
           if k in ("concurrency", "iterations_per_vu", "min_iterations", "min_window_requests", "payloads",
                    "probe", "slo")},
        "observe": {"edge": {"tls": True, "rate_limit_rps": None}}})
    with StandIn(**STANDIN) as s:
        rid = run(spec, target="url", base_url=s.base_url)
    r = inferlab.load_run(rid)
    assert r.manifest.status == "complete", r.manifest.reason
    assert r.manifest.target.base_url.startswith("https://127.0.0.1:")
    j = join_run(r)
    assert len(j) == 10 and (j["status"] == 200).all()
    assert j["joined_edge"].all() and j["joined_clock"].all()
    t = ts.request_timings(j)
    assert (t["ttft_ms_source"] == ts.CLIENT_STREAM).all() and (t["ttft_ms"] >= PREFILL_MS).all()
    # the clock's TLS connections to the edge are opened ahead: most requests find one waiting
    assert (j["client_connect_ms"] == 0).mean() >= 0.5 and (j["client_connect_ms"] >= 0).all()
    # the edge saw the upstream's first byte no later than the clock saw the first token
    assert (j["upstream_header_ms"] <= j["client_ttft_ms"] + 1).all()


def test_a_cell_that_does_not_stream_sends_directly_and_has_no_clock(workspace):
    spec = _spec().model_copy(update={"stream": False})
    with StandIn(**STANDIN) as s:
        rid = run(spec, target="url", base_url=s.base_url)
    r = inferlab.load_run(rid)
    assert r.manifest.status == "complete", r.manifest.reason
    assert not any(f.path.endswith(CELL_FILES["stream_clock"]) for f in r.manifest.files)
    assert r.stream_clock.empty
    notes = [n for q in r.data_quality.get("notes", pd.Series(dtype=object)).dropna() for n in q]
    assert not any("missing" in n for n in notes), notes  # not streamed: nothing is missing
    t = ts.run_request_timings(r)
    assert t["ttft_ms"].isna().all() and t["ttft_ms_source"].isna().all()  # JSON answers: no token timing
