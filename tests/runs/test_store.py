import json
import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest

import inferlab
from inferlab.analysis.crosscheck import crosscheck
from inferlab.runs.layout import RUN_ID_RE, make_cell_id, make_run_id
from inferlab.runs.manifest import HostInfo, Manifest, TargetInfo, Versions
from inferlab.runs.store import RunSealedError, RunWriter, read_manifest, reconcile, sha256_file


def manifest(run_id="20260101T000000Z-local-t"):
    return Manifest(run_id=run_id, kind="sweep", label="t", created_at=datetime.now(UTC),
                    target=TargetInfo(kind="local", base_url="http://127.0.0.1:1", model="m"),
                    versions=Versions(inferlab="0", python="3"),
                    host=HostInfo(hostname="h", cpu_model="c", cores=2, memory_gib=1, utc_offset_minutes=0))


def test_names():
    rid = make_run_id("local", "My Label!", datetime(2026, 11, 26, 21, 5, 7, tzinfo=UTC))
    assert rid == "20261126T210507Z-local-my-label"
    assert make_cell_id("short", vus=16) == "short-c16"
    assert make_cell_id("short", rate=(2, 14), repeat=3) == "short-rate2to14-r3"
    with pytest.raises(ValueError):
        make_run_id("docker", "x")


def test_a_run_id_taken_within_the_same_second_gets_a_suffix(tmp_path):
    when = datetime(2026, 12, 4, 19, 3, 20, tzinfo=UTC)
    first = make_run_id("url", "answers-b", when, runs_dir=tmp_path)
    assert first == "20261204T190320Z-url-answers-b"
    (tmp_path / first).mkdir()
    second = make_run_id("url", "answers-b", when, runs_dir=tmp_path)
    assert second == first + "-2" and RUN_ID_RE.match(second)
    (tmp_path / second).mkdir()
    assert make_run_id("url", "answers-b", when, runs_dir=tmp_path) == first + "-3"


def test_manifest_round_trip_and_strictness(tmp_path):
    m = manifest()
    w = RunWriter.create(tmp_path / m.run_id, m)
    again = read_manifest(w.dir)
    assert again == w.manifest and again.schema_version == 1
    doc = json.loads((w.dir / "run.json").read_text())
    doc["surprise"] = 1
    with pytest.raises(Exception, match="surprise"):
        Manifest.model_validate(doc)


def test_write_once_and_seal(tmp_path):
    w = RunWriter.create(tmp_path / "r", manifest())
    p = w.write_text("cells/a/k6.log", "hello")
    assert oct(p.stat().st_mode & 0o777) == "0o444"
    with pytest.raises(FileExistsError, match="write-once"):
        w.write_text("cells/a/k6.log", "again")
    w.checkpoint()
    assert [f.path for f in w.manifest.files] == ["cells/a/k6.log"]
    w.finish("complete")
    assert oct((tmp_path / "r").stat().st_mode & 0o777) == "0o555"
    with pytest.raises(RunSealedError):
        w.write_text("cells/b/k6.log", "x")
    with pytest.raises(RunSealedError):
        RunWriter.resume(tmp_path / "r")


def test_tampering_is_detected(tmp_path):
    w = RunWriter.create(tmp_path / "r", manifest())
    p = w.write_text("x.txt", "one")
    w.checkpoint()
    p.chmod(0o644)
    p.write_text("two")
    p.chmod(0o444)
    with pytest.raises(RunSealedError, match="write-once"):
        w.checkpoint()


def writer_with_set_aside_attempt(tmp_path) -> tuple[RunWriter, str]:
    """A run whose cell short-c2 was cut once: its first attempt moved aside (returned path)."""
    w = RunWriter.create(tmp_path / "r", manifest())
    w.write_text("cells/short-c2/k6.log", "first attempt")
    w.checkpoint()
    return w, w.set_aside("cells/short-c2", "attempt-1")


def test_set_aside_keeps_records_and_frees_the_names(tmp_path):
    # regression (CI): a resumed cell re-wrote cells/<id>/k6.log while the cut attempt's
    # k6.log was still recorded under that path -> false write-once violation
    w, moved = writer_with_set_aside_attempt(tmp_path)
    w.write_text("cells/short-c2/k6.log", "second attempt")
    w.checkpoint()
    paths = {f.path: f.bytes for f in w.manifest.files}
    assert paths == {f"{moved}/k6.log": 13, "cells/short-c2/k6.log": 14}
    assert (tmp_path / "r" / moved / "k6.log").read_text() == "first attempt"


def test_two_attempts_set_aside_under_one_tag_both_stay(tmp_path):
    w, moved = writer_with_set_aside_attempt(tmp_path)
    w.write_text("cells/short-c2/k6.log", "second attempt")
    again = w.set_aside("cells/short-c2", "attempt-1")  # the tag is a second-resolution clock
    assert again == moved + "-2"
    assert (tmp_path / "r" / moved / "k6.log").read_text() == "first attempt"
    assert (tmp_path / "r" / again / "k6.log").read_text() == "second attempt"


def test_dead_writer_becomes_partial_then_resumes(tmp_path):
    # a real writer process that dies without finishing
    code = ("import sys; from tests.runs.test_store import manifest; from inferlab.runs.store import RunWriter;"
            "from pathlib import Path; RunWriter.create(Path(sys.argv[1]), manifest())")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "r")], check=True, cwd=os.getcwd())
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "running"
    m = reconcile(tmp_path / "r")
    assert m.status == "partial" and "exited before finishing" in m.reason
    w = RunWriter.resume(tmp_path / "r")
    assert w.manifest.status == "running" and w.manifest.notes


def test_every_sample_run_loads(workspace):
    """The four H200 runs (every table, GPU telemetry included) and the local evidence runs (CPU
    engine: no GPU table, host telemetry instead) all load, verified, with nothing skipped."""
    runs = inferlab.list_runs()
    assert set(runs["where"]) == {"sample"} and runs["status"].eq("complete").all()
    h200 = [r for r in runs["run_id"] if "-url-h200-" in r]
    assert len(h200) == 4 and len(runs) >= 4
    for rid in runs["run_id"]:
        run = inferlab.load_run(rid)
        tables = ("requests", "points", "summary", "probe", "gpu", "server") if rid in h200 else \
            ("requests", "points", "summary", "host", "server") + (("probe",) if "capacity" not in rid else ())
        for table in tables:
            df = getattr(run, table)
            assert not df.empty, (rid, table)
            assert {"run_id", "cell_id"} <= set(df.columns)
        assert run.data_quality["lines_skipped"].sum() == 0
        assert run.verify() == []
        for f in run.manifest.files:  # the shipped bytes are the recorded bytes
            assert (run.dir / f.path).stat().st_size == f.bytes and sha256_file(run.dir / f.path) == f.sha256


def test_inferlab_gpu_run_golden(workspace):
    """The run inferlab itself made on the H200 (data/sample/README.md): exact server agreement in
    every cell, both GPU telemetry sources, the GPU in the manifest."""
    run = inferlab.load_run("20261126T232956Z-url-h200-smollm2-inferlab")
    m = run.manifest
    assert m.versions.vllm == "0.24.0" and m.versions.k6 == "v1.1.0" and m.host.gpus[0].name == "NVIDIA H200"
    cc = crosscheck(run)
    counts = cc[cc["check"].isin(["requests", "generated_tokens"])]
    assert len(counts) == 12 and counts["agrees"].all() and (counts["client"] == counts["server"]).all()
    assert counts.query("scope == 'short-c64' and check == 'requests'")["server"].item() == 520
    util = run.gpu[run.gpu["metric"] == "utilization_gpu_pct"]
    assert set(util["source"]) == {"nvidia-smi", "nvml"} and util["value"].max() > 50
    assert len(run.requests[run.requests["phase"] == "measure"]) == 1216  # 32+64+512 per payload


def test_sample_crosscheck_exact(workspace):
    from inferlab.analysis.crosscheck import crosscheck

    cc = crosscheck(inferlab.load_run("20261126T205944Z-url-h200-tuned-cudagraphs")).set_index("check")
    assert cc.loc["requests", "client"] == cc.loc["requests", "server"] == 1584
    assert cc.loc["generated_tokens", "client"] == cc.loc["generated_tokens", "server"] == 253440


def test_ingest_cli_writes_parquet(workspace):
    from inferlab.cli import main

    assert main(["ingest", "20261126T210231Z-url-h200-baseline-eager"]) == 0
    out = workspace / "data" / "tidy" / "20261126T210231Z-url-h200-baseline-eager"
    import pandas as pd

    req = pd.read_parquet(out / "requests.parquet")
    assert len(req) == 1584 and str(req["end_ts"].dt.tz) == "UTC"


def test_unknown_run_lists_known(workspace):
    with pytest.raises(FileNotFoundError, match="h200-stress"):
        inferlab.load_run("nope")
