"""``inferlab tune --objective energy`` without a GPU: the objective read from recorded NVML
readings (the one-H200 A/B's runs in data/gpu-evidence: CUDA graphs and --enforce-eager, real
energy counters), the search minimising it with each trial's run taken from those records, the
fixed-rate workload written once, and the refusals where no reading can exist (a CPU engine, no
NVML, no energy section, --rate alone)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from inferlab.analysis.energy import cell_energy, energy_objective
from inferlab.cli import main
from inferlab.report import front
from inferlab.report import tune as tune_report
from inferlab.runs.reader import load_run
from inferlab.runs.tune_record import STUDY, load_tune, tunes_dir
from inferlab.specs import SpecError
from inferlab.specs.tune import TuneSpec
from inferlab.specs.workload import load_workload
from inferlab.sweep import runner, tune_energy
from inferlab.sweep.tune import tune

EVIDENCE = Path(__file__).resolve().parents[2] / "data" / "gpu-evidence"
H200 = EVIDENCE / "2026-12-04-h200-product-runs" / "ab" / "ws" / "data"
EAGER = "20261204T084102Z-local-gpu-graphs-vs-eager-a"  # --enforce-eager
GRAPHS = "20261204T084359Z-local-gpu-graphs-vs-eager-b"  # CUDA graphs (vLLM's default)


def _link(workspace: Path, run_id: str) -> str:
    link = workspace / "data" / "runs" / run_id
    if not link.exists():
        link.symlink_to(H200 / "runs" / run_id)
    return run_id


def _spec(**energy) -> TuneSpec:
    return TuneSpec.model_validate({
        "name": "energy-test", "capacity": "capacity-local",
        "space": {"enforce_eager": {"kind": "bool", "flag": "--enforce-eager", "default": False}},
        "seed_trials": [{"name": "default"}, {"name": "eager", "params": {"enforce_eager": True}}],
        "budget": {"max_trials": 2, "max_minutes": 60},
        "energy": {"spec": "workload-poisson-chat-local", **energy},
        "component": {"name": "engine-energy-test", "overlay": "cpu"}})


@pytest.fixture
def gpu_engine(monkeypatch):
    """A local engine choice on cuda (an interpreter that exists), and NVML reported present:
    the witness check passes as on a GPU host; no engine starts (the runs are recorded ones)."""
    monkeypatch.setenv("INFERLAB_ENGINE_PYTHON", sys.executable)
    monkeypatch.setenv("INFERLAB_ENGINE_DEVICE", "cuda:0")
    monkeypatch.setattr(tune_energy, "load_nvml", lambda: object())


def test_the_objective_is_the_cells_energy_over_their_good_requests(workspace):
    for run_id in (EAGER, GRAPHS):
        run = load_run(_link(workspace, run_id))
        ce = cell_energy(run)
        out = energy_objective(run)
        assert out["value"] == pytest.approx(ce["energy_j"].sum() / ce["good_requests"].sum())
        assert out["cells"] == ["short-c1", "short-c64"] and out["method"] == "energy counter"
        tok = energy_objective(run, "j_per_token")
        assert tok["value"] == pytest.approx(ce["energy_j"].sum() / ce["output_tokens"].sum())
    # CUDA graphs spend less energy per good request than eager on this H200 (the evidence's finding)
    assert energy_objective(load_run(GRAPHS))["value"] < energy_objective(load_run(EAGER))["value"]
    with pytest.raises(ValueError, match="expected one of j_per_good_request, j_per_token"):
        energy_objective(load_run(GRAPHS), "j_per_watt")


def test_the_search_minimises_energy_at_the_fixed_rate(workspace, gpu_engine, monkeypatch):
    """Two seed trials (the baseline: CUDA graphs; eager); each trial's run is the recorded H200
    run of its configuration. The fixed rate (2.5/s, not the workload's 3/s) is a read-only
    workload copy in the tune's folder that every trial's spec points at; the study minimises; the
    graphs trial wins with the figure energy_objective gives its run."""
    ran = []

    def recorded(spec, target, base_url=None, label=None, **_):
        ran.append(spec)
        return _link(workspace, EAGER if "--enforce-eager" in spec.engine.args else GRAPHS)

    monkeypatch.setattr(runner, "run", recorded)
    tid = tune(_spec(), target="local", objective="energy", rate=2.5, confirm=False, write_component=False)
    rec = load_tune(tid)
    assert rec.status == "complete" and rec.objective_kind == "energy", rec.reason
    assert rec.energy["rate"] == 2.5 and rec.energy["metric"] == "j_per_good_request"
    assert "J per good (in-SLO) request, lower is better, at a fixed 2.5 requests/s" in rec.objective
    copy = tunes_dir() / tid / "workload-poisson-chat.yaml"
    assert rec.energy["workload"] == "poisson-chat" and load_workload(str(copy)).arrival.rate == 2.5
    assert not copy.stat().st_mode & 0o222  # written once
    assert [s.workload for s in ran] == [str(copy)] * 2
    assert [(t.seed, t.state, t.run_id) for t in rec.trials] == [("default", "complete", GRAPHS),
                                                                 ("eager", "complete", EAGER)]
    for t in rec.trials:
        assert t.msr is None and t.value == pytest.approx(energy_objective(load_run(t.run_id))["value"])
        assert t.energy["good_requests"] > 0 and t.energy["mean_power_w"] > 0
    assert rec.best == rec.trials[0].number  # graphs: the lower J per good request
    study = optuna.load_study(study_name=tid, storage=f"sqlite:///{tunes_dir() / tid / STUDY}")
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    assert math.isclose(study.best_value, rec.trials[0].value)
    # the tune report reads the energy figures (no certified rate to show)
    table = tune_report.trials_table(rec)
    assert list(table["objective (J/good request)"]) == [t.value for t in rec.trials]
    assert set(table["judge"]) == {"energy"} and not table["interval"].str.contains("bracket").any()
    head = tune_report.headline(rec).data
    assert f"**{rec.trials[0].value:.4g} J/good request" in head and "at 2.5 requests/s" in head
    assert tune_report.search_path(rec) is not None
    page = front.tune(rec)
    assert list(page.numbers["objective (J/good request)"]) == [rec.trials[0].value]  # best = baseline: one row
    # a resume keeps the record's objective and refuses another
    with pytest.raises(SpecError, match="ranks by energy at 2.5 requests/s"):
        tune(_spec(), resume=tid, objective="energy", rate=4.0)


def test_a_run_without_readings_is_a_failed_trial_not_a_number(workspace, gpu_engine, monkeypatch):
    sample = (p.name for p in sorted((workspace / "data" / "sample").iterdir()) if (p / "run.json").is_file())
    cpu_run = next(r for r in sample if load_run(r).manifest.kind == "sweep" and cell_energy(load_run(r)).empty)
    monkeypatch.setattr(runner, "run", lambda spec, **_: cpu_run)
    tid = tune(_spec(), target="local", objective="energy", confirm=False, write_component=False)
    rec = load_tune(tid)
    assert [t.state for t in rec.trials] == ["failed", "failed"] and rec.best is None
    assert "has no GPU energy readings" in rec.trials[0].reason and rec.trials[0].value is None
    assert rec.energy["rate"] == 3.0 and not list((tunes_dir() / tid).glob("workload-*"))  # the workload's own rate


def test_energy_is_refused_where_no_reading_can_exist_naming_why(workspace, monkeypatch, capsys):
    monkeypatch.delenv("INFERLAB_ENGINE_PYTHON", raising=False)
    monkeypatch.delenv("INFERLAB_ENGINE_DEVICE", raising=False)
    with pytest.raises(RuntimeError, match="the local engine runs on the CPU"):
        tune(_spec(), target="local", objective="energy")
    monkeypatch.setattr(tune_energy, "load_nvml", lambda: None)  # as on this machine: no NVML
    with pytest.raises(RuntimeError, match="NVML is not available on this machine"):
        tune(_spec(), target="url", base_url="http://127.0.0.1:9", objective="energy")
    with pytest.raises(RuntimeError, match="observe.prometheus_url"):
        tune(_spec(), target="k8s", objective="energy")
    assert not tunes_dir().exists() or not list(tunes_dir().iterdir())  # refused before any record
    no_section = _spec().model_copy(update={"energy": None})
    with pytest.raises(SpecError, match="has no `energy` section"):
        tune(no_section, target="local", objective="energy")
    with pytest.raises(SpecError, match="open loop at a constant or Poisson rate"):
        tune(_spec(**{"spec": "ci-tiny"}), target="local", objective="energy")
    with pytest.raises(SpecError, match="--rate is the fixed load of --objective energy"):
        tune(_spec(), target="local", rate=2.0)
    # the CLI: one clear line, exit 2
    spec = workspace / "energy-test.yaml"
    spec.write_text(yaml.safe_dump(_spec().model_dump(mode="json")))
    assert main(["tune", str(spec), "--objective", "energy", "--target", "local"]) == 2
    assert "needs GPU energy readings (NVML's counter on a GPU host)" in capsys.readouterr().err
