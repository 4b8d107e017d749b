import subprocess
from pathlib import Path

import pytest
import yaml

from inferlab.specs import SpecError, builtin_spec, load_spec, plan_cells, resolve_spec

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted((ROOT / "src" / "inferlab" / "specs").glob("*.yaml"))


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_builtin_specs_validate(path):
    spec = load_spec(path)
    assert plan_cells(spec) or spec.kind == "capacity"  # a capacity search plans its cells as it goes


def test_typo_names_the_field(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("name: x\nconcurency: [1]\n")
    with pytest.raises(SpecError, match=r"concurency: Extra inputs"):
        load_spec(p)
    p.write_text("name: x\nslo: {error_rate: 2}\n")
    with pytest.raises(SpecError, match=r"slo.error_rate"):
        load_spec(p)


def test_api_key_cannot_sneak_into_engine_args(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("name: x\nengine: {args: ['--api-key', 'abc']}\n")
    with pytest.raises(SpecError, match="API key"):
        load_spec(p)


def test_plan_is_deterministic_with_repeats_and_ramp():
    spec = load_spec(builtin_spec("stress-local"), {"repeats": 2})
    ids = [c.cell_id for c in plan_cells(spec)]
    assert ids == ["short-c8-r1", "short-c8-r2", "short-c32-r1", "short-c32-r2", "short-rate2to14"]


def test_dry_run_touches_nothing(workspace):
    from inferlab.cli import main

    assert main(["sweep", "matrix-local", "--dry-run"]) == 0
    assert not any((workspace / "data" / "runs").iterdir())


def test_every_tracked_yaml_and_json_is_classified():
    """Every tracked YAML/JSON is validated by some test, or listed here with a reason."""
    files = subprocess.run(["git", "ls-files", "*.yaml", "*.yml", "*.json"], cwd=ROOT, capture_output=True,
                           text=True).stdout.split()
    reasons = {
        "environment.yml": "tests/test_packaging.py checks it against pyproject",
        "src/inferlab/specs/": "validated by test_builtin_specs_validate",
        "platform/": "validated by make validate / tests/platform",
        "data/sample/": "run records: manifests by pydantic, k6 JSON by ingest (test_every_sample_run_loads)",
        "tests/fixtures/": "real data read by the ingest goldens",
        "notebooks/": "executed by tests/report",
        "src/inferlab/platform/schemas/": "checked against the JSON Schema metaschema in tests/platform",
        "data/gpu-evidence/": "GPU evidence (product records): re-judged by tests/analysis/test_gpu_evidence_*.py",
        "data/legacy-evidence/": "side-script records (2026-11-27): re-judged by tests/analysis/test_gpu_evidence.py",
        "data/answers-evidence/": "answer-check findings on the real engine: re-derived by tests/analysis/test_answers_evidence.py",
        "data/capacity-evidence/": "local capacity search records: re-judged by tests/analysis/test_capacity_evidence_local.py",
        "data/attribution-evidence/": "real-engine A/B records with spans: re-derived by tests/analysis/test_attribution_evidence_maxseqs.py",
        "data/bisect-evidence/": "real-engine bisect records: re-derived by tests/analysis/test_bisect_evidence_local_s12.py",
    }
    unclassified = [f for f in files if not any(f == k or f.startswith(k) for k in reasons)]
    assert not unclassified, f"classify these in {__file__}: {unclassified}"
    for f in files:
        if f.endswith((".yaml", ".yml")):
            list(yaml.safe_load_all((ROOT / f).read_text()))


def test_set_overrides_nested_yaml_values_and_names_bad_keys():
    from inferlab.specs import parse_overrides, resolve_spec

    spec = resolve_spec("matrix-gpu", parse_overrides(["model=smollm2", "concurrency=[1, 8]", "slo.e2e_ms=5000"]))
    assert spec.model == "smollm2" and spec.concurrency == [1, 8]
    assert spec.slo.e2e_ms == 5000 and spec.slo.e2e_p == 95 and spec.slo.ttft_ms == 500  # the rest of slo kept
    with pytest.raises(SpecError, match=r"slo\.nope"):
        resolve_spec("matrix-gpu", parse_overrides(["slo.nope=1"]))
    with pytest.raises(SpecError, match="expected KEY=VALUE"):
        parse_overrides(["model"])


def test_every_local_matrix_cell_has_20_requests_in_its_window():
    for name in ("matrix-local", "matrix-local-eager", "ab-local"):
        spec = resolve_spec(name)
        assert spec.sample_size_warnings() == []
        for c in plan_cells(spec):
            assert c.iterations - c.vus >= 20, (name, c.cell_id, c.iterations)  # window = iterations - VUs


def test_sample_size_warning_names_the_number_needed():
    spec = resolve_spec("ci-tiny")
    warnings = spec.sample_size_warnings()
    assert warnings and "needs 20" in warnings[0] and "iterations >= 22" in warnings[0]


def test_payload_concurrency_replaces_the_levels_of_one_payload():
    spec = resolve_spec("matrix-local")
    assert [c.cell_id for c in plan_cells(spec)] == ["short-c1", "short-c4", "short-c16", "long-c4", "long-c16"]
    with pytest.raises(SpecError, match="payload_concurrency names"):
        resolve_spec("matrix-local", sets=["payload_concurrency={nope: [1]}"])


def test_capacity_spec_plans_no_cells_up_front_and_describes_its_search():
    from inferlab.sweep.estimate import describe_plan

    spec = resolve_spec("capacity-local")
    assert plan_cells(spec) == []
    assert "bisection" in describe_plan(spec, "local")
