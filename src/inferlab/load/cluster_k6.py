"""What both ways of running a cell's k6 inside the cluster share (the Indexed Job of
``load.incluster``, the k6-operator TestRun of ``load.testrun``): object names and labels, the
pinned images, the cell's ConfigMap (script + config), k6's environment in a pod, and the
copy-out of one k6 process's files through a pod's ``exec`` into the cell's write-once names.

The copy-out is a plain function of an ``exec`` callable (:data:`inferlab.kube.Exec`), so tests
run it against a local directory; :meth:`inferlab.kube.KubeExec.exec_in` is the cluster one.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
from pathlib import Path

from ..kube import COLLECTOR, Exec
from ..offline import K6_ENV
from ..runs.store import write_once
from ..specs import CellPlan, LoadSpec
from .k6 import REQUEST_MARK, SCRIPT, k6_config
from .workload import check_config_size

K6_IMAGE = "grafana/k6:1.1.0"  # the same k6 as the PyPI wheel the local target uses
COLLECTOR_IMAGE = "busybox:1.37.0"
RESULTS = "/results"  # where k6 writes its files in a pod
LABELS = {"app.kubernetes.io/name": "k6", "app.kubernetes.io/part-of": "inferlab",
          "app.kubernetes.io/managed-by": "inferlab", "app.kubernetes.io/component": "load"}
SMALL = {"requests": {"cpu": "50m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "32Mi"}}
K6_RESOURCES = {"requests": {"cpu": "1", "memory": "512Mi"}, "limits": {"cpu": "2", "memory": "2Gi"}}
SCRIPT_KEY = "chat.js"  # the script's key in the cell's ConfigMap
CONFIGMAP_LIMIT = 1 << 20  # bytes of a ConfigMap's data (the API server refuses more)


def collector_container() -> dict:
    """The busybox container that holds a cell's results volume until :func:`release_collector`
    (the in-cluster Job's pods and the k6-operator cell's collector Pod alike)."""
    return {"name": COLLECTOR, "image": COLLECTOR_IMAGE, "resources": SMALL,
            "command": ["sh", "-c", f"until [ -f {RESULTS}/.collected ]; do sleep 1; done"],
            "volumeMounts": [{"name": "results", "mountPath": RESULTS}]}


def release_collector(run: Exec, results: str = RESULTS) -> None:
    """Let the collector container exit: its results are copied (:func:`collector_container`)."""
    run(["touch", f"{results}/.collected"])


def job_name(run_id: str, cell_id: str) -> str:
    """DNS-1123 and unique per run and cell: ``k6-<cell>-<8 hex of run_id>``."""
    return f"k6-{cell_id}-{hashlib.sha256(run_id.encode()).hexdigest()[:8]}"[:63]


def cell_labels(cell_id: str) -> dict[str, str]:
    return {**LABELS, "inferlab.dev/cell": cell_id}


def config_map(spec: LoadSpec, cell: CellPlan, run_id: str, namespace: str, service_url: str,
               calibration: dict | None = None) -> dict:
    """The cell's ConfigMap: ``chat.js`` and ``config.json`` (what ``INFERLAB_K6_CONFIG`` holds
    locally). A workload's config (its schedule as integer arrays, no rendered prompts) is checked
    against the env-var cap, which is far below the ConfigMap's 1 MiB."""
    name = job_name(run_id, cell.cell_id)
    config = check_config_size(k6_config(spec, cell, service_url, run_id, calibration), cell.cell_id)
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "labels": cell_labels(cell.cell_id)},
            "data": {SCRIPT_KEY: SCRIPT.read_text(), "config.json": config}}


def deadline_s(spec: LoadSpec) -> int:
    """How long a cell's k6 may take in the cluster: its own limit plus scheduling, image pulls
    and (TestRun) the operator's stages."""
    return spec.max_cell_duration_s + 900


def k6_env(config_map_name: str, secret_name: str | None) -> list[dict]:
    """k6's environment in a pod: the cell config from the ConfigMap, the API key from the
    cluster's Secret (``secretKeyRef``: it never passes through inferlab; None: no key, for a pod
    that sends nothing, such as the k6-operator's initializer) and the no-usage-report switches."""
    env = [{"name": "INFERLAB_K6_CONFIG", "valueFrom": {"configMapKeyRef": {"name": config_map_name,
                                                                              "key": "config.json"}}}]
    if secret_name:
        env.append({"name": "INFERLAB_API_KEY", "valueFrom": {"secretKeyRef": {"name": secret_name, "key": "api-key"}}})
    return env + plain_env(K6_ENV)


def plain_env(values: dict[str, str]) -> list[dict]:
    return [{"name": k, "value": v} for k, v in values.items()]


def copy_outputs(run: Exec, cell_dir: Path, names: dict[str, str], results: str) -> int:
    """Copy one k6 process's ``k6.ndjson`` (gzipped on the way), ``k6-summary.json`` and, where
    it wrote one, ``k6.log`` from ``results`` into ``cell_dir`` under ``names`` (write-once,
    0444). Returns the requests in the NDJSON. A file k6 did not produce is not written."""
    blobs = {
        names["ndjson"]: run(["sh", "-c",
                              f"if [ -f {results}/k6.ndjson ]; then gzip -c {results}/k6.ndjson | base64; fi"]),
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
        write_once(cell_dir / rel, data)
    return requests
