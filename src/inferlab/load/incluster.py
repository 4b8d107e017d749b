"""In-cluster load: one sweep cell as an Indexed k6 Job, its outputs copied back into the run.

Why: from a workstation, k6 shares the client's CPU and a port-forward tunnel shapes every
latency; inside the cluster k6 talks to the vLLM Service directly. Decisions:
- a plain Indexed Job, no k6-operator to install: pod ``i`` of ``N`` runs k6 execution
  segment ``i`` (``k6_segments`` in the spec), so more load than one pod makes is split, and
  the outputs stay per segment (``k6.seg1ofN.ndjson.gz`` ...), as for local segments;
- k6 runs as an init container writing into an emptyDir and always exits 0 (its real exit
  code goes to a file), so the pod moves on to a tiny collector container that holds the
  files until we have copied them out through the API server (exec). Outputs arrive whole,
  without the kubelet's log-size limits; the collector then exits and the Job completes;
- the API key reaches k6 from the cluster's Secret (``secretKeyRef``), never through us.

The in-pod shell and the copy-out are plain functions of an ``exec`` callable, so the tests
run them locally with the real k6 (tests/load/test_incluster.py); :class:`inferlab.kube.KubeExec`
is the cluster implementation (a leaf helper, so the k8s target can build one without importing load).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import shlex
from pathlib import Path

from ..kube import Exec, KubeExec, apply
from ..offline import K6_ENV
from ..runs.layout import segment_files
from ..specs import CellPlan, LoadSpec
from .k6 import REQUEST_MARK, SCRIPT, CellResult, cell_result, execution_segments, k6_argv, k6_config
from .workload import check_config_size

K6_IMAGE = "grafana/k6:1.1.0"  # the same k6 as the PyPI wheel the local target uses
COLLECTOR_IMAGE = "busybox:1.37.0"
RESULTS, SCRIPTS = "/results", "/scripts"
LABELS = {"app.kubernetes.io/name": "k6", "app.kubernetes.io/part-of": "inferlab",
          "app.kubernetes.io/managed-by": "inferlab", "app.kubernetes.io/component": "load"}


def job_name(run_id: str, cell_id: str) -> str:
    """DNS-1123 and unique per run and cell: ``k6-<cell>-<8 hex of run_id>``."""
    return f"k6-{cell_id}-{hashlib.sha256(run_id.encode()).hexdigest()[:8]}"[:63]


def k6_shell(n_segments: int, results: str = RESULTS, script: str = f"{SCRIPTS}/chat.js") -> str:
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


CONFIGMAP_LIMIT = 1 << 20  # bytes of a ConfigMap's data (the API server refuses more)


def render(spec: LoadSpec, cell: CellPlan, run_id: str, namespace: str, service_url: str,
           secret_name: str, calibration: dict | None = None) -> list[dict]:
    """ConfigMap (script + cell config) and the Indexed Job for one cell. A workload's config
    (its schedule as integer arrays, no rendered prompts) is checked against the env-var cap,
    which is far below the ConfigMap's 1 MiB."""
    name, n = job_name(run_id, cell.cell_id), spec.k6_segments
    labels = {**LABELS, "inferlab.dev/cell": cell.cell_id}
    meta = {"name": name, "namespace": namespace, "labels": labels}
    config = check_config_size(k6_config(spec, cell, service_url, run_id, calibration), cell.cell_id)
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
                  "data": {"chat.js": SCRIPT.read_text(), "config.json": config}}
    small = {"requests": {"cpu": "50m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "32Mi"}}
    k6 = {
        "name": "k6", "image": K6_IMAGE, "command": ["sh", "-c", k6_shell(n)],
        "env": [{"name": "INFERLAB_K6_CONFIG", "valueFrom": {"configMapKeyRef": {"name": name, "key": "config.json"}}},
                {"name": "INFERLAB_API_KEY", "valueFrom": {"secretKeyRef": {"name": secret_name, "key": "api-key"}}},
                # warm-up request ids name their segment (chat.js): the pod's completion index
                {"name": "INFERLAB_K6_SEGMENT", "valueFrom": {"fieldRef": {
                    "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}},
                *({"name": k, "value": v} for k, v in K6_ENV.items())],
        "volumeMounts": [{"name": "scripts", "mountPath": SCRIPTS}, {"name": "results", "mountPath": RESULTS}],
        "resources": {"requests": {"cpu": "1", "memory": "512Mi"}, "limits": {"cpu": "2", "memory": "2Gi"}},
    }
    collector = {
        "name": "collector", "image": COLLECTOR_IMAGE,
        "command": ["sh", "-c", f"until [ -f {RESULTS}/.collected ]; do sleep 1; done"],
        "volumeMounts": [{"name": "results", "mountPath": RESULTS}], "resources": small,
    }
    job = {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
        "spec": {
            "completionMode": "Indexed", "completions": n, "parallelism": n, "backoffLimit": 0,
            "activeDeadlineSeconds": spec.max_cell_duration_s + 900, "ttlSecondsAfterFinished": 3600,
            "template": {"metadata": {"labels": labels}, "spec": {
                "restartPolicy": "Never", "initContainers": [k6], "containers": [collector],
                "volumes": [{"name": "scripts", "configMap": {"name": name}},
                            {"name": "results", "emptyDir": {"sizeLimit": "8Gi"}}]}},
        },
    }
    return [config_map, job]


def collect(run: Exec, cell_dir: Path, index: int, n_segments: int, results: str = RESULTS) -> tuple[int, int]:
    """Copy one pod's outputs into ``cell_dir`` (write-once names of its segment) and release
    the pod. Returns (k6 exit code, requests; -1 when k6 left no exit code). An output k6 did
    not produce is not written."""
    names = segment_files(index, n_segments)
    code_text = run(["sh", "-c", f"cat {results}/exit-code 2>/dev/null || echo -1"]).decode().strip()
    blobs = {
        names["ndjson"]: run(["sh", "-c", f"if [ -f {results}/k6.ndjson ]; then gzip -c {results}/k6.ndjson | base64; fi"]),
        names["summary"]: run(["sh", "-c", f"cat {results}/k6-summary.json 2>/dev/null || true"]),
        names["log"]: run(["sh", "-c", f"cat {results}/k6.log 2>/dev/null || true"]),
    }
    requests = 0
    for rel, data in blobs.items():
        if not data.strip():
            continue  # not produced (k6 never ran): no file, and the exit code says why
        if rel == names["ndjson"]:
            data = base64.b64decode(data)
            requests = gzip.decompress(data).count(REQUEST_MARK)
        with open(cell_dir / rel, "xb") as fh:
            fh.write(data)
        (cell_dir / rel).chmod(0o444)
    run(["touch", f"{results}/.collected"])
    return (int(code_text) if code_text.lstrip("-").isdigit() else -1), requests


def run_cell_in_cluster(kube: KubeExec, spec: LoadSpec, cell: CellPlan, run_id: str, cell_dir: Path,
                        on_state=print, calibration: dict | None = None) -> CellResult:
    """Apply the cell's ConfigMap + Job, wait, copy every segment's outputs, delete both."""
    from kubernetes import dynamic

    dyn = dynamic.DynamicClient(kube.api)
    docs = render(spec, cell, run_id, kube.namespace, kube.service_url, kube.secret_name, calibration)
    name, n = docs[1]["metadata"]["name"], spec.k6_segments
    try:
        for d in docs:
            apply(dyn, d)
        pods = kube.pods_ready_to_collect(name, n, docs[1]["spec"]["activeDeadlineSeconds"], on_state)
        codes, requests = [], 0
        for index, pod in sorted(pods.items()):
            code, seen = collect(kube.exec_in(pod), cell_dir, index, n)
            codes.append(code)
            requests += seen
        return cell_result(codes, requests, cell_dir, n)
    finally:
        kube.batch.delete_namespaced_job(name, kube.namespace, propagation_policy="Background")
        kube.core.delete_namespaced_config_map(name, kube.namespace)


def example_job(spec_name: str = "matrix-gpu") -> list[dict]:
    """The ConfigMap + Indexed Job of one 2-segment cell, for offline validation (``make validate``)."""
    from ..specs import builtin_spec, load_spec, plan_cells

    spec = load_spec(builtin_spec(spec_name), {"k6_segments": 2, "concurrency": [64]})
    return render(spec, plan_cells(spec)[-1], "20261126T000000Z-k8s-validate", "inferlab",
                  "http://vllm.inferlab.svc:8000", "vllm-api-key")
