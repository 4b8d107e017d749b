"""In-cluster load as a k6-operator TestRun, without a cluster.

- The generated objects validate: the TestRun against ``platform/schemas/TestRun.json`` (the
  fields inferlab uses, written from the operator v1.1.1 CRD), the rest against Kubernetes 1.32,
  all against the project policy; a misspelled or misplaced TestRun field is rejected.
- The cell through the API boundary: :class:`tests.load.fake_cluster.FakeCluster` plays the API
  server, kubelet, Job controller and k6-operator with the real k6 against the stand-in server.
  A TestRun cell and a Job cell of the same spec end up with the same files, recorded and
  hashed alike in run.json, read by the same loader into the same rows (the TestRun's carry
  the operator's two run tags more), with one warm-up per cell, not one per runner, and every
  X-Request-Id the server saw unique and accounted for.
"""

from __future__ import annotations

import copy
import json

import pytest

from inferlab.kube import K6_OPERATOR_INSTALL
from inferlab.load import testrun as testrun_mod
from inferlab.load.incluster import example_objects, in_cluster_note, run_cell_in_cluster
from inferlab.load.testrun import RUNNER_ENV, arguments, render_testrun
from inferlab.offline import K6_ENV
from inferlab.platform.validate import policy_errors, schema_errors
from inferlab.runs.layout import segment_files
from inferlab.runs.manifest import CellRecord
from inferlab.runs.reader import Run
from inferlab.runs.store import RunWriter
from inferlab.runs.verify import verify_run
from inferlab.specs import builtin_spec, load_spec, plan_cells
from inferlab.standin import StandIn

from ..runs.test_store import manifest
from .fake_cluster import FakeCluster

RUN_ID = "20261204T000000Z-k8s-testrun"
OPERATOR_TAGS = {"instance_id", "testrun_name"}  # pkg/resources/jobs/runner.go adds them to every runner


@pytest.fixture
def spec():
    return load_spec(builtin_spec("ci-tiny"), {"k6_segments": 2, "concurrency": [2], "min_iterations": 10,
                                               "warmup_requests": 2})


def the_testrun(spec) -> dict:
    return render_testrun(spec, plan_cells(spec)[0], RUN_ID, "inferlab", "http://vllm.inferlab.svc:8000",
                          "vllm-api-key-abc")[-1]


# ---------------------------------------------------------------- the objects, offline

def test_generated_objects_validate_and_say_what_the_issue_asks(spec):
    docs = render_testrun(spec, plan_cells(spec)[0], RUN_ID, "inferlab", "http://vllm.inferlab.svc:8000",
                          "vllm-api-key-abc")
    assert [d["kind"] for d in docs] == ["ConfigMap", "PersistentVolumeClaim", "Pod", "TestRun"]
    for d in docs:
        assert schema_errors(d) == [] and policy_errors(d) == [], d["kind"]
    tr = docs[-1]["spec"]
    assert tr["parallelism"] == spec.k6_segments == 2 and tr["paused"] == "true" and "cleanup" not in tr
    assert tr["script"] == {"configMap": {"name": docs[0]["metadata"]["name"], "file": "chat.js"}}
    for role in ("initializer", "starter", "runner"):  # the operator gives each pod its own env only
        env = {e["name"]: e.get("value") for e in tr[role]["env"]}
        assert all(env.get(k) == v for k, v in K6_ENV.items()), role
    names = {role: {e["name"] for e in tr[role]["env"]} for role in ("initializer", "starter", "runner")}
    assert "INFERLAB_K6_CONFIG" in names["initializer"] and "INFERLAB_API_KEY" not in names["initializer"]
    assert {"INFERLAB_K6_CONFIG", "INFERLAB_API_KEY", RUNNER_ENV} <= names["runner"]
    assert "api-key-abc" not in json.dumps(tr).replace("vllm-api-key-abc", "")  # the key by reference only
    assert arguments().split() == ["--include-system-env-vars", "--no-color", "--out", "json=/results/k6.ndjson",
                                   "--summary-export", "/results/k6-summary.json"]
    # make validate checks the same objects for both ways
    both = example_objects()
    assert [d["kind"] for d in both["testrun"]] == [d["kind"] for d in docs]
    assert all(schema_errors(d) == [] and policy_errors(d) == [] for way in both.values() for d in way)


def _walk(node, keys: list[str]):
    for key in keys:
        node = node[int(key)] if key.isdigit() else node[key]
    return node


def _at(doc: dict, path: str):
    """A deep copy of ``doc``, the container of the dotted ``path``'s last key in it, and that key."""
    out = copy.deepcopy(doc)
    *parents, last = path.split(".")
    return out, _walk(out, parents), last


def _set(doc: dict, path: str, value) -> dict:
    out, node, last = _at(doc, path)
    node[last] = value
    return out


def _rename(doc: dict, path: str, new: str) -> dict:
    out, node, last = _at(doc, path)
    node[new] = node.pop(last)
    return out


def _move(doc: dict, path: str, to: str) -> dict:
    """Take the field at ``path`` and put it, same name, under ``to``."""
    out, node, last = _at(doc, path)
    _walk(out, to.split("."))[last] = node.pop(last)
    return out


BROKEN = {
    "misspelled spec.paralelism": lambda d: _rename(d, "spec.parallelism", "paralelism"),
    "misspelled runner.enviroment": lambda d: _rename(d, "spec.runner.env", "enviroment"),
    "misspelled volumeMounts subpathExpr": lambda d: _rename(d, "spec.runner.volumeMounts.0.subPathExpr",
                                                             "subpathExpr"),
    "misspelled secretKeyRef": lambda d: _rename(d, "spec.runner.env.1.valueFrom.secretKeyRef", "secretRef"),
    "misplaced env under spec": lambda d: _move(d, "spec.runner.env", "spec"),
    "misplaced parallelism under runner": lambda d: _move(d, "spec.parallelism", "spec.runner"),
    "misplaced configMap beside script": lambda d: _move(d, "spec.script.configMap", "spec"),
    "misplaced subPathExpr on the volume": lambda d: _move(d, "spec.runner.volumeMounts.0.subPathExpr",
                                                           "spec.runner.volumes.0"),
    "misplaced image under metadata": lambda d: _move(d, "spec.starter.image", "spec.starter.metadata"),
    "cleanup not the CRD's enum": lambda d: _set(d, "spec.cleanup", "always"),
    "quiet as a boolean (the CRD's is a string)": lambda d: _set(d, "spec.quiet", True),
    "parallelism as a string": lambda d: _set(d, "spec.parallelism", "2"),
    "env with value and valueFrom": lambda d: _set(d, "spec.runner.env.0.value", "{}"),
}


@pytest.mark.parametrize("what", BROKEN)
def test_schema_rejects_misspelled_and_misplaced_fields(spec, what):
    good = the_testrun(spec)
    assert schema_errors(good) == []
    errs = schema_errors(BROKEN[what](good))
    assert errs and all(e.startswith(f"TestRun/{good['metadata']['name']}: ") for e in errs), (what, errs)


def test_policy_wants_pinned_images_and_no_usage_report_in_every_operator_pod(spec):
    good = the_testrun(spec)
    latest = _set(good, "spec.starter.image", "ghcr.io/grafana/k6-operator:latest-starter")
    assert any("container starter image" in e and "pinned" in e for e in policy_errors(latest))
    no_switch = _set(good, "spec.initializer.env", [e for e in good["spec"]["initializer"]["env"]
                                                     if e["name"] not in K6_ENV])
    assert any("initializer runs without K6_NO_USAGE_REPORT=true" in e for e in policy_errors(no_switch))


# ---------------------------------------------------------------- the cell, through the fake cluster

def _cell(tmp_path, spec, standin, operator: bool, cell_id: str):
    cluster = FakeCluster(tmp_path / f"cluster-{cell_id}", standin.base_url, standin.api_key, operator)
    m = manifest(RUN_ID + ("-op" if operator else "-job"))
    plan = plan_cells(spec)[0]
    m.cells = [CellRecord(cell_id=cell_id, payload=plan.payload, vus=plan.vus, executor=plan.executor,
                          iterations=plan.iterations)]
    w = RunWriter.create(tmp_path / m.run_id, m)
    cell_dir = w.dir / "cells" / cell_id
    cell_dir.mkdir(parents=True)
    try:
        result = run_cell_in_cluster(cluster, spec, plan, m.run_id, cell_dir, on_state=lambda msg: None, poll_s=0.05)
    finally:
        cluster.close()
    w.note(in_cluster_note(cluster))
    w.checkpoint()
    return cluster, w, result


def test_a_testrun_cell_matches_a_job_cell(tmp_path, spec):
    cell_id = plan_cells(spec)[0].cell_id
    with StandIn(tpot_ms=1, api_key="k-standin", served_model_name=spec.model) as s:
        op, op_run, op_result = _cell(tmp_path, spec, s, operator=True, cell_id=cell_id)
        job, job_run, job_result = _cell(tmp_path, spec, s, operator=False, cell_id=cell_id)
        server_ids = [r.request_id for r in s.stats().requests]
    assert op.failures == [] and job.failures == []
    # the TestRun way: initializer (with the config and the switch, not the key), N paused runners, one start
    tr = next(name for verb, kind, name in op.calls if kind == "TestRun")
    assert ("apply", "TestRun", tr) in op.calls and ("delete", "TestRun", tr) in op.calls
    runner_cmds = {p: c for p, c in op.commands.items() if p.startswith(f"{tr}-1-") or p.startswith(f"{tr}-2-")}
    assert len(runner_cmds) == 2 and all("--paused" in c for c in runner_cmds.values())
    assert sorted(op.unpaused) == sorted(runner_cmds)  # the starter unpaused each runner once
    # every object made for the cell is gone again, both ways
    for cluster in (op, job):
        applied = [(k, n) for verb, k, n in cluster.calls if verb == "apply"]
        deleted = [(k, n) for verb, k, n in cluster.calls if verb == "delete"]
        assert sorted(applied) == sorted(deleted) and cluster.objects == {}
    assert {k for _, k, _ in op.calls} == {"ConfigMap", "PersistentVolumeClaim", "Pod", "TestRun"}
    assert {k for _, k, _ in job.calls} == {"ConfigMap", "Job"}
    assert "k6-operator TestRuns" in op_run.manifest.notes[0] and K6_OPERATOR_INSTALL in job_run.manifest.notes[0]

    # the same cell files, recorded and hashed alike
    def cell_files(w):
        return {f.path.split("/", 2)[2]: f for f in w.manifest.files if f.path.startswith(f"cells/{cell_id}/")}

    op_files, job_files = cell_files(op_run), cell_files(job_run)
    expected = {name for i in range(2) for name in segment_files(i, 2).values()}
    assert set(op_files) == set(job_files) == expected
    assert all(len(f.sha256) == 64 and f.bytes > 0 for f in [*op_files.values(), *job_files.values()])
    assert verify_run(op_run.dir) == [] and verify_run(job_run.dir) == []
    assert op_result.exit_code == job_result.exit_code == 0 and op_result.thresholds_passed
    # one warm-up per cell (split over the runners), not one per runner
    assert op_result.requests_seen == job_result.requests_seen == 10 + 2

    # the same loader, the same rows
    op_req, job_req = Run(op_run.dir).requests, Run(job_run.dir).requests
    assert set(op_req.columns) - set(job_req.columns) == OPERATOR_TAGS
    assert set(job_req.columns) <= set(op_req.columns)
    for req in (op_req, job_req):
        assert (req["phase"] == "measure").sum() == 10 and (req["phase"] == "warmup").sum() == 2
        measured = req.loc[req["phase"] == "measure", "request_id"]
        assert measured.is_unique and measured.str.fullmatch(rf"{req['run_id'].iloc[0]}\.{cell_id}\.m\d+").all()
    assert sorted(op_req["instance_id"].dropna().unique()) == ["1", "2"]

    # every X-Request-Id the server saw is unique: the measured ones as k6 recorded them, the
    # warm-up as w<segment>-<n> with n counted over the cell (one per runner here)
    for run_id, req in ((op_run.manifest.run_id, op_req), (job_run.manifest.run_id, job_req)):
        seen = [i for i in server_ids if i.startswith(f"{run_id}.")]
        assert len(seen) == len(set(seen)) == 12
        warm = sorted(i.rsplit(".", 1)[1] for i in seen if ".w" in i)
        assert warm == ["w0-0", "w1-1"], warm
        measured = set(req.loc[req["phase"] == "measure", "request_id"])
        assert set(seen) - {f"{run_id}.{cell_id}.{w}" for w in warm} == measured


def test_the_initializer_needs_the_environment_in_its_archive(tmp_path, spec, monkeypatch):
    """The trap the fake found: the operator runs ``k6 archive`` with the TestRun's arguments,
    and k6 archive leaves the pod's environment out unless told, so chat.js's init context
    would parse no config. Without --include-system-env-vars the initializer fails, and the
    cell says why at once (it does not wait for its deadline)."""
    monkeypatch.setattr(testrun_mod, "arguments", lambda: "--no-color --out json=/results/k6.ndjson")
    with StandIn(tpot_ms=1, api_key="k", served_model_name=spec.model) as s:
        cluster = FakeCluster(tmp_path / "cluster", s.base_url, s.api_key, operator=True)
        cell_dir = tmp_path / "cell"
        cell_dir.mkdir()
        try:
            with pytest.raises(RuntimeError, match=r"k6-operator pod k6-.*-initializer-\d+ failed: .*level=error"):
                run_cell_in_cluster(cluster, spec, plan_cells(spec)[0], RUN_ID, cell_dir, lambda m: None, poll_s=0.05)
        finally:
            cluster.close()
    assert cluster.objects == {} and list(cell_dir.iterdir()) == []  # cleaned up, nothing half-written


def test_stage_error_a_stuck_runner_and_an_unbound_volume_fail_fast(spec, monkeypatch):
    from types import SimpleNamespace as NS

    tr = the_testrun(spec)

    class Cluster:
        namespace = "inferlab"

        def __init__(self, stage, pods):
            self.stage, self._pods = stage, pods

        def status(self, doc):
            return {"stage": self.stage}

        def pods(self, selector):
            return self._pods

    with pytest.raises(RuntimeError, match="operator set stage error"):
        testrun_mod.wait_finished(Cluster("error", []), tr, 2, float("inf"), lambda m: None, 0)
    waiting = NS(name="k6", state=NS(waiting=NS(reason="ErrImagePull", message="grafana/k6:9.9.9"), terminated=None))
    pod = NS(metadata=NS(name=f"{tr['metadata']['name']}-1-x", labels={"runner": "true", "job-name": "x-1"}),
             status=NS(phase="Pending", init_container_statuses=None, container_statuses=[waiting]))
    with pytest.raises(RuntimeError, match="k6-operator pod .*-1-x container k6: ErrImagePull: grafana/k6:9.9.9"):
        testrun_mod.wait_finished(Cluster("created", [pod]), tr, 2, float("inf"), lambda m: None, 0)
    # a results volume no StorageClass binds: the collector never schedules; said within minutes, with why
    unschedulable = NS(type="PodScheduled", status="False",
                       message="0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims")
    unbound = NS(metadata=NS(name="c"), status=NS(phase="Pending", init_container_statuses=None,
                                                  container_statuses=None, conditions=[unschedulable]))
    monkeypatch.setattr(testrun_mod, "COLLECTOR_WAIT_S", 0.2)
    with pytest.raises(TimeoutError, match="unbound immediate PersistentVolumeClaims.*needs a default StorageClass"):
        testrun_mod.wait_collector(Cluster("", [unbound]), "k6-x", float("inf"), lambda m: None, 0.05)
