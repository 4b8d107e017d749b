"""Report notebooks execute on the sample; HTML is self-contained; no secrets. (Notebook thinness and
parameters: test_notebooks.py.)"""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import papermill as pm
import pytest

from inferlab.report import render

ROOT = Path(__file__).resolve().parents[2]


def test_sample_reports_render(workspace, monkeypatch):
    from inferlab.credentials import write_secret

    secret = "sk-test-" + "a1b2c3d4e5f6a7b8"
    write_secret("api-key", secret)  # in the workspace's secrets folder, where the leak scan looks
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
    assert "short: at 64 VUs tuned/baseline throughput = 3.9" in compare
    executed = next(p for p in made if p.name == "30-compare.ipynb")
    assert "baseline-eager" in json.loads(executed.read_text())["metadata"]["papermill"]["parameters"]["baseline_run"]
    if render.chromium():
        assert any(p.suffix == ".pdf" and p.stat().st_size > 10_000 for p in made)


def test_compare_sections_are_one_call_each(workspace):
    import inferlab
    from inferlab.analysis.compare import compare_sides
    from inferlab.analysis.summary import cell_summary
    from inferlab.report import sections

    base = inferlab.load_run("20261126T210231Z-url-h200-baseline-eager")
    tuned = inferlab.load_run("20261126T205944Z-url-h200-tuned-cudagraphs")
    res = compare_sides(base, tuned, 10000.0)
    good = sections.goodput_table(res).data
    assert list(good.columns) == ["cell", "baseline", "tuned", "ratio", "q_value", "verdict"]
    assert len(good) == res["cell"].nunique()
    both = sections.cells_by_config(base, tuned)
    sizes = {"baseline": len(cell_summary(base)), "tuned": len(cell_summary(tuned))}
    assert both.groupby("config").size().to_dict() == sizes
    assert "run_id" not in sections.cell_table(cell_summary(tuned)).data.columns


def test_sweep_notebook_result_cell(workspace):
    from inferlab.report import sections

    assert sections.run_cells(None) == "dry run: nothing executed"
    assert "status" in sections.run_cells("20261126T214243Z-url-h200-stress").columns


@pytest.mark.engine
def test_sweep_notebook_runs_against_the_real_engine(workspace, engine, monkeypatch, tmp_path):
    monkeypatch.setenv("INFERLAB_API_KEY", engine.api_key)
    out = tmp_path / "10.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "10-matrix-sweep.ipynb"), str(out), kernel_name="python3",
                        parameters={"spec": "ci-tiny", "target": "url", "base_url": engine.base_url, "dry_run": False},
                        progress_bar=False)
    import inferlab

    runs = inferlab.list_runs()
    run = runs[runs["where"] == "runs"]
    assert len(run) == 1 and run["status"].iloc[0] == "complete"
    assert engine.api_key not in out.read_text()


def test_deploy_notebook_dry_run(tmp_path):
    out = tmp_path / "00.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "00-deploy.ipynb"), str(out), kernel_name="python3",
                        parameters={"overlay": "cpu", "dry_run": True}, progress_bar=False)
    assert "rendered and checked offline" in out.read_text()
