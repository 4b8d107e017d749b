"""In-cluster load: one sweep cell's k6 inside the cluster, its outputs copied back into the run.

Why: from a workstation, k6 shares the client's CPU and a port-forward tunnel shapes every
latency; inside the cluster k6 talks to the vLLM Service directly. Two ways, one cell layout
(``k6.seg<i>ofN.ndjson.gz``, ``k6-summary.seg<i>ofN.json``, ``k6.seg<i>ofN.log``, as for local
segments), picked per cell by :func:`run_cell_in_cluster`:

- a k6-operator ``TestRun`` (load/testrun.py) where the cluster serves ``testruns.k6.io``: the
  ecosystem's distributed k6, with its synchronized start;
- else the plain Indexed Job of this module, which needs nothing installed in the cluster (the
  seed's Minikube has no operator; deploy's preflight names it). Decisions:
  - pod ``i`` of ``N`` runs k6 execution segment ``i`` (``k6_segments`` in the spec), so more load
    than one pod makes is split;
  - k6 runs as an init container writing into an emptyDir and always exits 0 (its real exit
    code goes to a file), so the pod moves on to a tiny collector container that holds the
    files until we have copied them out through the API server (exec). Outputs arrive whole,
    without the kubelet's log-size limits; the collector then exits and the Job completes;
  - the API key reaches k6 from the cluster's Secret (``secretKeyRef``), never through us.

The in-pod shell and the copy-out are plain functions of an ``exec`` callable, so the tests
run them locally with the real k6 (tests/load/test_incluster.py); :class:`inferlab.kube.KubeExec`
is the cluster implementation (a leaf helper, so the k8s target can build one without importing
load), and the API boundary that tests/load/test_testrun.py fakes for both ways.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from ..kube import K6_OPERATOR_INSTALL, K6_OPERATOR_KIND, K6_OPERATOR_RELEASE, Exec, KubeExec
from ..runs.layout import segment_files
from ..specs import CellPlan, LoadSpec
from .cluster_k6 import (K6_IMAGE, K6_RESOURCES, RESULTS, SCRIPT_KEY, cell_labels, collector_container, config_map,
                         copy_outputs, deadline_s, job_name, k6_env, release_collector)
from .k6 import CellResult, cell_result, execution_segments, k6_argv
from .testrun import render_testrun, run_testrun_cell

SCRIPTS = "/scripts"


def k6_shell(n_segments: int, results: str = RESULTS, script: str = f"{SCRIPTS}/{SCRIPT_KEY}") -> str:
    """The init container's command: run this pod's segment, keep k6's exit code in a file,
    exit 0 so the collector starts even when thresholds failed or k6 crashed."""
    files = {"ndjson": f"{results}/k6.ndjson", "summary": f"{results}/k6-summary.json"}
    argv = shlex.join(k6_argv("k6", files, script, 0, 1)[:-1])
    if n_segments > 1:
        segs, seq = execution_segments(n_segments)
        argv += (f' --execution-segment "$SEG" --execution-segment-sequence {seq}')
        pick = f'set -- {" ".join(segs)}; shift "${{JOB_COMPLETION_INDEX:-0}}"; SEG="$1"; '
    else:
        pick = ""
    return f'{pick}{argv} {shlex.quote(script)} > {results}/k6.log 2>&1; echo $? > {results}/exit-code; exit 0'


def render(spec: LoadSpec, cell: CellPlan, run_id: str, namespace: str, service_url: str,
           secret_name: str, calibration: dict | None = None) -> list[dict]:
    """ConfigMap (script + cell config) and the Indexed Job for one cell."""
    name, n = job_name(run_id, cell.cell_id), spec.k6_segments
    labels = cell_labels(cell.cell_id)
    meta = {"name": name, "namespace": namespace, "labels": labels}
    k6 = {
        "name": "k6", "image": K6_IMAGE, "command": ["sh", "-c", k6_shell(n)], "env": k6_env(name, secret_name),
        "volumeMounts": [{"name": "scripts", "mountPath": SCRIPTS}, {"name": "results", "mountPath": RESULTS}],
        "resources": K6_RESOURCES,
    }
    collector = collector_container()
    job = {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
        "spec": {
            "completionMode": "Indexed", "completions": n, "parallelism": n, "backoffLimit": 0,
            "activeDeadlineSeconds": deadline_s(spec), "ttlSecondsAfterFinished": 3600,
            "template": {"metadata": {"labels": labels}, "spec": {
                "restartPolicy": "Never", "initContainers": [k6], "containers": [collector],
                "volumes": [{"name": "scripts", "configMap": {"name": name}},
                            {"name": "results", "emptyDir": {"sizeLimit": "8Gi"}}]}},
        },
    }
    return [config_map(spec, cell, run_id, namespace, service_url, calibration), job]


def collect(run: Exec, cell_dir: Path, index: int, n_segments: int, results: str = RESULTS) -> tuple[int, int]:
    """Copy one pod's outputs into ``cell_dir`` (write-once names of its segment) and release
    the pod. Returns (k6 exit code, requests; -1 when k6 left no exit code). An output k6 did
    not produce is not written."""
    code_text = run(["sh", "-c", f"cat {results}/exit-code 2>/dev/null || echo -1"]).decode().strip()
    requests = copy_outputs(run, cell_dir, segment_files(index, n_segments), results)
    release_collector(run, results)
    return (int(code_text) if code_text.lstrip("-").isdigit() else -1), requests


def run_cell_in_cluster(kube: KubeExec, spec: LoadSpec, cell: CellPlan, run_id: str, cell_dir: Path,
                        on_state=print, calibration: dict | None = None, poll_s: float = 3) -> CellResult:
    """The cell's k6 in the cluster: a k6-operator TestRun where the cluster serves the kind,
    else the Indexed Job. Either way the cell's files land in ``cell_dir`` under the same names
    and every object made for the cell is deleted again."""
    if kube.serves(*K6_OPERATOR_KIND):
        return run_testrun_cell(kube, spec, cell, run_id, cell_dir, on_state, calibration, poll_s)
    return run_job_cell(kube, spec, cell, run_id, cell_dir, on_state, calibration, poll_s)


def in_cluster_note(kube: KubeExec) -> str:
    """The run's note on how its in-cluster cells ran (run.json, once)."""
    if kube.serves(*K6_OPERATOR_KIND):
        return (f"k6 ran in the cluster as k6-operator TestRuns (schema of operator {K6_OPERATOR_RELEASE}): "
                "runner i ran execution segment i of N after the operator's synchronized start")
    return (f"k6 ran in the cluster as Indexed Jobs: this cluster does not serve the k6-operator's "
            f"{K6_OPERATOR_KIND[1]} ({K6_OPERATOR_KIND[0]}); for TestRuns install {K6_OPERATOR_INSTALL}")


def run_job_cell(kube: KubeExec, spec: LoadSpec, cell: CellPlan, run_id: str, cell_dir: Path,
                 on_state=print, calibration: dict | None = None, poll_s: float = 3) -> CellResult:
    """Apply the cell's ConfigMap + Job, wait, copy every segment's outputs, delete both."""
    docs = render(spec, cell, run_id, kube.namespace, kube.service_url, kube.secret_name, calibration)
    name, n = docs[1]["metadata"]["name"], spec.k6_segments
    try:
        for d in docs:
            kube.apply(d)
        pods = kube.pods_ready_to_collect(name, n, deadline_s(spec), on_state, poll_s)
        codes, requests = [], 0
        for index, pod in sorted(pods.items()):
            code, seen = collect(kube.exec_in(pod), cell_dir, index, n)
            codes.append(code)
            requests += seen
        return cell_result(codes, requests, cell_dir, n)
    finally:
        for d in reversed(docs):
            kube.delete(d)


def example_objects(spec_name: str = "matrix-gpu") -> dict[str, list[dict]]:
    """Both ways' objects for one 2-segment cell, for offline validation (``make validate``):
    {"job": ConfigMap + Indexed Job, "testrun": ConfigMap + PVC + collector Pod + TestRun}."""
    from ..specs import builtin_spec, load_spec, plan_cells

    spec = load_spec(builtin_spec(spec_name), {"k6_segments": 2, "concurrency": [64]})
    args = (spec, plan_cells(spec)[-1], "20261126T000000Z-k8s-validate", "inferlab",
            "http://vllm.inferlab.svc:8000", "vllm-api-key")
    return {"job": render(*args), "testrun": render_testrun(*args)}
