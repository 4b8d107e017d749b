"""Per-pod server counters (k8s, replicas > 1): the pod files of the run layout are read into
the server table with a pod column; the cross-check sums the pods, never one Service scrape."""

import shutil
import stat

import pytest

import inferlab
from inferlab.analysis.crosscheck import crosscheck, per_pod
from inferlab.ingest import read_prometheus_text
from inferlab.ingest.prometheus import counter_delta
from inferlab.runs.layout import metrics_path
from inferlab.runs.manifest import FileEntry
from inferlab.runs.store import read_manifest, write_manifest
from inferlab.runs.verify import hash_file

RUN = "20261126T205944Z-url-h200-tuned-cudagraphs"


@pytest.fixture
def two_pod_run(workspace, fixtures):
    src = workspace / "data" / "sample" / RUN
    dst = workspace / "data" / "runs" / RUN
    shutil.copytree(src, dst)
    for p in [dst, *dst.rglob("*")]:
        p.chmod(p.stat().st_mode | stat.S_IWUSR)
    m = read_manifest(dst)
    cell = m.cells[0].cell_id
    # one real vLLM 0.24 before/after pair stands in for each of two replicas, recorded in run.json
    # as a writer would (the loader refuses a file a complete run does not record)
    for pod in ("vllm-a", "vllm-b"):
        for when, name in (("before", "metrics_before"), ("after", "metrics_after")):
            rel = metrics_path(f"cells/{cell}", when, pod)
            p = dst / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes((fixtures / "vllm-0.24.0" / f"{name}.prom").read_bytes())
            sha, n = hash_file(p)
            m.files.append(FileEntry(path=rel, sha256=sha, bytes=n))
    write_manifest(dst, m)
    return cell


def test_per_pod_table_and_crosscheck_sum(two_pod_run, fixtures):
    run = inferlab.load_run(RUN)
    assert set(run.server["pod"]) == {"", "vllm-a", "vllm-b"}
    one = counter_delta(read_prometheus_text(fixtures / "vllm-0.24.0" / "metrics_before.prom"),
                        read_prometheus_text(fixtures / "vllm-0.24.0" / "metrics_after.prom"), "request_success")
    pods = per_pod(run)
    assert list(pods["pod"]) == ["vllm-a", "vllm-b"] and (pods["requests"] == one).all()
    assert pods["share_pct"].tolist() == [50.0, 50.0]
    row = crosscheck(run).query("scope == @two_pod_run and check == 'requests'").iloc[0]
    assert row["server"] == 2 * one  # both pods, not whichever replica a Service scrape hit


def test_no_pods_no_table(workspace):
    assert per_pod(inferlab.load_run(RUN)).empty
