"""Report notebooks execute on the sample; HTML is self-contained; no secrets. (Notebook thinness and
parameters: test_notebooks.py.)"""

import ast
import json
import re
from pathlib import Path

import pandas as pd
import papermill as pm
import pytest

from inferlab.report import render
from inferlab.tools import which_tool

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_sample_reports_render(rendered_reports):
    """The session's rendered reports (tests/conftest.py: one of each kind printed to PDF, the
    other shapes of sample run HTML-only) are self-contained and hold no secret."""
    from ..conftest import REPORT_SECRET

    made = [p for files in [*rendered_reports.printed.values(), *rendered_reports.html_only.values()] for p in files]
    htmls = [p for p in made if p.suffix == ".html"]
    assert {p.parent.name.split("-")[0] for p in htmls} == {"load", "stress", "compare", "tune"}
    assert len(htmls) == len(rendered_reports.printed) + len(rendered_reports.html_only)
    for h in htmls:
        text = h.read_text()
        assert not re.search(r"(src|href)=[\"']https?://", text), h
        assert "data:image/png;base64," in text
        assert REPORT_SECRET not in text
        assert text.count('<div class="inferlab-front">') == 1, h  # the front page (test_pdf: page 1 alone)
    load = rendered_reports.file("load-test", ".html")
    assert load.name.startswith("load-test") and "tuned" in load.name
    for section in ("Results per cell", "Streaming probe", "Time series", "Measurement cross-check", "Run manifest",
                    "Data quality", "Appendix: every column per cell"):
        assert section in load.read_text()
    stress = rendered_reports.file("stress", ".html").read_text()
    assert "knee" in stress and "dropped_iterations" in stress
    compare = rendered_reports.file("compare", ".html").read_text()
    assert "short: at 64 VUs tuned/baseline throughput = 3.9" in compare
    executed = rendered_reports.file("compare", ".ipynb")
    assert executed.name == "30-compare.ipynb"
    assert "baseline-eager" in json.loads(executed.read_text())["metadata"]["papermill"]["parameters"]["baseline_run"]
    if which_tool("chromium"):
        assert all(rendered_reports.file(r, ".pdf").stat().st_size > 10_000 for r in rendered_reports.printed)


def test_render_all_renders_every_sample_report(workspace, monkeypatch):
    """``render_all`` (``make report RUNS=sample``) renders every job catalog.py names for the sample,
    in order, and returns every file made (the rendering itself: the session's reports, above)."""
    from inferlab.report import catalog

    asked = []

    def fake_render(job, pdf=True):
        asked.append((job.slug, pdf))
        return [workspace / "reports" / job.slug / "x.html"]

    monkeypatch.setattr(render, "render", fake_render)
    made = render.render_all("sample", pdf=True)
    slugs = [j.slug for j in catalog.jobs_for("sample")]
    assert [s for s, _ in asked] == slugs and all(pdf for _, pdf in asked) and len(slugs) >= 10
    assert made == [workspace / "reports" / s / "x.html" for s in slugs]


def test_make_report_renders_the_local_run_and_the_samples_stress_capacity_and_compare_reports(workspace):
    """make report's set (docs/testing.md, "make report"): the local run's load test, every sample
    stress and capacity run (the tune trial included), every shipped comparison; no sample sweep."""
    from inferlab.report import catalog
    from inferlab.runs.reader import list_runs

    runs = list_runs()
    kinds = dict(zip(runs["run_id"], runs["kind"]))
    jobs = catalog.jobs_for("sample", local_run="20261127T121016Z-local-trace-timing-quiet")
    reports = [j.report for j in jobs]
    assert reports[0] == "load-test" and reports.count("load-test") == 1
    rendered_runs = {j.parameters.get("run_id") for j in jobs[1:] if j.report != "compare"}
    assert {kinds[r] for r in rendered_runs} == {"stress", "capacity"}
    assert {r for r, k in kinds.items() if k == "capacity"} <= rendered_runs
    assert reports.count("compare") == len(catalog.sample_comparisons()) + 1  # + the H200 tuned-vs-baseline pair


def test_compare_sections_are_one_call_each(workspace):
    import inferlab
    from inferlab.analysis.compare import compare_sides
    from inferlab.analysis.summary import cell_summary
    from inferlab.report import sections

    base = inferlab.load_run("20261126T210231Z-url-h200-baseline-eager")
    tuned = inferlab.load_run("20261126T205944Z-url-h200-tuned-cudagraphs")
    res = compare_sides(base, tuned, 10000.0)
    good = sections.goodput_table(res).data
    assert list(good.columns) == ["cell", "baseline", "tuned", "ratio", "ci_low_adj", "ci_high_adj", "q_value",
                                  "validity", "verdict"]
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
def test_sweep_notebook_runs_against_the_real_engine(workspace, engine, monkeypatch, tmp_path, tiny_on_engine):
    monkeypatch.setenv("INFERLAB_API_KEY", engine.api_key)
    out = tmp_path / "10.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "10-matrix-sweep.ipynb"), str(out), kernel_name="python3",
                        parameters={"spec": "ci-tiny", "set_fields": tiny_on_engine, "target": "url",
                                    "base_url": engine.base_url, "dry_run": False},
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


TUNED = "20261126T205944Z-url-h200-tuned-cudagraphs"  # a GPU sweep: 14 closed-loop cells


def test_the_front_page_is_the_first_call_after_the_parameters():
    """Every report notebook shows its front page (``front.<kind>(...)``) before anything else."""
    import nbformat

    from inferlab.report import catalog

    for report, kind in {"load-test": "load_test", "stress": "stress", "compare": "compare", "tune": "tune"}.items():
        code = [c for c in nbformat.read(catalog.notebook_path(report), as_version=4).cells if c.cell_type == "code"]
        shown = [ast.parse(c.source).body[-1] for c in code[1:]]  # a cell shows its last expression
        first = next(stmt for stmt in shown if isinstance(stmt, ast.Expr))
        assert ast.unparse(first).startswith(f"front.{kind}("), (report, ast.unparse(first))


def test_load_test_front_page_numbers_are_the_body_values(workspace):
    """The headline numbers are the body's (cell_summary, probe_summary, error_breakdown), unrounded."""
    import inferlab
    from inferlab.analysis.summary import cell_summary, error_breakdown, measured, probe_summary
    from inferlab.report import catalog, front

    run = inferlab.load_run(TUNED)
    cells = cell_summary(run)
    page = front.load_test(run, cells)
    shown = [c for c in front.HEADLINE if c in page.numbers.columns]
    assert {"cell_id", "rps", "latency_p95_ms", "errors"} <= set(shown)
    pd.testing.assert_frame_equal(page.numbers[shown], cells[shown])
    # the H200 run: every p95 <= 2000 ms, no error; its 24-request c4 cells keep 16 requests of steady
    # window (2 x VUs + 20 since issue 19), too few for a p95: not judged rather than "no"
    judged = page.numbers[front.WITHIN_SLO]
    assert set(judged) == {"yes", "too few requests"}
    assert (judged[cells["latency_p95_ms"].isna()] == "too few requests").all()
    short = cells[cells["payload"] == "short"]
    best = short.loc[short["rps"].idxmax()]
    assert any(f"**{best['rps']:.1f} requests/s** (`{best['cell_id']}`" in line for line in page.headline)
    idle = probe_summary(run).set_index("cell_id").loc["idle"]
    assert any(f"TTFT p50 {idle['ttft_p50_ms']:.1f} ms" in line for line in page.headline)
    failed = int(error_breakdown(run)["count"].sum())
    assert f"Errors: {failed:,} of {len(measured(run)):,} measured requests failed." in page.headline
    assert page.read_next == catalog.section_titles("load-test") and page.read_next[-1].startswith("Appendix")
    facts = page.what_ran.set_index("fact")["value"]
    assert facts["run_id"] == TUNED and facts["CPU flags"] == "not recorded" and "H200" in facts["GPU"]
    html = page._repr_html_()
    assert html.startswith('<div class="inferlab-front">') and f"{best['rps']:.1f}" in html


def test_stress_front_page_carries_the_capacity_and_the_knee(workspace):
    import inferlab
    from inferlab.analysis import knee
    from inferlab.analysis.summary import cell_summary
    from inferlab.report import front

    cap_run = inferlab.load_run("20261127T082345Z-local-capacity-local-1")
    page = front.stress(cap_run, knee.closed_loop(cell_summary(cap_run)), knee.analyze_ramp(cap_run))
    assert f"Max sustainable rate **{cap_run.capacity['msr']} requests/s**" in "\n".join(page.headline)
    assert "legacy bracket judge, not certified" in "\n".join(page.headline)
    assert page.numbers.empty  # a capacity search has no closed-loop cell
    run = inferlab.load_run("20261126T214243Z-url-h200-stress")
    closed, ramp = knee.closed_loop(cell_summary(run)), knee.analyze_ramp(run)
    page = front.stress(run, closed, ramp)
    assert ramp.sentence in page.headline
    pd.testing.assert_frame_equal(page.numbers[["cell_id", "rps"]], closed[["cell_id", "rps"]])
    assert any("disagree" in v and "ttft_median_ms" in v for v in page.verdicts)  # the body's cross-check, counted


def test_compare_and_tune_front_pages_show_the_body_rows(workspace):
    from inferlab.analysis import compare
    from inferlab.report import front, tune

    from ..sweep.tune_sample import sample_tune

    base, tuned, what = compare.sides(comparison="20261127T074746Z-local-ab-ab-maxseqs1")
    res = compare.compare_with_aa(base, tuned)
    page = front.compare(base, tuned, what, res)
    table = compare.verdict_table(res)
    primary = table[table["role"] == "primary"]
    pd.testing.assert_frame_equal(page.numbers[list(front.COMPARED)], primary[list(front.COMPARED)])
    assert set(compare.headline(res).splitlines()) <= set(page.verdicts)
    assert page.what_ran.set_index("fact").loc["engine args", "tuned"].endswith("--max-num-seqs 1")

    rec = tune.load(sample_tune(workspace / "data" / "sample"))
    page = front.tune(rec)
    trials = tune.trials_table(rec).set_index("trial")
    col = "objective (req/s)"
    assert page.numbers.set_index("trial")[col].to_dict() == trials.loc[[0, 1], col].to_dict()
    assert set(trials.loc[[0, 1], "judge"]) == {"legacy bracket"}  # shipped records made before certification
    assert any("nothing beats the default" in v for v in page.verdicts)


def test_the_wide_cell_table_splits_into_main_and_appendix(workspace):
    """The body's per-cell table holds <= 10 columns; the appendix tables hold the rest; together
    every column of cell_summary (the run id is the report's title), each once, keyed by cell_id.
    A GPU run and a CPU run (their utilization columns differ)."""
    import inferlab
    from inferlab.analysis.summary import cell_summary
    from inferlab.report import cell_tables

    for run_id in (TUNED, "20261127T121016Z-local-trace-timing-quiet"):
        cells = cell_summary(inferlab.load_run(run_id))
        groups = cell_tables.groups(cells)
        assert len(groups["main"]) <= 10 and all(len(g) <= 10 for g in groups.values()), groups
        assert all(g[0] == "cell_id" for g in groups.values())
        rest = [c for g in groups.values() for c in g[1:]]
        assert sorted(rest) == sorted(set(cells.columns) - {"cell_id", "run_id"})
        assert {"rps", "latency_p95_ms", "errors", "validity"} <= set(groups["main"]) and groups["utilization"][1:]
        assert groups["validity"] == ["cell_id", "little_ratio", "validity_reasons"]
        assert "validity_reasons" in cell_tables.details(cells).data  # rendered under the details table
        assert list(cell_tables.main(cells).data.columns) == groups["main"]
        assert list(cell_tables.utilization(cells).data.columns) == groups["utilization"]
