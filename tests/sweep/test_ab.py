"""Comparison orchestration up to the cluster boundary (no cluster here)."""

from __future__ import annotations

import pytest

from inferlab.runs.comparison import load_comparison
from inferlab.specs import builtin_spec, load_spec
from inferlab.sweep.ab import run_comparison


def test_k8s_comparison_deploys_each_sides_overlay_and_stops_without_a_cluster(workspace, monkeypatch, tmp_path):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    spec = load_spec(builtin_spec("ci-tiny"))
    with pytest.raises(RuntimeError, match="deploy of overlay 'baseline' exited 3"):
        run_comparison(spec, spec, target="k8s", pairs=1, label="k8s", overlays=("baseline", "tuned"))
    (d,) = (workspace / "data" / "comparisons").iterdir()
    c = load_comparison(d)
    assert c.status == "failed" and "deploy of overlay" in c.reason and c.repeats == []


def test_comparisons_take_sweep_specs_only(workspace):
    with pytest.raises(ValueError, match="sweep specs"):
        run_comparison(load_spec(builtin_spec("stress-local")), load_spec(builtin_spec("stress-local")))
