"""Run records checked by sha256 and size, never by mode: `inferlab verify`, verified reads,
a writer that never drops a record, guarded `--resume`, and the target-death rule for cells."""

import gzip
import json
import shutil
from pathlib import Path

import pytest

import inferlab
from inferlab.runs.layout import resume_name, with_resumes
from inferlab.runs.manifest import FileEntry
from inferlab.runs.store import (RunSealedError, RunWriter, SpecMismatchError, read_manifest, seal_tree,
                                 spec_differences, write_manifest)
from inferlab.runs.verify import RecordMismatchError, format_report, hash_file, open_verified, read_verified, verify_run
from inferlab.specs import builtin_spec, load_spec
from tests.runs.test_store import manifest, writer_with_set_aside_attempt

SAMPLE = "20261126T232956Z-url-h200-smollm2-inferlab"  # made by inferlab: host.csv, nvml.csv, probes


def sample_copy(workspace: Path, name: str = SAMPLE) -> Path:
    """A copy of a shipped sample run, files 0644 as in a fresh clone (git keeps no 0444)."""
    src = workspace / "data" / "sample" / name
    dst = workspace / "data" / "runs" / name
    shutil.copytree(src, dst)
    for p in dst.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dst


def modes(d: Path) -> dict[str, int]:
    return {p.relative_to(d).as_posix(): p.stat().st_mode & 0o777 for p in [d, *d.rglob("*")]}


# --- inferlab verify ------------------------------------------------------------------------


def test_verify_catches_edited_deleted_and_added_files(workspace):
    run_dir = sample_copy(workspace)
    assert verify_run(run_dir) == []  # 0644 everywhere, and still intact: mode is no evidence
    edited = run_dir / "cells/short-c8/k6-summary.json"
    text = edited.read_text()
    edited.write_text(text.replace('"count"', '"cOunt"', 1))  # same size: only the hash tells
    (run_dir / "cells/long-c1/probe.jsonl").unlink()
    (run_dir / "cells/long-c1/notes.txt").write_text("added later\n")
    problems = verify_run(run_dir)
    got = {(p.kind, p.path) for p in problems}
    assert got == {("changed", "cells/short-c8/k6-summary.json"), ("missing", "cells/long-c1/probe.jsonl"),
                   ("unrecorded", "cells/long-c1/notes.txt")}
    changed = next(p for p in problems if p.kind == "changed")
    assert changed.expected_bytes == changed.actual_bytes and changed.expected_sha256 != changed.actual_sha256
    report = format_report(SAMPLE, "complete", problems, len(read_manifest(run_dir).files))
    assert report.startswith(f"{SAMPLE}: FAILED (1 missing, 1 changed, 1 unrecorded")
    for _, path in got:
        assert path in report


def test_verify_counts_set_aside_attempts_as_recorded_and_ignores_manifest_temp(tmp_path):
    w, moved = writer_with_set_aside_attempt(tmp_path)
    w.write_text("cells/short-c2/k6.log", "second")
    w.finish("partial", "test")
    (w.dir / ".run.json.123.tmp").write_text("{}")  # a manifest write cut before its rename
    assert verify_run(w.dir) == [] and f"{moved}/k6.log" in {f.path for f in w.manifest.files}


def test_verify_cli_exits_non_zero_naming_files(workspace, capsys):
    from inferlab.cli import build_parser, main

    if "verify" not in build_parser().format_help():
        pytest.skip("`inferlab verify` is not wired into the CLI yet")
    run_dir = sample_copy(workspace)
    assert main(["verify", SAMPLE]) == 0
    (run_dir / "cells/short-c1/k6.log").unlink()
    assert main(["verify", SAMPLE]) != 0
    assert "cells/short-c1/k6.log" in capsys.readouterr().out


# --- reading verifies -----------------------------------------------------------------------


@pytest.mark.parametrize(("rel", "table"), [
    ("cells/short-c8/k6-summary.json", "summary"),      # json reader
    ("cells/short-c8/k6.ndjson.gz", "requests"),        # chunked NDJSON reader (gzip)
    ("cells/long-c1/probe.jsonl", "probe"),
    ("cells/short-c1/metrics-after.prom", "server"),
    ("telemetry/host.csv", "host"),                     # pandas read through the hashing file
    ("telemetry/nvml.csv", "gpu"),
])
def test_reading_a_changed_file_raises_naming_it(workspace, rel, table):
    run_dir = sample_copy(workspace)
    p = run_dir / rel
    data = bytearray(p.read_bytes())
    # same size, one byte different near the end (after what a size check or a header sees)
    i = len(data) - 3
    data[i] = ord("7") if data[i] != ord("7") else ord("8")
    p.write_bytes(bytes(data))
    with pytest.raises(RecordMismatchError, match=rel.replace(".", r"\.")) as exc:
        getattr(inferlab.load_run(SAMPLE), table)
    assert "sha256" in str(exc.value) and "inferlab verify" in str(exc.value)


def test_reading_a_truncated_or_unrecorded_file_raises(workspace):
    run_dir = sample_copy(workspace)
    p = run_dir / "cells/short-c1/k6.log"
    summary = run_dir / "cells/short-c1/k6-summary.json"
    summary.write_text(summary.read_text()[:-40])
    with pytest.raises(RecordMismatchError, match="k6-summary.json: .* bytes now"):
        inferlab.load_run(SAMPLE).summary
    shutil.rmtree(run_dir)
    run_dir = sample_copy(workspace)
    (run_dir / "telemetry/host-resume1.csv").write_text((run_dir / "telemetry/host.csv").read_text())
    with pytest.raises(RecordMismatchError, match="host-resume1.csv: present but not recorded"):
        inferlab.load_run(SAMPLE).host
    assert p.name  # the untouched tables of that run still read
    assert not inferlab.load_run(SAMPLE).requests.empty


@pytest.mark.parametrize(("rel", "table"), [
    ("cells/long-c1/probe.jsonl", "probe"), ("cells/short-c8/k6.ndjson.gz", "requests"),
    ("telemetry/host.csv", "host"), ("cells/short-c1/metrics-before.prom", "server"), ("probe/idle.jsonl", "probe"),
])
def test_reading_a_table_whose_recorded_file_is_gone_raises(workspace, rel, table):
    """Its rows do not silently vanish from the table."""
    run_dir = sample_copy(workspace)
    (run_dir / rel).unlink()
    with pytest.raises(RecordMismatchError, match=f"{rel}: missing"):
        getattr(inferlab.load_run(SAMPLE), table)


def test_intact_sample_reads_with_verification(workspace):
    run_dir = sample_copy(workspace)
    r = inferlab.load_run(SAMPLE)
    for table in ("requests", "points", "summary", "probe", "gpu", "host", "server"):
        assert not getattr(r, table).empty
    assert r.verify() == [] and modes(run_dir)["run.json"] == 0o644  # nothing re-sealed by reading


def test_open_verified_hashes_in_the_consumers_pass(tmp_path):
    p = tmp_path / "f.csv"
    p.write_text("a,b\n" + "".join(f"{i},{i * 2}\n" for i in range(50_000)))
    sha, n = hash_file(p)
    entry = FileEntry(path="f.csv", sha256=sha, bytes=n)
    import pandas as pd

    with open_verified(p, entry) as fh:
        df = pd.read_csv(fh)
        raw = fh.raw
        assert raw.count == n  # every byte went through the hash while pandas read it
    assert len(df) == 50_000
    # a consumer that stops early: the rest is hashed on leaving, so a change there is seen
    bad = FileEntry(path="f.csv", sha256="0" * 64, bytes=n)
    with pytest.raises(RecordMismatchError, match="f.csv"), open_verified(p, bad) as fh:
        fh.read(10)


def test_read_verified_hashes_through_the_ingest_opener(tmp_path, monkeypatch):
    """Through ``inferlab.ingest.lines.RAW_OPENER`` the reader's own reads are hashed: no second
    pass over the file."""
    from inferlab.ingest.lines import RAW_OPENER as hook

    p = tmp_path / "x.jsonl"
    p.write_bytes(b'{"a": 1}\n' * 1000)
    sha, n = hash_file(p)
    opened = []

    def reader(path):
        fh = hook.get()(path)
        opened.append(fh)
        return len(fh.read())

    def no_second_pass(path):
        raise AssertionError("hashed in a second pass")

    monkeypatch.setattr("inferlab.runs.verify.hash_file", no_second_pass)
    assert read_verified(p, FileEntry(path="x.jsonl", sha256=sha, bytes=n), reader) == n
    assert opened and opened[0].raw.count == n
    with pytest.raises(RecordMismatchError):
        read_verified(p, FileEntry(path="x.jsonl", sha256="f" * 64, bytes=n), reader)


def test_resumed_telemetry_is_read(workspace):
    """host.csv and host-resume1.csv (and nvml-resume1.csv): a resumed run's cells have CPU/GPU rows."""
    run_dir = sample_copy(workspace)
    m = read_manifest(run_dir)
    host, nvml = (run_dir / "telemetry/host.csv").read_text(), (run_dir / "telemetry/nvml.csv").read_text()
    later = lambda text: text.replace("2026-11-26T", "2026-11-27T")  # noqa: E731 - a later session's samples
    for rel, text in (("telemetry/host-resume1.csv", later(host)), ("telemetry/nvml-resume1.csv", later(nvml))):
        (run_dir / rel).write_text(text)
        sha, n = hash_file(run_dir / rel)
        m.files.append(FileEntry(path=rel, sha256=sha, bytes=n))
    write_manifest(run_dir, m)
    r = inferlab.load_run(SAMPLE)
    assert r.host["ts"].dt.day.tolist().count(27) == len(host.splitlines()) - 1
    assert set(r.gpu.loc[r.gpu["source"] == "nvml", "ts"].dt.day) == {26, 27}
    present = ["telemetry/host-resume10.csv", "telemetry/host.csv", "telemetry/nvml.csv", "telemetry/host-resume2.csv",
               "telemetry/host-resumeX.csv"]
    assert with_resumes("telemetry/host.csv", present) == [
        "telemetry/host.csv", "telemetry/host-resume2.csv", "telemetry/host-resume10.csv"]
    assert resume_name("engine/engine.log", 2) == "engine/engine-resume2.log"


# --- the writer -----------------------------------------------------------------------------


def test_writer_never_drops_a_recorded_file(tmp_path):
    w = RunWriter.create(tmp_path / "r", manifest())
    kept, gone = w.write_text("cells/a/k6.log", "kept"), w.write_text("cells/a/probe.jsonl", "{}\n")
    w.checkpoint()
    kept.chmod(0o644)  # writable but unchanged: still recorded (mode is not evidence)
    w.checkpoint()
    assert {f.path for f in w.manifest.files} == {"cells/a/k6.log", "cells/a/probe.jsonl"}
    gone.unlink()
    with pytest.raises(RunSealedError, match="missing cells/a/probe.jsonl"):
        w.checkpoint()
    assert {f.path for f in read_manifest(w.dir).files} == {"cells/a/k6.log", "cells/a/probe.jsonl"}


def test_dead_writers_run_keeps_records_and_records_what_it_left(tmp_path):
    from inferlab.runs.store import reconcile

    w = RunWriter.create(tmp_path / "r", manifest())
    w.write_text("a.txt", "recorded")
    w.checkpoint()
    (w.dir / "cells").mkdir()
    (w.dir / "cells" / ".k6.ndjson.partial").write_text("{}\n")  # left open by a killed writer
    w.manifest.writer.pid = 2**22 + 1  # a writer that no longer exists
    write_manifest(w.dir, w.manifest)
    (w.dir / "a.txt").chmod(0o644)
    (w.dir / "a.txt").write_text("rewritten")
    m = reconcile(w.dir)
    assert m.status == "partial"
    files = {f.path: f for f in m.files}
    assert files["a.txt"].bytes == len("recorded") and "cells/.k6.ndjson.partial" in files
    assert {(p.kind, p.path) for p in verify_run(w.dir)} == {("changed", "a.txt")}


# --- resume ---------------------------------------------------------------------------------


def tiny_spec(**overrides):
    return load_spec(builtin_spec("ci-tiny"), overrides or None)


def partial_run(tmp_path, spec) -> Path:
    m = manifest()
    m.spec = spec.model_dump(mode="json")
    w = RunWriter.create(tmp_path / "runs" / m.run_id, m)
    w.write_text("cells/short-c1/k6.log", "x")
    w.finish("partial", "interrupted")
    return w.dir


@pytest.fixture
def no_k6(monkeypatch):
    monkeypatch.setattr("inferlab.sweep.runner.find_tool", lambda name: name)

    def no_target(*a, **kw):
        raise AssertionError("resume went on to the target")

    monkeypatch.setattr("inferlab.sweep.runner.open_target", no_target)


def test_resume_of_a_complete_run_refuses_before_any_mode_changes(tmp_path, no_k6):
    from inferlab.sweep.runner import run

    spec = tiny_spec()
    m = manifest()
    m.spec = spec.model_dump(mode="json")
    w = RunWriter.create(tmp_path / m.run_id, m)
    w.write_text("cells/short-c1/k6.log", "x")
    w.finish("complete")
    before = modes(w.dir)
    with pytest.raises(RunSealedError, match="complete"):
        run(spec, target="url", base_url="http://127.0.0.1:9", resume=str(w.dir))
    assert modes(w.dir) == before and before["."] == 0o555


def test_resume_with_another_spec_is_refused_unless_allowed(tmp_path, no_k6):
    from inferlab.sweep.runner import run

    run_dir = partial_run(tmp_path, tiny_spec())
    before = modes(run_dir)
    other = tiny_spec(concurrency=[1, 4], payloads={"short": {"max_tokens": 32}})
    with pytest.raises(SpecMismatchError) as exc:
        run(other, target="url", base_url="http://127.0.0.1:9", resume=str(run_dir))
    msg = str(exc.value)
    assert "concurrency ([1, 2] -> [1, 4])" in msg and "payloads.short.max_tokens (16 -> 32)" in msg
    assert "--allow-spec-change" in msg and modes(run_dir) == before
    assert read_manifest(run_dir).status == "partial"
    # the label (spec name) is not compared; the same spec resumes
    w = RunWriter.resume(run_dir, tiny_spec(name="another-label").model_dump(mode="json"))
    w.finish("partial", "again")
    w = RunWriter.resume(run_dir, other.model_dump(mode="json"), allow_spec_change=True)
    assert any("different spec" in n and "concurrency" in n for n in w.manifest.notes)
    assert w.manifest.spec == tiny_spec().model_dump(mode="json")


def test_resume_refuses_a_run_whose_records_changed(tmp_path):
    run_dir = partial_run(tmp_path, tiny_spec())
    p = run_dir / "cells/short-c1/k6.log"
    p.chmod(0o644)
    p.write_text("y")
    with pytest.raises(RunSealedError, match="changed cells/short-c1/k6.log"):
        RunWriter.resume(run_dir)


def test_spec_differences_lists_dotted_keys():
    assert spec_differences({"a": 1, "b": {"c": [1], "d": 2}, "name": "x"},
                            {"a": 1, "b": {"c": [2]}, "e": 3, "name": "y"}) == [
        "b.c ([1] -> [2])", "b.d (2 -> '(absent)')", "e ('(absent)' -> 3)"]


def test_unseal_refuses_a_complete_run(tmp_path):
    from inferlab.runs.store import unseal_dirs

    w = RunWriter.create(tmp_path / "r", manifest())
    w.finish("complete")
    with pytest.raises(RunSealedError):
        unseal_dirs(w.dir)
    assert (w.dir.stat().st_mode & 0o777) == 0o555
    seal_tree(w.dir)


# --- a cell during which the target died --------------------------------------------------


def k6_lines(requests: list[tuple[str, str | None]]) -> bytes:
    """A k6 NDJSON with one request per (status, error_code)."""
    out = []
    for i, (status, code) in enumerate(requests):
        tags = {"method": "POST", "status": status, "name": "chat", "phase": "measure",
                "expected_response": "true" if status == "200" else "false"}
        if code:
            tags["error_code"] = code
        ts = f"2026-11-26T20:59:{i:02d}.000000000Z"
        for metric, value in (("http_reqs", 1), ("http_req_duration", 10.0), ("http_req_failed", int(status != "200"))):
            point = {"metric": metric, "type": "Point", "data": {"time": ts, "value": value, "tags": tags}}
            out.append(json.dumps(point, separators=(",", ":")))
    return ("\n".join(out) + "\n").encode()


def cell_dir_with(tmp_path, requests) -> Path:
    d = tmp_path / "cell"
    d.mkdir()
    (d / "k6.ndjson.gz").write_bytes(gzip.compress(k6_lines(requests)))
    return d


def test_target_death_rule(tmp_path):
    from inferlab.sweep.target_death import target_death

    ok = cell_dir_with(tmp_path, [("200", None)] * 6 + [("0", "1050")] * 2)  # timeouts: a load result
    assert target_death(ok, 1, [], True, 0.25) == []
    died = target_death(ok, 1, ["cells/short-c4/metrics-after.prom"], False, 0.25)
    assert died == ["closing /metrics scrape failed (cells/short-c4/metrics-after.prom)",
                    "/health did not answer 200 at the end of the cell"]
    shutil.rmtree(ok)
    refused = cell_dir_with(tmp_path, [("200", None)] * 6 + [("0", "1212"), ("0", "1220")])
    assert target_death(refused, 1, [], True, 0.25) == [
        "2 of 8 requests failed to connect (status 0, k6 error 1212 x1, 1220 x1)"]
    assert target_death(refused, 1, [], True, 0.0) == []  # summary: nothing failed -> NDJSON not read
    pod = refused / "pods" / "vllm-0"
    pod.mkdir(parents=True)
    (pod / "metrics-before.prom").write_text("process_start_time_seconds 1.7e+09\n")
    (pod / "metrics-after.prom").write_text("process_start_time_seconds 1.7000001e+09\n")
    assert any("pod vllm-0 restarted" in e for e in target_death(refused, 1, [], True, 0.0))


def died_run(tmp_path, monkeypatch):
    """_run_cells with a k6 that 'succeeds' (exit 0) while the target dies during the first
    cell: its closing scrape fails, /health fails, 2 of 8 requests are refused."""
    from inferlab.load.k6 import CellResult
    from inferlab.runs.manifest import CellRecord
    from inferlab.sweep import cell, runner
    from inferlab.targets.session import TargetSession

    spec = tiny_spec(probe={"idle_requests": 0, "under_load_requests": 0})
    m = manifest()
    m.cells = [CellRecord(**c.model_dump()) for c in runner.plan_cells(spec)]
    w = RunWriter.create(tmp_path / m.run_id, m)

    class Dying(TargetSession):
        scrapes = 0

        def scrape_metrics(self):
            Dying.scrapes += 1
            return (b"# TYPE vllm:request_success_total counter\nvllm:request_success_total 0\n"
                    if Dying.scrapes == 1 else None)

        def healthy(self):
            return False

    def fake_cell(spec, plan, base_url, key, cell_dir, on_progress, **_):
        (cell_dir / "k6.ndjson.gz").write_bytes(gzip.compress(k6_lines([("200", None)] * 6 + [("0", "1212")] * 2)))
        (cell_dir / "k6-summary.json").write_text(json.dumps(
            {"metrics": {"http_req_failed": {"passes": 2, "fails": 6, "value": 0.25}}}))
        return CellResult(0, True, False, 8, "")

    monkeypatch.setattr(cell, "run_cell", fake_cell)
    session = Dying("url", "http://127.0.0.1:9", None, w.manifest.target)
    status, reason = runner._run_cells(spec, session, cell.RunContext(w))
    w.finish(status, reason)
    return w


def test_cell_whose_target_died_is_failed_and_stops_the_sweep(tmp_path, monkeypatch):
    w = died_run(tmp_path, monkeypatch)
    first, second = w.manifest.cells
    assert first.status == "failed"
    assert first.reason.startswith("target died during the cell: closing /metrics scrape failed")
    assert "/health did not answer 200 at the end" in first.reason
    assert "2 of 8 requests failed to connect (status 0, k6 error 1212 x2)" in first.reason
    assert second.status == "pending" and w.manifest.status == "partial"
    assert "target unhealthy after cell short-c1" in w.manifest.reason
    assert verify_run(w.dir) == []


def test_crosscheck_lists_cells_it_cannot_check(tmp_path, monkeypatch):
    from inferlab.analysis import crosscheck as cc_module

    if not hasattr(cc_module, "NOT_CHECKED"):
        pytest.skip("crosscheck has no 'not checked' rows yet (proposed diff: analysis/crosscheck.py)")
    w = died_run(tmp_path, monkeypatch)
    cc = cc_module.crosscheck(inferlab.load_run(w.dir)).set_index("scope")
    assert set(cc.index) == {"short-c1", "short-c2"} and (cc["check"] == "not checked").all()
    assert cc.loc["short-c1", "note"].startswith("cell failed: target died during the cell")
    assert cc.loc["short-c2", "note"] == "cell pending"


def test_a_parse_error_in_an_intact_file_stays_a_parse_error(tmp_path):
    """A reader that stops early (bad line) and closes the file: the rest is still hashed, so an
    intact recorded file is not reported as changed; a changed one is, with the parse error as cause."""
    from inferlab.ingest import IngestError
    from inferlab.ingest.lines import RAW_OPENER as hook

    p = tmp_path / "probe.jsonl"
    p.write_bytes(b"not json\n" + b'{"status": 200}\n' * 100_000)
    sha, n = hash_file(p)

    def stops_at_line_1(path):
        with hook.get()(path) as fh:
            fh.read(9)
        raise IngestError(path, 1, "one JSON object per line", "not json")

    with pytest.raises(IngestError) as exc:
        read_verified(p, FileEntry(path="probe.jsonl", sha256=sha, bytes=n), stops_at_line_1)
    assert not isinstance(exc.value, RecordMismatchError) and ":1: expected" in str(exc.value)
    with pytest.raises(RecordMismatchError) as exc:
        read_verified(p, FileEntry(path="probe.jsonl", sha256="e" * 64, bytes=n), stops_at_line_1)
    assert isinstance(exc.value.__cause__, IngestError)
