"""``inferlab bisect`` end to end on the stand-in server, with real k6 and the local target: each
build is an interpreter (a wrapper that answers ``-m vllm.entrypoints.openai.api_server ARGS`` by
starting ``python -m inferlab.standin`` with that build's speed), started fresh for every repeat
as a vLLM build's would be. Planted: five builds, the service time 25 % slower from the third on
(bisect names it); three identical builds (none regressed, exit 0); two builds whose speed swings
3x between engine starts (inconclusive, exit 3). Then the k8s path up to the API (no cluster
here): every build's image renders into the overlay's engine Deployment, and a step's deploys go
through platform.deploy and kube.apply with each side's image, in the order the A/B ran. The
search itself, on synthetic outcomes: tests/analysis/test_bisect.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferlab.cli import main
from inferlab.runs.bisect_record import load_bisect
from inferlab.runs.comparison import load_comparison
from inferlab.runs.records import BISECTS
from inferlab.runs.store import sha256_file
from inferlab.specs.builds import BuildsError

from ..conftest import cli_sigterm_when, make_workspace
from ..platform.test_platform import copy_platform
from ..standin_python import standin_python

# The stand-in bisects judge 25 % service-time changes within a 5-10 % margin from 12-request
# cells: a busy machine's scheduling jitter decides them, so they run in make test's one-process
# session (two failed under three xdist processes beside other load; pyproject.toml markers)
pytestmark = pytest.mark.serial

# short cells: one cell of 2 users x 6 requests (~1 s on the stand-in); no probe, no answer check
SETS = ["concurrency=[2]", "iterations_per_vu=6", "probe.idle_requests=0", "probe.under_load_requests=0"]
GOOD = {"tpot-ms": 8.0, "prefill-base-ms": 4.0, "prefill-ms-per-token": 0.4}


def wrapper(folder: Path, name: str, speeds: list[float]) -> Path:
    """A build's interpreter, played by the stand-in: start k (0, 1, ...) of this build serves
    at ``GOOD`` service times x ``speeds[k % len(speeds)]`` (every phase of a request scaled)."""
    starts = folder / name / "bin" / "starts"
    cases = "\n".join(f"  {i}) set -- {' '.join(f'--{k} {v * s:g}' for k, v in GOOD.items())} \"$@\" ;;"
                      for i, s in enumerate(speeds))
    pick = (f'n=$(cat "{starts}" 2>/dev/null || echo 0); echo $((n + 1)) > "{starts}"\n'
            f"case $((n % {len(speeds)})) in\n{cases}\nesac")
    what = f"build {name} (the stand-in at {speeds} x the good build's service times, by engine start)"
    return standin_python(folder / name / "bin" / "python", extra="--batch-alpha 0", before=pick, what=what)


def bisect(capsys, builds: list[tuple[str, Path]], *argv: str) -> tuple[int, str, str]:
    """``inferlab bisect`` of ci-tiny's short cell over ``builds``; (exit status, its last line, all
    it printed). The primary metric is the median e2e latency: one request stalled by a busy
    machine moves a 12-request window's throughput by 20 %, its median hardly."""
    args = ["bisect", "ci-tiny", "--target", "local", "--engine-device", "cpu", "--engine-model", "/models/standin",
            "--primary", "latency_p50", "--no-answer-check", *[x for s in SETS for x in ("--set", s)], *argv]
    args += [x for name, py in builds for x in ("--build", f"{name}={py}")]
    code = main(args)
    out = capsys.readouterr()
    return code, (out.out.splitlines() or [""])[-1], out.out + out.err


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty workspace (a bisect needs no shipped sample) whose INFERLAB_ENGINE_* the
    ``--engine-*`` options may set: restored after."""
    for name in ("PYTHON", "MODEL", "DEVICE"):
        monkeypatch.delenv(f"INFERLAB_ENGINE_{name}", raising=False)
    monkeypatch.setattr("os.environ", dict(__import__("os").environ))
    return make_workspace(tmp_path / "home", monkeypatch, sample=False)


def test_bisect_names_the_build_from_which_the_service_time_is_25_percent_slower(home, tmp_path, capsys):
    builds = [(f"v{i}", wrapper(tmp_path, f"v{i}", [1.25 if i >= 3 else 1.0])) for i in range(1, 6)]
    code, last, out = bisect(capsys, builds, "--margin", "5%", "--pairs", "3", "--label", "planted")
    assert code == 1, out
    rec = load_bisect(BISECTS.folders()[0])
    assert rec.status == "complete" and rec.result == "first bad build" and rec.exit_code == 1
    assert (rec.first_bad, rec.last_good) == ("v3", "v2")
    # first against last, the middle, its left neighbour: each against the last known-good (v1 here)
    assert [(s.baseline, s.candidate, s.outcome) for s in rec.steps] == [
        ("v1", "v5", "regression"), ("v1", "v3", "regression"), ("v1", "v2", "non-inferior")]
    assert last == (f"bisect {rec.bisect_id}: first bad build: v3 (regressed beyond the margin against v1); the last "
                    "good build is v2 (exit 1)")
    folder = BISECTS.find(rec.bisect_id)
    assert load_bisect(rec.bisect_id[:13]) == rec and load_bisect(folder) == rec  # runs/records.py's id rule
    for s in rec.steps:
        c = load_comparison(s.comparison_id)
        assert c.status == "complete" and len(c.repeats) == 6
        assert c.builds["baseline"]["name"] == s.baseline and c.builds["tuned"]["name"] == s.candidate
        for r in c.repeats:  # every repeat ran on its side's build, recorded in the run too
            assert r.engine["build"] == (s.baseline if r.side == "baseline" else s.candidate)
        prim = next(x for x in s.rows if x.metric == "latency_p50")
        assert prim.outcome == s.outcome and prim.ratio is not None
        if s.outcome == "regression":  # 25 % more service time; the median request ~1.2x slower
            assert prim.ratio > 1.15 and prim.ci_low > 1.05
        assert s.gate is not None and sha256_file(folder / s.gate.path) == s.gate.sha256
        assert (folder / s.gate.path).read_text().splitlines()[-1] == s.why
    assert rec.builds_file is not None and "python:" in (folder / "builds.yaml").read_text()
    # each build's server version, as its /version said (the stand-in's never passes for a vLLM release)
    assert {b.name: (b.vllm or "").startswith("standin-") for b in rec.builds} == {
        "v1": True, "v2": True, "v3": True, "v4": False, "v5": True}
    starts = {name: int((py.parent / "starts").read_text()) for name, py in builds if (py.parent / "starts").exists()}
    assert starts == {"v1": 9, "v2": 3, "v3": 3, "v5": 3}  # an engine start per repeat; v4 never needed


def test_a_sequence_without_regression_exits_0_after_one_step(home, tmp_path, capsys):
    builds = [(f"r{i}", wrapper(tmp_path, f"r{i}", [1.0])) for i in range(1, 4)]
    code, last, out = bisect(capsys, builds, "--margin", "10%", "--pairs", "3")
    assert code == 0, out
    rec = load_bisect(BISECTS.folders()[0])
    assert rec.result == "none regressed" and [(s.baseline, s.candidate) for s in rec.steps] == [("r1", "r3")]
    assert last.startswith(f"bisect {rec.bisect_id}: none regressed: r3 is non-inferior to r1")


def test_a_noisy_sequence_is_inconclusive_and_says_between_which_builds(home, tmp_path, capsys):
    # both builds equally fast on average, but each engine start serves 0.5x, 1.5x or 1x
    builds = [(name, wrapper(tmp_path, name, [0.5, 1.5, 1.0])) for name in ("n1", "n2")]
    code, last, out = bisect(capsys, builds, "--margin", "5%", "--pairs", "3")
    assert code == 3, out
    rec = load_bisect(BISECTS.folders()[0])
    assert rec.result == "inconclusive" and (rec.last_good, rec.upper) == ("n1", "n2")
    (step,) = rec.steps
    assert step.outcome == "inconclusive" and "could not be shown within ±5 %" in step.why
    assert last.startswith(f"bisect {rec.bisect_id}: inconclusive between n1 and n2")


def test_a_bisect_cut_mid_step_resumes_in_its_record_and_names_the_same_build(home, tmp_path, capsys):
    """The planted sequence with 4 pairs a step, SIGTERMed (as a time limit's `timeout` does) once
    step 2 (v3 against v1) starts v3's engine for the second time: the bisect stops (exit 130,
    ``partial``, step 2 ``failed`` with why) keeping step 1. ``--resume`` with anything the record
    fixes is refused (exit 2, nothing run); ``--resume`` alone replays step 1 (not run again),
    continues step 2's own comparison (the same id, its cut repeat kept as recorded) and goes on:
    the same answer as an uncut bisect, v3, in one record that notes the resume."""
    builds = [(f"v{i}", wrapper(tmp_path, f"v{i}", [1.25 if i >= 3 else 1.0])) for i in range(1, 6)]
    args = ["bisect", "ci-tiny", "--target", "local", "--engine-device", "cpu", "--engine-model", "/models/standin",
            "--primary", "latency_p50", "--no-answer-check", *[x for s in SETS for x in ("--set", s)],
            "--margin", "5%", "--pairs", "4", "--label", "cut",
            *[x for name, py in builds for x in ("--build", f"{name}={py}")]]
    v3 = builds[2][1].parent / "starts"
    code, out = cli_sigterm_when(args, lambda: v3.exists() and v3.read_text().strip() == "2")
    assert code == 130, out[-3000:]
    rec = load_bisect(BISECTS.folders()[0])
    assert rec.status == "partial" and rec.exit_code == 2 and "interrupted" in rec.reason
    assert [(s.candidate, s.status, s.outcome) for s in rec.steps] == [("v5", "complete", "regression"),
                                                                       ("v3", "failed", None)]
    cut_cid = rec.steps[1].comparison_id
    assert cut_cid is not None and load_comparison(cut_cid).status == "partial"
    assert main(["bisect", "--resume", rec.bisect_id, "--margin", "5%"]) == 2  # the record fixes the margin
    assert "drop --margin" in capsys.readouterr().err and load_bisect(rec.bisect_id).status == "partial"
    v5_starts = int((builds[4][1].parent / "starts").read_text())
    assert main(["bisect", "--resume", rec.bisect_id[:20]]) == 1
    out = capsys.readouterr().out
    again = load_bisect(rec.bisect_id)
    assert again.status == "complete" and (again.first_bad, again.last_good) == ("v3", "v2"), out
    assert [(s.baseline, s.candidate, s.outcome) for s in again.steps] == [
        ("v1", "v5", "regression"), ("v1", "v3", "regression"), ("v1", "v2", "non-inferior")]
    assert again.steps[1].comparison_id == cut_cid and load_comparison(cut_cid).status == "complete"
    assert int((builds[4][1].parent / "starts").read_text()) == v5_starts  # step 1 was not run again
    assert any(n.startswith("resumed at") and "after 1 finished steps" in n for n in again.notes), again.notes
    assert main(["bisect", "--resume", rec.bisect_id]) == 2  # complete: nothing to resume
    assert "is complete" in capsys.readouterr().err


def test_usage_and_input_errors_exit_2_before_any_step(home, tmp_path, capsys):
    ok = wrapper(tmp_path, "ok", [1.0])
    code, _, out = bisect(capsys, [("a", ok), ("b", tmp_path / "missing" / "python")], "--margin", "5%")
    assert code == 2 and "build b: INFERLAB_ENGINE_PYTHON=" in out and "no such interpreter" in out, out
    code, _, out = bisect(capsys, [("a", ok)], "--margin", "5%")
    assert code == 2 and "List should have at least 2 items" in out, out
    code, _, out = bisect(capsys, [("a", ok), ("a", ok)], "--margin", "5%")
    assert code == 2 and "names must be unique" in out, out
    code, _, out = bisect(capsys, [("a", ok), ("b", ok)], "--margin", "5%", "--pairs", "2")
    assert code == 2 and "fewer than 3 repeats a side" in out, out
    code, _, out = bisect(capsys, [("a", ok), ("b", ok)], "--margin", "5%", "--target", "url")
    assert code == 2 and "not url" in out, out
    code, _, out = bisect(capsys, [("a", ok), ("b", ok)], "--margin", "5%", "--engine-python", str(ok))
    assert code == 2 and "--engine-python names one interpreter" in out, out
    bad = tmp_path / "builds.yaml"
    bad.write_text(f"builds:\n  - name: a\n    python: {ok}\n  - name: b\n    pyhton: {ok}\n")
    code, _, out = bisect(capsys, [], "--margin", "5%", "--builds", str(bad))
    assert code == 2 and f"{bad}: invalid builds file" in out and "builds.1.pyhton: Extra inputs are not permitted " \
        "(line 5)" in out, out
    assert not BISECTS.folders()  # nothing recorded: refused before the first step


# --- k8s: builds are image tags, tested up to the API (no cluster here) -------------------------------


@pytest.fixture
def k8s_home(home, monkeypatch, tmp_path):
    """The workspace with its own platform/ and secrets (so renders are deterministic), no cluster."""
    from inferlab.platform.secrets_gen import make_platform_secrets

    copy_platform(home)
    make_platform_secrets()
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    return home


def test_every_k8s_builds_image_renders_into_the_engine_deployment_and_nothing_else(k8s_home):
    from inferlab.platform.render import engine_container, kustomize_build
    from inferlab.specs.builds import build_from_option, build_list
    from inferlab.sweep.bisect import prepare_builds

    builds = build_list([build_from_option("old=v0.30.0", "k8s"), build_from_option("dev=ghcr.io/me/vllm-cpu:dev-7", "k8s")])
    old, dev = prepare_builds(builds, "k8s", "cpu")
    repo = "public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo"  # the cpu overlay's engine image (components/cpu)
    assert old.override == {"name": repo, "newTag": "v0.30.0"} and old.rendered_image == f"{repo}:v0.30.0"
    assert dev.override == {"name": repo, "newName": "ghcr.io/me/vllm-cpu", "newTag": "dev-7"}
    assert dev.rendered_image == "ghcr.io/me/vllm-cpu:dev-7"
    plain, built = kustomize_build("cpu"), kustomize_build("cpu", images=[old.override])
    assert engine_container(plain)["image"] == f"{repo}:v0.32.0"
    engine_container(built)["image"] = engine_container(plain)["image"]
    assert built == plain  # the image override touches the engine's image and nothing else
    with pytest.raises(BuildsError, match="build x: image ghcr.io/me/engine:1 in overlay cpu: expected one vLLM"):
        prepare_builds(build_list([build_from_option("x=ghcr.io/me/engine:1", "k8s"),
                                   build_from_option("y=v1", "k8s")]), "k8s", "cpu")
    with pytest.raises(BuildsError, match="the builds are k8s builds .* but the target is local"):
        prepare_builds(builds, "local", None)


class RollingCluster:
    """The DynamicClient at the API boundary, past discovery: serves every group the overlay uses,
    records each server-side apply (body and options) and each patch, reads every Deployment as
    rolled out and lists one Running engine pod."""

    def __init__(self) -> None:
        from types import SimpleNamespace as NS

        self.applied, self.patched, self.resources = [], [], self
        self.deployment = NS(spec=NS(replicas=1), metadata=NS(generation=1),
                             status=NS(readyReplicas=1, updatedReplicas=1, observedGeneration=1))
        self.pods = NS(items=[NS(metadata=NS(name="vllm-0", uid="u0"), status=NS(phase="Running", startTime="t"))])

    def get(self, api_version=None, kind=None, name=None, namespace=None, label_selector=None):
        if api_version is not None:  # discovery: every kind is served
            return self
        return self.pods if label_selector else self.deployment

    def server_side_apply(self, body, **options):
        self.applied.append((body, options))

    def patch(self, **kw):
        self.patched.append(kw)


def test_a_steps_deploy_applies_its_builds_image_through_the_kube_layer(k8s_home, monkeypatch):
    from inferlab.platform import deploy
    from inferlab.specs.builds import build_from_option
    from inferlab.sweep.ab import _deploy, _side_images

    cluster = RollingCluster()
    monkeypatch.setattr(deploy, "cluster_client", lambda: cluster)  # platform.deploy's client
    monkeypatch.setattr("inferlab.kube.cluster_client", lambda: cluster)  # the engine restart's
    monkeypatch.setattr(deploy, "node_gpu_facts", lambda dyn: [])
    build = build_from_option("v31=v0.31.0", "k8s")
    images = _side_images(("cpu", "cpu"), {"baseline": {"name": "base"}, "tuned": build.model_dump()})
    assert set(images) == {"tuned"}  # a side without a build image deploys its overlay as it is
    got = _deploy(("cpu", "cpu"), "tuned", images["tuned"], build)
    (dep, options), = [(b, o) for b, o in cluster.applied if b["kind"] == "Deployment" and b["metadata"]["name"] == "vllm"]
    assert options["field_manager"] == "inferlab" and options["namespace"] == "inferlab"  # kube.apply: server-side
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"].endswith("vllm-cpu-release-repo:v0.31.0")
    assert got["images"] == [{"name": "public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo", "newTag": "v0.31.0"}]
    assert cluster.patched and cluster.patched[0]["name"] == "vllm"  # then the engine pods restarted
    assert got["pods"] == [{"pod": "vllm-0", "uid": "u0", "started_at": "t"}]


def test_an_ab_refuses_a_build_whose_recorded_images_entry_the_overlay_no_longer_renders(k8s_home):
    """A bisect records each build's kustomize images entry; an A/B of it (a resume in another
    checkout included) renders it again once and refuses when the overlay renders it otherwise."""
    from inferlab.specs.builds import build_from_option
    from inferlab.sweep.ab import _side_images

    build = build_from_option("v31=v0.31.0", "k8s").model_dump()
    entry = _side_images(("cpu", "cpu"), {"tuned": build})["tuned"][0]
    assert _side_images(("cpu", "cpu"), {"tuned": {**build, "override": entry}}) == {"tuned": [entry]}
    stale = {**entry, "name": "registry.example/vllm-old"}
    with pytest.raises(RuntimeError, match="overlay 'cpu' now renders its image as .* the overlay changed"):
        _side_images(("cpu", "cpu"), {"tuned": {**build, "override": stale}})


def test_a_k8s_bisect_without_a_cluster_stops_at_the_first_deploy_and_records_why(k8s_home, capsys):
    code = main(["bisect", "ci-tiny", "--target", "k8s", "--overlay", "cpu", "--margin", "5%", "--no-answer-check",
                 "--build", "old=v0.30.0", "--build", "new=v0.31.0", "--label", "k8s"])
    out = capsys.readouterr()
    assert code == 2, out
    assert "deploy of overlay 'cpu' with image v0.30.0 (build old) exited 3" in out.err
    rec = load_bisect(BISECTS.folders()[0])
    assert rec.status == "failed" and rec.exit_code == 2 and rec.result is None
    assert [b.rendered_image for b in rec.builds] == [f"public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo:{t}"
                                                      for t in ("v0.30.0", "v0.31.0")]
    (step,) = rec.steps
    assert step.status == "failed" and "exited 3" in step.why and step.comparison_id is None
    c = load_comparison(next((k8s_home / "data" / "comparisons").iterdir()))
    assert c.status == "failed" and c.builds["baseline"]["image"] == "v0.30.0" and c.repeats == []
