"""Report notebooks execute on the sample; HTML is self-contained; parameters agree; no secrets."""

import ast
import json
import re
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import papermill as pm
import pytest

from inferlab.analysis.compare import bootstrap_ratio, compare_cells, verdict
from inferlab.report import render

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_are_thin(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    for c in code:
        assert not re.search(r"^\s*(def|class)\s", c.source, re.M), c.source
    for line in code[0].source.splitlines():  # literals only: derived values belong below
        if line.strip() and not line.strip().startswith("#"):
            value = line.split("=", 1)[1].split("  #")[0].strip()
            ast.literal_eval(value)  # raises unless a literal (str, number, bool, list of them)


def test_runner_parameters_match_notebooks(workspace):
    for job in render.jobs_for("sample"):
        declared = set(pm.inspect_notebook(str(render.notebook_path(job.report))))
        assert set(job.parameters) <= declared, (job.report, job.parameters, declared)


def test_sample_reports_render(workspace, monkeypatch):
    secret = "sk-test-" + "a1b2c3d4e5f6a7b8"
    (workspace / ".secrets").mkdir(mode=0o700)
    (workspace / ".secrets" / "api-key").write_text(secret)
    made = render.render_all("sample", pdf=True)
    htmls = [p for p in made if p.suffix == ".html"]
    assert {p.parent.name.split("-")[0] for p in htmls} == {"load", "stress", "compare"}
    for h in htmls:
        text = h.read_text()
        assert not re.search(r"(src|href)=[\"']https?://", text), h
        assert "data:image/png;base64," in text
        assert secret not in text
    load = next(h for h in htmls if h.name.startswith("load-test") and "tuned" in h.name).read_text()
    for section in ("Results per cell", "Streaming probe", "Time series", "Measurement cross-check", "Run manifest", "Data quality"):
        assert section in load
    stress = next(h for h in htmls if h.name.startswith("stress")).read_text()
    assert "knee" in stress and "dropped_iterations" in stress
    compare = next(h for h in htmls if h.name.startswith("compare")).read_text()
    assert "short: at 64 VUs tuned/baseline RPS = 3.9" in compare
    executed = next(p for p in made if p.name == "30-compare.ipynb")
    assert "baseline-eager" in json.loads(executed.read_text())["metadata"]["papermill"]["parameters"]["baseline_run"]
    if render.chromium():
        assert any(p.suffix == ".pdf" and p.stat().st_size > 10_000 for p in made)


def test_bootstrap_finds_a_known_ratio():
    rng = np.random.default_rng(1)
    a = rng.lognormal(np.log(100), 0.2, 400)
    b = a * 0.5 * rng.lognormal(0, 0.05, 400)
    r, lo, hi = bootstrap_ratio(a, b, np.median, 1000, np.random.default_rng(2))
    assert lo < 0.5 < hi and r == pytest.approx(0.5, rel=0.05)


def _requests(durations, vus, start="2026-01-01"):
    t0 = pd.Timestamp(start, tz="UTC")
    ends = t0 + pd.to_timedelta(np.cumsum(durations) / vus, unit="ms")
    return pd.DataFrame({"cell_id": "short-c4", "ok": True, "duration_ms": durations, "end_ts": ends,
                         "start_ts": ends - pd.to_timedelta(durations, unit="ms")})


def test_known_null_gives_no_significant_difference():
    rng = np.random.default_rng(3)
    a, b = _requests(rng.normal(500, 50, 300), 4), _requests(rng.normal(500, 50, 300), 4)
    rows = {r["metric"]: r for r in compare_cells(a, b, 10000, 1000, np.random.default_rng(4))}
    assert rows["latency_p50"]["verdict"] == "no significant difference"
    assert rows["rps"]["verdict"] == "no significant difference"
    assert rows["latency_p50"]["ci_low"] < 1 < rows["latency_p50"]["ci_high"]


def test_known_speedup_is_better():
    rng = np.random.default_rng(5)
    a, b = _requests(rng.normal(500, 50, 300), 4), _requests(rng.normal(250, 25, 300), 4)
    rows = {r["metric"]: r for r in compare_cells(a, b, 10000, 1000, np.random.default_rng(6))}
    assert rows["latency_p50"]["verdict"] == "better" and rows["rps"]["verdict"] == "better"
    assert rows["rps"]["ratio"] == pytest.approx(2.0, rel=0.05)
    assert rows["latency_p50"]["effect_size"] < -0.9


def test_tail_percentiles_need_enough_requests():
    from inferlab.analysis.compare import min_requests

    assert (min_requests(0.5), min_requests(0.95), min_requests(0.99)) == (2, 20, 100)
    rng = np.random.default_rng(5)
    a = _requests(rng.lognormal(7, 0.1, 30), 4)
    b = _requests(rng.lognormal(7, 0.1, 30) * 0.5, 4)
    rows = {r["metric"]: r for r in compare_cells(a, b, 1e9, 300, rng)}
    assert rows["latency_p95"]["verdict"] == "better"  # 30 >= 20
    assert rows["latency_p99"]["verdict"] == "too few requests (30 < 100 for p99)"
    assert np.isnan(rows["latency_p99"]["ci_low"]) and rows["latency_p99"]["ratio"] < 1


def test_verdict_rules():
    assert verdict(0.5, 0.8, 0.001, lower_is_better=True) == "better"
    assert verdict(1.2, 1.5, 0.001, lower_is_better=True) == "worse"
    assert verdict(0.9, 1.1, 0.001, lower_is_better=True) == "no significant difference"
    assert verdict(0.5, 0.8, 0.2, lower_is_better=True) == "no significant difference"


@pytest.mark.engine
def test_sweep_notebook_runs_against_the_real_engine(workspace, engine, monkeypatch, tmp_path):
    monkeypatch.setenv("INFERLAB_API_KEY", engine.api_key)
    out = tmp_path / "10.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "10-matrix-sweep.ipynb"), str(out), kernel_name="python3",
                        parameters={"spec": "ci-tiny", "target": "url", "base_url": engine.base_url}, progress_bar=False)
    import inferlab

    runs = inferlab.list_runs()
    run = runs[runs["where"] == "runs"]
    assert len(run) == 1 and run["status"].iloc[0] == "complete"
    assert engine.api_key not in out.read_text()


def test_deploy_notebook_dry_run(tmp_path):
    out = tmp_path / "00.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "00-deploy.ipynb"), str(out), kernel_name="python3",
                        parameters={"overlay": "cpu", "dry_run": True}, progress_bar=False)
    assert "rendered and validated offline" in out.read_text()
