"""The k8s span path up to the API boundary, on Collector file-exporter output
(tests/fixtures/otelcol-file-exporter: real vLLM 0.32 spans of two local runs, written in the
Collector's format by the project's own receiver, mixed with other runs' spans; its README).

The Collector pod is a local directory laid out as its emptyDir; the commands
``telemetry.collector_spans`` sends to the pod's reader container (``sh -c`` with stat/tail)
run in a local shell instead of ``kube.pod_exec``. The run is written by
``sweep.span_collection.SpanCollector`` as a sweep writes it, scope by scope, while the file
grows; the local path's record of the same spans is the files the local runs wrote. Same files
-> same ``Run.spans``, same k6 join, same report tables."""

from __future__ import annotations

import gzip
import importlib.util
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from inferlab import paths
from inferlab.analysis import requests as rq
from inferlab.ingest.spans import read_spans
from inferlab.report import request_timing as rt
from inferlab.runs.environment import host_info, versions
from inferlab.runs.manifest import CellRecord, Manifest, TargetInfo
from inferlab.runs.layout import CELL_FILES, IDLE_PROBE
from inferlab.runs.reader import Run
from inferlab.runs.store import RunWriter
from inferlab.sweep.span_collection import SPANS_FILE, SpanCollector
from inferlab.telemetry.collector_spans import CLOCK_SLACK_S, CollectorSpans

from ..conftest import FIXTURES

COLLECTOR = FIXTURES / "otelcol-file-exporter"
SPANS = FIXTURES / "otlp-vllm-0.32"
RUNNER = ("20261127T094529Z-local-otlp-shares", SPANS / "runner", {"short-c1": 1, "short-c4": 4, "short-c16": 16})
OTLPFIX = ("20261127T000000Z-local-otlpfix", SPANS, {"short-c1": 1, "short-c4": 4})
OTHERS = ("20261127T094530Z-k8s-other.", "20261127T090000Z-k8s-earlier.")
OPENED = datetime(2026, 11, 27, 9, 45, 30, tzinfo=UTC)  # the runner's window: its engine started 09:45:40


def local_shell(argv: list[str]) -> bytes:
    """The reader container's part, played by this machine's shell (busybox's stat and tail take
    the same options as coreutils' here); a failed command raises, as kube.pod_exec does."""
    return subprocess.run(argv, capture_output=True, check=True).stdout


def new_run(root: Path, run_id: str, cells: dict[str, int], kind: str) -> RunWriter:
    m = Manifest(run_id=run_id, kind="sweep", label=kind, created_at=datetime.now(UTC),
                 target=TargetInfo(kind=kind, base_url="http://127.0.0.1:9", model="smollm2"),
                 versions=versions(paths.install_root(), None, None), host=host_info(same_host=False), spec={},
                 cells=[CellRecord(cell_id=c, payload="short", executor="shared-iterations", vus=v, iterations=4 * v,
                                   status="complete") for c, v in cells.items()])
    return RunWriter.create(root / kind / run_id, m)


def scopes(cells: dict[str, int]) -> list[tuple[str, str]]:
    """(request-id scope, folder) in the order a sweep collects them."""
    return [("probe", "probe"), *((c, f"cells/{c}") for c in cells)]


def with_client_files(w: RunWriter, folder: Path, cells: dict[str, int]) -> None:
    """The client's files of the local run (k6 rows, probe records), the same in both records."""
    rels = [IDLE_PROBE, *(f"cells/{c}/{CELL_FILES[k]}" for c in cells for k in ("k6", "probe"))]
    for rel in rels:
        if (folder / rel).is_file():
            w.write_bytes(rel, (folder / rel).read_bytes())


def local_record(root: Path, source) -> Run:
    """The local path's record: the span files the local run's receiver wrote, per scope."""
    run_id, folder, cells = source
    w = new_run(root, run_id, cells, "local")
    for _, rel in scopes(cells):
        w.write_bytes(f"{rel}/{SPANS_FILE}", (folder / rel / SPANS_FILE).read_bytes())
    with_client_files(w, folder, cells)
    w.finish("complete")
    return Run(w.dir)


class Volume:
    """The Collector's emptyDir: its file exporter appends lines and rotates as the component
    configures it (renamed to spans-<UTC time>.jsonl, a new spans.jsonl started)."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "otelcol"
        self.dir.mkdir(parents=True)
        self.file = self.dir / "spans.jsonl"

    def append(self, data: bytes) -> None:
        with self.file.open("ab") as f:
            f.write(data)

    def rotate(self, stamp: str) -> None:
        self.file.rename(self.dir / f"spans-{stamp}.jsonl")


def segments(name: str) -> list[bytes]:
    return [gzip.decompress(p.read_bytes()) for p in sorted((COLLECTOR / name).glob("*.jsonl.gz"))]


def since_of(local: Run) -> datetime:
    """When the run opened its window: just before its first span (the local engine started in the run)."""
    return local.spans["start_ts"].min().floor("s").to_pydatetime() - timedelta(seconds=1)


def request_spans_in(path: Path, prefix: str) -> int:
    """Spans in a local span file whose request id starts with ``prefix``."""
    return int(read_spans(path)["request_id"].str.startswith(prefix, na=False).sum())


def k8s_record(root: Path, source, name: str, since: datetime, write=None) -> tuple[Run, CollectorSpans]:
    """The k8s path: the Collector's file holds the lines written before the run; the span
    source opens the run's window; then, scope by scope, that scope's lines are appended
    (``write(volume, data, poll)`` when given) and the SpanCollector waits for the scope's
    request spans and writes what came, as a sweep does after each scope."""
    run_id, folder, cells = source
    vol = Volume(root)
    before, *parts = segments(name)
    vol.append(before)
    src = CollectorSpans(local_shell, run_id, since=since, path=str(vol.file), poll_s=0.01)
    w = new_run(root, run_id, cells, "k8s")
    collector = SpanCollector(w, src)
    for (scope, rel), data in zip(scopes(cells), parts, strict=True):
        if write is None:
            vol.append(data)
        else:
            write(vol, data, lambda: src.wait_for("", 10**9, timeout_s=0))
        prefix = f"{run_id}.{scope}."
        collector.collect(rel, prefix, request_spans_in(folder / rel / SPANS_FILE, prefix))
    collector.collect("run", "", 0)
    with_client_files(w, folder, cells)
    w.finish("complete")
    return Run(w.dir), src


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> dict[str, tuple[Run, Run, CollectorSpans]]:
    """{fixture: (local record, k8s record, its span source)}, each made once."""
    out = {}
    for name, source in (("runner", RUNNER), ("otlpfix", OTLPFIX)):
        root = tmp_path_factory.mktemp(name)
        local = local_record(root / "l", source)
        out[name] = (local, *k8s_record(root / "k", source, name, since_of(local)))
    return out


def span_files(run: Run) -> list[str]:
    return sorted(f.path for f in run.manifest.files if f.path.endswith(SPANS_FILE))


def test_same_span_files_and_table_as_the_local_path(records):
    """The runner's run (every request with the run's X-Request-Id): the same scope files and,
    row for row, the same Run.spans (start-up spans included: they began in the window)."""
    local, k8s, src = records["runner"]
    assert span_files(k8s) == span_files(local) == ["cells/short-c1/" + SPANS_FILE, "cells/short-c16/" + SPANS_FILE,
                                                    "cells/short-c4/" + SPANS_FILE, "probe/" + SPANS_FILE]
    assert len(local.spans) == 206 and local.spans["request_id"].notna().sum() == 194
    pd.testing.assert_frame_equal(k8s.spans, local.spans)
    assert src.problems() == [] and not any("server span" in n for n in k8s.manifest.notes)
    # the probe's requests join their spans alike (the probe-vs-server report table)
    assert len(rq.probe_vs_server(k8s.probe, k8s.spans)) == 5
    pd.testing.assert_frame_equal(rq.probe_vs_server(k8s.probe, k8s.spans),
                                  rq.probe_vs_server(local.probe, local.spans))
    pd.testing.assert_frame_equal(rt.probe_check_table(k8s).data, rt.probe_check_table(local).data)


def test_same_join_and_report_tables_as_the_local_path(records):
    """The k6 run (otlpfix): every measured k6 row joins its span on either path, and the report's
    request-timing tables are the same. Its idle probe sent no X-Request-Id, so vLLM named those
    two requests itself: the local receiver (the run's own) keeps them, a shared Collector cannot
    tell whose they are and leaves them out; nothing else differs."""
    local, k8s, _ = records["otlpfix"]
    foreign = local.spans["request_id"].notna() & ~local.spans["request_id"].str.startswith(OTLPFIX[0] + ".", na=False)
    assert foreign.sum() == 2 and set(local.spans.loc[foreign, "cell_id"]) == {"idle"}
    # the k8s probe file has no request span left, and pandas reads an all-empty request_id
    # column as object (None) rather than str (NaN): the same values either way
    def ids_as_objects(df: pd.DataFrame) -> pd.DataFrame:
        return df.assign(request_id=[None if pd.isna(v) else v for v in df["request_id"]])

    kept = local.spans[~foreign].reset_index(drop=True)
    pd.testing.assert_frame_equal(ids_as_objects(k8s.spans), ids_as_objects(kept))
    j_local, j_k8s = rq.join_run(local), rq.join_run(k8s)
    assert len(j_k8s) == 15 and j_k8s["joined_server"].all()
    pd.testing.assert_frame_equal(j_k8s, j_local, check_dtype=False)  # request_id: object vs str, as above
    assert rt.join_md(j_k8s).data == rt.join_md(j_local).data
    for table in (rt.percentile_table, rt.breakdown_table):
        pd.testing.assert_frame_equal(table(j_k8s).data, table(j_local).data)


def test_other_runs_and_earlier_spans_stay_out(records):
    """The Collector's lines mix this run with a concurrent run, and carry a resumed run's
    earlier attempt (same ids, 10 min earlier), an earlier engine's start-up spans and an
    earlier run's lines written before the window opened: none of it reaches the run."""
    local, k8s, _ = records["runner"]
    written = b"".join(gzip.decompress((k8s.dir / p).read_bytes()) for p in span_files(k8s))
    collector = b"".join(segments("runner"))
    assert all(o.encode() in collector for o in OTHERS) and not any(o.encode() in written for o in OTHERS)
    mixed = [line for line in collector.splitlines() if RUNNER[0].encode() in line and OTHERS[0].encode() in line]
    assert len(mixed) == 31  # every line with requests of the run holds the other run's too
    assert k8s.spans["request_id"].dropna().is_unique  # the earlier attempt's copies of short-c1 are out
    assert k8s.spans["start_ts"].min() >= since_of(local) - timedelta(seconds=CLOCK_SLACK_S)


def test_the_window_is_what_keeps_earlier_spans_out(tmp_path, records):
    """Opened 11 minutes earlier, the window takes in the earlier attempt of short-c1 (its request
    ids are the run's) and the earlier engine's start-up spans: the filter above is the window."""
    local = records["runner"][0]
    early, _ = k8s_record(tmp_path, RUNNER, "runner", since_of(local) - timedelta(minutes=11))
    extra = len(early.spans) - len(local.spans)
    startup = local.spans.loc[(local.spans["cell_id"] == "idle") & local.spans["request_id"].isna()]
    c1 = local.spans[local.spans["cell_id"] == "short-c1"]
    assert extra == len(startup) + len(c1)
    assert early.spans["request_id"].dropna().duplicated().sum() == len(c1)


def test_rotation_and_half_written_lines_change_nothing(tmp_path, records):
    """Each scope's lines arrive in three writes, polled in between: the first ends mid-line,
    the second right before a line's "\\n", and the file is rotated (renamed, a new one started)
    before the third, which starts with that "\\n" (the exporter writes a line's JSON and its
    newline separately, so a rotation can fall between them). The same record."""
    local = records["runner"][0]
    stamps = iter(f"2026-11-27T09-4{i}-00.000" for i in range(10))

    def write(vol: Volume, data: bytes, poll) -> None:
        first = len(data) // 3 + 7
        end = data.rfind(b"\n", 0, 2 * len(data) // 3)
        end = end if end > first else len(data) - 1
        for a, b in ((0, first), (first, end), (end, len(data))):
            vol.append(data[a:b])
            poll()
            if b == end:
                vol.rotate(next(stamps))

    k8s, src = k8s_record(tmp_path, RUNNER, "runner", since_of(local), write=write)
    assert len(list((tmp_path / "otelcol").glob("spans-*.jsonl"))) == 4
    pd.testing.assert_frame_equal(k8s.spans, local.spans)
    assert src.problems() == []


def test_a_rotation_between_a_lines_json_and_its_newline(tmp_path):
    """The exporter writes a line's JSON, then its "\\n": a rotation between the two leaves the
    JSON at the end of the renamed file. Both lines come out whole, as written."""
    vol = Volume(tmp_path)
    src = CollectorSpans(local_shell, RUNNER[0], since=OPENED, path=str(vol.file))
    first, second = gzip.open(RUNNER[1] / "cells" / "short-c1" / SPANS_FILE).readlines()[:2]  # the run's alone
    vol.append(first[:-1])
    assert src.drain() == b""  # still being written
    vol.rotate("2026-11-27T09-46-30.000")
    vol.append(b"\n" + second)
    assert src.drain() == first + second and src.problems() == []


def test_what_cannot_be_read_is_noted_and_the_run_goes_on(tmp_path):
    """A line that is not OTLP/JSON is a problem naming the file and byte (the lines around it
    count); a reader that fails (the Collector pod gone) is a problem, and the wait ends idle."""
    vol = Volume(tmp_path)
    src = CollectorSpans(local_shell, RUNNER[0], since=OPENED, path=str(vol.file))
    probe, c1 = segments("runner")[1:3]
    vol.append(probe + b"{not json\n" + b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "x"}]}]}]}\n' + c1)
    assert src.wait_for(f"{RUNNER[0]}.short-c1.", 10, timeout_s=5) == 10  # the good lines around them count
    assert [p.split(":", 1)[0] for p in src.problems()] == [f"spans.jsonl byte {len(probe)}",
                                                            f"spans.jsonl byte {len(probe) + 10}"]
    assert "not an OTLP/JSON ExportTraceServiceRequest line" in src.problems()[0]

    def gone(argv):
        raise RuntimeError("0 Running pods with app.kubernetes.io/name=otel-collector in inferlab, not one")

    src.run, src.min_idle_s = gone, 0.5
    t0 = datetime.now(UTC)
    assert src.wait_for(f"{RUNNER[0]}.short-c4.", 5, timeout_s=30, idle_s=0.1) == 0  # idle stop: min_idle_s
    assert 0.4 < (datetime.now(UTC) - t0).total_seconds() < 10
    assert any("0 Running pods" in p for p in src.problems())


def test_lines_written_before_the_window_opens_are_never_read(tmp_path):
    """The run's own lines already in the file when the source is made (a crashed earlier
    session of the run, inside the clock slack) are not read: reading starts at the end."""
    vol = Volume(tmp_path)
    probe = segments("runner")[1]
    vol.append(probe)
    src = CollectorSpans(local_shell, RUNNER[0], since=OPENED, path=str(vol.file))
    assert src.drain() == b""
    vol.append(probe)
    assert src.count() == 0 and src.drain().count(b"\n") == probe.count(b"\n")
    assert src.count(f"{RUNNER[0]}.probe.") == 2


def test_attach_follows_the_targets_reader_only(tmp_path):
    from inferlab.targets.session import TargetSession

    w = new_run(tmp_path, RUNNER[0], {"short-c1": 1}, "k8s")
    info = TargetInfo(kind="k8s", base_url="http://127.0.0.1:9", model="smollm2")
    plain = SpanCollector(w, None)
    plain.attach(TargetSession("k8s", "http://127.0.0.1:9", None, info))
    assert plain.source is None
    plain.collect("cells/short-c1", "x.", 3)  # no source: nothing written, nothing waited for
    traced = SpanCollector(w, None)
    traced.attach(TargetSession("k8s", "http://127.0.0.1:9", None, info, span_reader=local_shell))
    assert isinstance(traced.source, CollectorSpans) and traced.source.prefix == RUNNER[0] + "."


def test_fixture_is_the_generators_output(tmp_path):
    """tests/fixtures/otelcol-file-exporter is make_fixture.py's output, byte for byte."""
    spec = importlib.util.spec_from_file_location("make_fixture", COLLECTOR / "make_fixture.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(tmp_path)
    made = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.jsonl.gz"))
    assert made == sorted(p.relative_to(COLLECTOR) for p in COLLECTOR.rglob("*.jsonl.gz"))
    for rel in made:
        assert (tmp_path / rel).read_bytes() == (COLLECTOR / rel).read_bytes(), rel
