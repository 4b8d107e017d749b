"""inferlab tune: the search space and its mapping to vLLM flags, the study and its resume,
failed candidates, components validated by kustomize, the capacity plan and the trigger rule,
the replicas' balancer (real nginx), the report; and the search ranking a known-worse setting
(``--max-num-seqs 1``) below the default, on the stand-in server restarted per candidate."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shlex
import shutil
import signal
import threading
from pathlib import Path

import nbformat
import optuna
import pandas as pd
import pytest
import yaml

from inferlab.analysis.plan import (SIGNALS, autoscale_trigger, choose_trigger, plan_capacity, plan_from_result, replicas_for,
                                    scaling_check)
from inferlab.paths import platform_dir
from inferlab.runs.tune_record import STUDY, Trial, load_tune, save_tune, tunes_dir
from inferlab.specs import SpecError
from inferlab.specs.tune import (TuneSpec, baseline_point, changed_flags, engine_args, load_tune_spec,
                                 tunes_spec_dir)
from inferlab.sweep import components
from inferlab.sweep.tune import INTERRUPTED, distributions, tune
from inferlab.targets.replicas import Balancer, replica_specs

from .tune_sample import BASE, SAMPLE_CAPACITY


@pytest.fixture
def spec() -> TuneSpec:
    return load_tune_spec("tune-local")


# ---------------------------------------------------------------- spec and mapping

@pytest.mark.parametrize("path", sorted(tunes_spec_dir().glob("*.yaml")), ids=lambda p: p.name)
def test_builtin_tune_specs_validate(path):
    s = load_tune_spec(path)
    assert s.seed_trials and s.space


@pytest.mark.parametrize(("patch", "message"), [
    ({"spce": {}}, r"spce: Extra inputs"),
    ({"seed_trials": [{"name": "x", "params": {"max_num_seq": 1}}]}, r"max_num_seq: no such parameter"),
    ({"seed_trials": [{"name": "x", "params": {"max_num_seqs": 3}}]}, r"3 not in \[1, 4, 16, 64, 128\]"),
    ({"space": {"eager": {"kind": "bool", "flag": "--enforce-eager", "default": True}}}, r"needs off_flag"),
    ({"space": {"n": {"kind": "int", "flag": "--max-num-seqs", "low": 2, "high": 8, "default": 128}}},
     r"default 128 is outside \[2, 8\]"),
    ({"space": {"n": {"kind": "categorical", "flag": "max-num-seqs", "choices": [1, 2], "default": 1}}},
     r"space.n.categorical.flag"),
])
def test_a_bad_tune_spec_names_file_and_field(tmp_path, patch, message):
    data = yaml.safe_load((tunes_spec_dir() / "tune-local.yaml").read_text())
    if "space" in patch:
        data["seed_trials"] = [{"name": "default"}]
    data.update(patch)
    p = tmp_path / "t.yaml"
    p.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError, match=message) as exc:
        load_tune_spec(p)
    assert str(p) in str(exc.value)


def test_the_baseline_maps_back_to_its_own_arguments(spec):
    point = baseline_point(spec.space, BASE)
    assert point == {"max_num_seqs": 128, "max_num_batched_tokens": 2048, "chunked_prefill": True,
                     "prefix_caching": True, "enforce_eager": True}
    assert sorted(engine_args(spec.space, BASE, point)) == sorted(BASE)
    assert changed_flags(spec.space, point) == ["--enforce-eager"]  # the one flag that differs from vLLM's defaults


def test_a_point_maps_to_flags_only_where_it_leaves_the_default(spec):
    point = {**baseline_point(spec.space, BASE), "max_num_seqs": 1, "chunked_prefill": False, "enforce_eager": False}
    assert engine_args(spec.space, BASE, point) == ["--max-model-len", "2048", "--max-num-seqs", "1",
                                                    "--no-enable-chunked-prefill"]
    # the platform's spelling (--flag=value) is read too, and searched flags are replaced, not doubled
    eq = ["--model=$(MODEL)", "--max-num-seqs=256", "--enable-prefix-caching", "--port=8000"]
    assert baseline_point(spec.space, eq)["max_num_seqs"] == 256  # not a choice, still read as the deployed value
    assert engine_args(spec.space, eq, {"max_num_seqs": 16}) == ["--model=$(MODEL)", "--port=8000", "--max-num-seqs",
                                                                 "16"]


def test_distributions_follow_the_space(spec):
    d = distributions(spec.space)
    assert isinstance(d["max_num_seqs"], optuna.distributions.CategoricalDistribution)
    assert d["max_num_seqs"].choices == (1, 4, 16, 64, 128)
    assert d["enforce_eager"].choices == (False, True)
    s = TuneSpec.model_validate({**spec.model_dump(), "seed_trials": [{"name": "default"}], "space": {
        "tokens": {"kind": "int", "flag": "--max-num-batched-tokens", "low": 256, "high": 8192, "log": True,
                   "default": 2048}}})
    assert distributions(s.space)["tokens"] == optuna.distributions.IntDistribution(256, 8192, log=True)


# ---------------------------------------------------------------- the study: failed candidates, resume

def _url_spec(spec: TuneSpec, tmp_path: Path, command: str, trials: int) -> TuneSpec:
    (tmp_path / "restart.sh").write_text(command)
    return spec.model_copy(update={"restart_command_file": str(tmp_path / "restart.sh"),
                                   "set": [*spec.set, "engine.startup_timeout_s=2"],
                                   "budget": spec.budget.model_copy(update={"max_trials": trials})})


def test_candidates_whose_server_does_not_start_are_failed_trials_and_resume_continues(workspace, spec, tmp_path,
                                                                                        monkeypatch):
    """Target url with a real restart command that fails: every candidate is a failed trial (no
    crash), the seeds come first, the study lives in the record; resume adds trials to the same
    study, and a trial cut by Ctrl-C is failed and its candidate run again."""
    monkeypatch.delenv("INFERLAB_TUNE_RESTART_COMMAND", raising=False)
    s = _url_spec(spec, tmp_path, 'echo "args: $INFERLAB_ENGINE_ARGS" >&2; exit 3', trials=3)
    tid = tune(s, target="url", base_url="http://127.0.0.1:9")
    rec = load_tune(tid)
    assert (tunes_dir() / tid / STUDY).is_file()
    assert [t.seed for t in rec.trials[:2]] == ["default", "one-seq"]
    assert [t.state for t in rec.trials] == ["failed"] * 3
    assert "restart command exited 3" in rec.trials[0].reason and "--max-model-len 2048" in rec.trials[0].reason
    assert rec.trials[1].params["max_num_seqs"] == 1 and "--max-num-seqs 1" in rec.trials[1].reason
    assert rec.status == "complete" and rec.best is None and rec.confirmation.outcome == "not run"

    # a trial left RUNNING (the process was killed mid-trial)
    study = optuna.load_study(study_name=tid, storage=f"sqlite:///{tunes_dir() / tid / STUDY}")
    cut = study.ask(distributions(s.space))
    # its real arguments: resume must run it again, not reuse the interrupted trial's "result"
    rec.trials.append(Trial(number=cut.number, params=cut.params, args=engine_args(s.space, rec.baseline_args,
                                                                                   cut.params)))
    save_tune(rec, tunes_dir() / tid)

    s2 = s.model_copy(update={"budget": s.budget.model_copy(update={"max_trials": 5})})
    with pytest.raises(ValueError, match="spec differs"):
        tune(s2.model_copy(update={"name": "other"}), target="url", base_url="http://127.0.0.1:9", resume=tid)
    # the budget is not part of the spec's identity: a resume may grant more trials
    s2 = s2.model_copy(update={"budget": s.budget})
    tune(s2, target="url", base_url="http://127.0.0.1:9", resume=tid,
         budget=s.budget.model_copy(update={"max_trials": 5}))
    rec = load_tune(tid)
    numbers = [t.number for t in rec.trials]
    assert numbers == sorted(set(numbers)) and len(numbers) == 6  # 3 + the cut one + 2 more
    assert rec.trial(cut.number).state == "failed" and rec.trial(cut.number).reason == INTERRUPTED
    assert rec.trials[4].params == cut.params  # the cut candidate enqueued again, first
    assert rec.trials[4].duplicate_of is None and "restart command exited 3" in rec.trials[4].reason  # and run
    study = optuna.load_study(study_name=tid, storage=f"sqlite:///{tunes_dir() / tid / STUDY}")
    assert len(study.trials) == 6
    assert {t.state for t in study.trials} == {optuna.trial.TrialState.FAIL}


def test_a_server_that_never_answers_is_a_failed_trial(workspace, spec, tmp_path, monkeypatch):
    monkeypatch.delenv("INFERLAB_TUNE_RESTART_COMMAND", raising=False)
    tid = tune(_url_spec(spec, tmp_path, "true", trials=1), target="url", base_url="http://127.0.0.1:9")
    (t,) = load_tune(tid).trials
    assert t.state == "failed" and "did not answer 200 within 2 s" in t.reason and t.run_id is None


def test_url_target_needs_a_restart_command(workspace, spec, monkeypatch):
    monkeypatch.delenv("INFERLAB_TUNE_RESTART_COMMAND", raising=False)
    with pytest.raises(ValueError, match="INFERLAB_TUNE_RESTART_COMMAND"):
        tune(spec, target="url", base_url="http://127.0.0.1:9")


# ---------------------------------------------------------------- components, validated by kustomize

@pytest.fixture
def platform_copy(tmp_path) -> Path:
    root = tmp_path / "platform"
    src = platform_dir()
    shutil.copytree(src, root, ignore=lambda d, names: ["values"] if Path(d) == src / "secrets" else [])
    return root


def test_winner_component_names_each_changed_flag_and_builds(spec, platform_copy):
    point = {**baseline_point(spec.space, BASE), "max_num_seqs": 16, "prefix_caching": False, "enforce_eager": False}
    d = components.write_engine_component("engine-tuned-local", "cpu", spec.space, point, ["from a test"],
                                          root=platform_copy)
    text = (d / "kustomization.yaml").read_text()
    assert "sets --max-num-seqs=16" in text and "sets --no-enable-prefix-caching" in text
    assert "drops --enforce-eager" in text  # the cpu overlay runs eager; the winner does not
    docs = components.build_with(platform_copy, "cpu", "engine-tuned-local")
    vllm = next(x for x in docs if x["kind"] == "Deployment" and x["metadata"]["name"] == "vllm")
    args = vllm["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == ["--model=$(MODEL)", "--served-model-name=$(SERVED_MODEL_NAME)", "--max-model-len=2048",
                    "--port=8000", "--max-num-seqs=16", "--no-enable-prefix-caching"]
    assert components.validate_component("engine-tuned-local", "cpu", platform_copy) == []


def test_autoscale_component_carries_the_measured_trigger_and_validation_can_fail(platform_copy):
    table = _steps({2: (True, 0.0, 3.0, 1.2), 4: (True, 0.2, 9.0, 2.3), 6: (False, 4.0, 12.0, 4.0)})
    trig = choose_trigger(table, 4, 6, run_id="run-x")
    d = components.write_autoscale_component("autoscale-measured", trig, overlay="cpu", root=platform_copy)
    so = yaml.safe_load((d / "vllm-scaledobject.yaml").read_text())
    meta = so["spec"]["triggers"][0]["metadata"]
    assert meta["query"] == SIGNALS["waiting"][1] and meta["threshold"] == "0.5"
    assert "run-x" in (d / "kustomization.yaml").read_text()
    # a trigger on a metric vLLM does not export fails validation and is not kept
    trig.query = 'sum(vllm:no_such_metric{namespace="inferlab"})'
    with pytest.raises(ValueError, match="no_such_metric"):
        components.write_autoscale_component("autoscale-broken", trig, overlay="cpu", root=platform_copy)
    assert not (platform_copy / "components" / "autoscale-broken").exists()


@pytest.mark.parametrize(("name", "overlay"), sorted(components.written_components().items()))
def test_every_written_component_in_the_checkout_validates(name, overlay):
    """Components a tune or a plan wrote into platform/components/ (no overlay uses them yet, so
    `make validate` would not see them) build with their overlay and pass its checks."""
    assert components.validate_component(name, overlay) == []


# ---------------------------------------------------------------- plan arithmetic and the trigger rule

def test_plan_arithmetic():
    assert replicas_for(10, 3.25, 0.2) == 4  # 10 / 2.6 = 3.85
    assert replicas_for(5.2, 3.25, 0.2) == 2  # exactly 2 x 2.6: no rounding up past it
    assert replicas_for(0.1, 3.25, 0.0) == 1
    p = plan_capacity(20, 3.25, 0.2, gpus_per_replica=2)
    assert (p.replicas, p.gpus, p.predicted_rate, p.basis) == (8, 16, 26.0, "certified lower bound")
    assert "linear scaling" in p.assumption and set(p.table()["quantity"]) >= {"replicas", "gpus", "assumption", "basis"}
    assert "rule out" not in p.table().to_string()
    # a certified record sizes from its certified lower bound, never from the boundary interval
    cert = {"judge": "certified", "certified_rate": 3.1, "claim": "at least 3.1 req/s with p99 ttft_ms <= 500, 95% "
            "confidence", "interval_low": 3.3, "interval_high": 3.9, "config": {"alpha": 0.05}}
    q = plan_from_result(cert, 20, 0.2)
    assert q.basis_rate == 3.1 and q.replicas == 9 and "certified lower bound (95% confidence)" in q.basis
    assert "information only" in q.boundary_interval
    with pytest.raises(ValueError, match="certified no rate"):
        plan_from_result({**cert, "certified_rate": None}, 20, 0.2, where="run x")
    legacy = plan_from_result({"msr": 3.25, "interval_low": 3.25, "interval_high": 3.5}, 20, 0.2)
    assert legacy.basis_rate == 3.25 and "not certified" in legacy.basis
    with pytest.raises(ValueError, match="headroom"):
        replicas_for(10, 3.25, 1.0)
    with pytest.raises(ValueError, match="must be > 0"):
        replicas_for(10, 0, 0.2)
    c = scaling_check(3.25, 2, 5.9)
    assert c["agree"] and c["relative_error"] == pytest.approx(-0.0923, abs=1e-4)
    assert not scaling_check(3.25, 2, 5.4)["agree"]  # -17 %


def _steps(rows: dict) -> pd.DataFrame:
    out = []
    for rate, (passed, waiting, running, latency) in rows.items():
        for sig, v in (("waiting", waiting), ("running", running), ("latency_s", latency)):
            out.append({"cell_id": f"at{rate}", "rate": float(rate), "passed": passed, "seconds": 12.0,
                        "requests": 10.0, "signal": sig, "value": v})
    return pd.DataFrame(out)


def test_trigger_is_the_signal_that_moves_most_at_the_boundary():
    t = choose_trigger(_steps({2: (True, 0.0, 3.0, 1.2), 4: (True, 0.2, 9.0, 2.3), 6: (False, 4.0, 12.0, 4.0)}), 4, 6)
    # waiting 0.2 -> 4: 0.2 x (1 - 0.2) = 0.16 would scale out on almost nothing; the floor is the
    # smallest change the signal must show to count (0.5 requests waiting)
    assert t.signal == "waiting" and t.threshold == pytest.approx(0.5) and t.value_at_fail == 4.0
    # an engine that admits everything (max-num-seqs large): nothing waits, running grows
    t = choose_trigger(_steps({2: (True, 0.0, 3.0, 1.2), 4: (True, 0.0, 9.0, 2.3), 6: (False, 0.0, 20.0, 3.0)}), 4, 6)
    assert t.signal == "running" and t.threshold == pytest.approx(7.2)
    t = choose_trigger(_steps({4: (True, 0.0, 9.0, 2.3), 6: (False, 0.1, 9.5, 2.35)}), 4, 6)
    assert t.signal is None and "no signal moved" in t.reason


def test_trigger_from_a_real_capacity_run_states_its_origin():
    from inferlab.runs.reader import load_run

    t, table = autoscale_trigger(load_run(SAMPLE_CAPACITY[0]))
    assert set(table["signal"]) == set(SIGNALS) and table["rate"].nunique() >= 4
    assert SAMPLE_CAPACITY[0] in " ".join(t.origin_lines()) and "warm-up requests" in t.reason


# ---------------------------------------------------------------- replicas: real nginx round-robin

class _Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        body = json.dumps({"server": self.server.name, "auth": self.headers.get("Authorization")}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def test_balancer_round_robins_and_passes_the_key_through(tmp_path):
    import httpx

    servers = []
    for name in ("a", "b"):
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
        srv.name = name
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
    try:
        log = tmp_path / "engine" / "replicas-access.log"
        with Balancer([f"127.0.0.1:{s.server_address[1]}" for s in servers], log) as b:
            got = [httpx.get(f"{b.url}/v1/models", headers={"Authorization": "Bearer k"}).json() for _ in range(6)]
        assert sorted(g["server"] for g in got) == ["a"] * 3 + ["b"] * 3
        assert {g["auth"] for g in got} == {"Bearer k"}
        assert "Bearer" not in log.read_text() and len(log.read_text().splitlines()) >= 6
        assert b.proc.poll() is not None  # nginx stopped with the context
    finally:
        for s in servers:
            s.shutdown()


def test_replica_placement():
    from inferlab.specs import EngineSpec

    gpu = replica_specs(EngineSpec(), 2, "gpu")
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s, _ in gpu] == ["0", "1"] and all(p == [] for _, p in gpu)
    cpu = replica_specs(EngineSpec(), 2, "cpu")
    assert all(p[:2] == ["taskset", "-c"] for _, p in cpu) and "CUDA_VISIBLE_DEVICES" not in cpu[0][0].env


# ---------------------------------------------------------------- the report

def test_tune_report_renders_from_a_record(rendered_reports):
    """A record whose trials are the two shipped capacity runs (real runs) renders every section
    (the tune report the session renders once: tests/conftest.py)."""
    out = rendered_reports.file("tune", ".ipynb")
    assert json.loads(out.read_text())["metadata"]["papermill"]["parameters"]["tune_id"] == "t-report"
    text = json.dumps(nbformat.read(out, as_version=4).cells)
    for needle in ("Search path", "nothing beats the default", "engine did not start", "linear scaling",
                   SAMPLE_CAPACITY[1], "Autoscaling trigger", "image/png"):
        assert needle in text, needle


# ---------------------------------------------------------------- the search, on the stand-in server

@pytest.fixture
def restartable_standin(tmp_path, monkeypatch):
    """A stand-in server on a fixed port and a url restart command that restarts it with each
    candidate's arguments (``$INFERLAB_ENGINE_ARGS``: ``--max-num-seqs`` is its slot count), as a
    user's script restarts their vLLM. Yields (restart command file, base URL); the last
    stand-in is stopped at the end (by the process id it wrote)."""
    from inferlab.procs import free_port
    from inferlab.standin import StandInConfig, standin_argv

    key, pid_file = "standin-key", tmp_path / "standin.pid"
    # capacity-local's 64-token answers at 2.5 ms a token (a batch of N: 1 + 0.05 (N - 1) times
    # slower): one slot serves ~6 answers/s (~0.18 s an answer with prefill), so its queue grows
    # at FAST's 8/s or 16/s step; the default slots pass every step up to its max_rate (16/s: ~3
    # running). Measured: one slot certified 7.85/s, the default 16/s. (At 5 ms a token one slot
    # held ~3 answers/s, and its certification steps at 1.5-2.7/s made the test ~150 s, not ~120.)
    cfg = StandInConfig(port=free_port(), tpot_ms=2.5, batch_alpha=0.05, pid_file=str(pid_file))
    script = tmp_path / "restart.sh"
    script.write_text(
        f"old=$(cat {pid_file} 2>/dev/null) && kill $old && for i in $(seq 100); do kill -0 $old 2>/dev/null "
        "|| break; sleep 0.1; done\n"
        f"VLLM_API_KEY={key} {shlex.join(standin_argv(cfg))} $INFERLAB_ENGINE_ARGS "
        f"</dev/null >>{tmp_path / 'standin.log'} 2>&1 &\n")
    monkeypatch.delenv("INFERLAB_TUNE_RESTART_COMMAND", raising=False)
    monkeypatch.setenv("INFERLAB_API_KEY", key)
    yield script, f"http://127.0.0.1:{cfg.port}"
    if pid_file.is_file():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text()), signal.SIGTERM)


@pytest.mark.slow
def test_search_ranks_the_known_worse_setting_below_the_default(workspace, spec, restartable_standin):
    """Seeds: the default and --max-num-seqs 1 (one request at a time), each a restart of the
    stand-in and a certified capacity search against it (target url): the one-slot candidate's
    certified lower bound ranks below the default's, and the study agrees."""
    script, url = restartable_standin
    s = spec.model_copy(update={"set": [*spec.set, *FAST], "restart_command_file": str(script),
                                "budget": spec.budget.model_copy(update={"max_trials": 2})})
    tid = tune(s, target="url", base_url=url, confirm=False)
    rec = load_tune(tid)
    default, one = rec.trials
    assert (default.seed, one.seed) == ("default", "one-seq")
    assert default.args == ["--max-model-len", "2048", "--enforce-eager"]
    assert one.args == ["--max-model-len", "2048", "--max-num-seqs", "1", "--enforce-eager"]
    assert default.state == one.state == "complete", [t.reason for t in rec.trials]
    assert one.msr < default.msr  # ranked below by the certified lower bound
    assert rec.best == default.number
    study = optuna.load_study(study_name=tid, storage=f"sqlite:///{tunes_dir() / tid / STUDY}")
    assert study.best_trial.number == default.number and study.best_trial.user_attrs["run_id"] == default.run_id


# a small certified search: e2e-only judging is what the stand-in's k6 rows allow; one slot
# holds ~6 answers/s, the default slots far more (max_rate 16 ends its exploration)
FAST = ["capacity.start_rate=2", "capacity.growth=2", "capacity.explore_requests=20", "capacity.explore_resolution=0.3",
        "capacity.cap_requests=40", "capacity.n_looks=2", "capacity.cert_grid=[0.5,0.7,0.9]",
        "capacity.warmup_s=1", "capacity.max_rate=16", "slo.e2e_ms=1500", "slo.e2e_p=90", "slo.ttft_ms=1500",
        "slo.ttft_p=90", "slo.tpot_ms=100", "slo.tpot_p=90"]
