"""Generate notebooks/*.ipynb (thin: title, a `parameters` cell of literals, calls into inferlab).

Notebooks are generated so their structure stays uniform; edit here, then
`.venv/bin/python scripts/make_notebooks.py`. JupyterLab users may edit the notebooks directly too.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import nbformat as nbf

OUT = Path(__file__).resolve().parents[1] / "notebooks"
TUNED, BASELINE, STRESS = ("20261126T205944Z-url-h200-tuned-cudagraphs", "20261126T210231Z-url-h200-baseline-eager",
                           "20261126T214243Z-url-h200-stress")


def nb(title: str, intro: str, params: str, cells: list[tuple[str, str]]) -> nbf.NotebookNode:
    book = nbf.v4.new_notebook()
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    book.cells.append(nbf.v4.new_markdown_cell(f"# {title}\n\n{intro}"))
    p = nbf.v4.new_code_cell(params.strip())
    p.metadata["tags"] = ["parameters"]
    book.cells.append(p)
    for kind, src in cells:
        book.cells.append(nbf.v4.new_markdown_cell(src.strip()) if kind == "md" else nbf.v4.new_code_cell(src.strip()))
    return book


SWEEP_PARAMS = '''
spec = "{spec}"  # built-in spec name or a YAML path
target = "local"  # local | url | k8s
base_url = ""  # url/k8s targets; the key comes from INFERLAB_API_KEY or .secrets/
label = ""
set_fields = []  # spec overrides, e.g. ["model=tinyllama", "concurrency=[1, 64]", "slo.e2e_p95_ms=5000"]
in_cluster = False  # target k8s: k6 as a Job inside the cluster
dry_run = False
'''
SWEEP_BODY = [
    ("code", "import inferlab\nfrom inferlab.load import spec as specs, sweep"),
    ("code", "overrides = {**specs.parse_overrides(set_fields), **({'name': label} if label else {})}\n"
             "load_spec = specs.resolve_spec(spec, overrides or None)\nprint(sweep.describe_plan(load_spec, target))"),
    ("code", "run_id = None if dry_run else sweep.run(load_spec, target=target, base_url=base_url or None, in_cluster=in_cluster)\n"
             "run_id"),
    ("code", "inferlab.load_run(run_id).cells_frame() if run_id else 'dry run: nothing executed'"),
]

LOAD_TEST = nb("Load-test report", "Per-cell throughput, latency, streaming TTFT/ITL, utilization, and the measurement "
               "cross-check against the server's own counters. Warm-up requests are excluded.",
               f'run_id = "{TUNED}"\ntimeseries_freq = "1s"\n', [
    ("code", "import inferlab\nfrom inferlab.analysis import crosscheck, summary\nfrom inferlab.report import plots, sections\n"
             "run = inferlab.load_run(run_id)\nsections.title('Load-test report', run)"),
    ("md", "## Results per cell\nRPS counts successful measured requests over the cell's span; latency is k6's "
           "`http_req_duration` (end to end, non-streaming) in ms; utilization is the mean/max while the cell ran."),
    ("code", "cells = summary.cell_summary(run)\nsections.show(cells.drop(columns=['run_id']))"),
    ("md", "## Throughput and latency vs concurrency"),
    ("code", "plots.throughput_vs_concurrency(cells)"),
    ("code", "plots.latency_vs_concurrency(cells)"),
    ("code", "plots.latency_cdf(summary.measured(run))"),
    ("md", "## Streaming probe: TTFT, TPOT, inter-token latency\nTTFB (response headers) arrives long before the first "
           "token on vLLM streams; TTFT here is the first content token."),
    ("code", "sections.show(summary.probe_summary(run))"),
    ("code", "plots.probe_distributions(run.probe, run.probe_gaps)"),
    ("md", "## Time series on one axis"),
    ("code", "plots.timeline(summary.timeseries(run, timeseries_freq), *sections.utilization_series(run))"),
    ("md", "## Errors"),
    ("code", "sections.show(summary.error_breakdown(run))"),
    ("md", "## Measurement cross-check\nClient counts vs the delta of vLLM's counters between the /metrics scrapes "
           "(warm-up and probe requests fall inside the window and are counted). `agrees` is False beyond 3 %."),
    ("code", "sections.show(crosscheck.crosscheck(run), precision=2)"),
    ("md", "## Per pod\nOn Kubernetes every vLLM pod is scraped directly (a Service reaches one replica): "
           "requests and tokens each pod served per cell, from its own counters. Empty for single-server targets."),
    ("code", "sections.show(crosscheck.per_pod(run), precision=1)"),
    ("md", "## Run manifest"),
    ("code", "sections.show(sections.manifest_facts(run))"),
    ("code", "sections.show(sections.cell_status(run))"),
    ("code", "sections.data_quality_notes(run)"),
])

STRESS_NB = nb("Stress report", "Behaviour at high concurrency, the knee of an arrival-rate ramp, errors and dropped "
               "iterations.", f'run_id = "{STRESS}"\nslo_p95_ms = 0.0  # 0: the run\'s own SLO (its spec), 2000 ms where it has none\n'
               'slo_error_rate = 0.0  # 0: the run\'s own\nwindow_s = 10.0\n', [
    ("code", "import inferlab\nfrom inferlab.analysis import crosscheck, knee, summary\nfrom inferlab.report import plots, sections\n"
             "run = inferlab.load_run(run_id)\nsections.title('Stress report', run)"),
    ("md", "## Closed loop at high concurrency"),
    ("code", "cells = summary.cell_summary(run)\nclosed = cells[cells.executor != 'ramping-arrival-rate']\n"
             "sections.show(closed.drop(columns=['run_id']))"),
    ("code", "plots.closed_loop_stress(closed)"),
    ("md", "## Arrival-rate ramp and the knee\nThe knee is the highest achieved rate before a window breaks the SLO "
           "(p95 latency, error rate, or falling below 90 % of the target rate)."),
    ("code", "ramps = [c.cell_id for c in run.manifest.cells if c.executor == 'ramping-arrival-rate']\n"
             "p95_ms, error_rate = knee.run_slo(run, slo_p95_ms, slo_error_rate)\n"
             "windows = knee.ramp_windows(run, ramps[0], window_s, p95_ms, error_rate) if ramps else None\n"
             "found = knee.find_knee(windows) if ramps else {}\n"
             "sections.knee_md(found, windows, p95_ms, error_rate)"),
    ("code", "sections.show(windows) if ramps else 'no ramp cell in this run'"),
    ("code", "plots.ramp_knee(windows, found) if ramps else None"),
    ("md", "## Errors by status over time and dropped iterations"),
    ("code", "sections.show(summary.error_breakdown(run))"),
    ("code", "plots.errors_over_time(summary.timeseries(run, '2s'))"),
    ("code", "pts = run.points\nsections.show(pts[pts.metric == 'dropped_iterations'].groupby('cell_id', as_index=False)['value'].sum()"
             ".rename(columns={'value': 'dropped_iterations'}))"),
    ("md", "## Streaming probe under load"),
    ("code", "sections.show(summary.probe_summary(run))"),
    ("md", "## Measurement cross-check"),
    ("code", "sections.show(crosscheck.crosscheck(run), precision=2)"),
    ("md", "## Run manifest"),
    ("code", "sections.show(sections.manifest_facts(run))"),
    ("code", "sections.data_quality_notes(run)"),
])

COMPARE = nb("Tuned vs baseline", "Per matching cell: ratio tuned/baseline with bootstrap 95 % CIs, Mann-Whitney U, "
             "rank-biserial effect size, a verdict, and goodput under the SLO.",
             f'baseline_run = "{BASELINE}"\ntuned_run = "{TUNED}"\nslo_e2e_ms = 10000.0\nn_boot = 2000\nalpha = 0.05\n', [
    ("code", "import inferlab\nfrom inferlab.analysis import compare, summary\nfrom inferlab.report import plots, sections\n"
             "base, tuned = inferlab.load_run(baseline_run), inferlab.load_run(tuned_run)\nsections.title('Tuned vs baseline')"),
    ("code", "res = compare.compare_runs(base, tuned, slo_e2e_ms, n_boot=n_boot, alpha=alpha)\nsections.headline_md(res)"),
    ("md", "## What changed between the two runs"),
    ("code", "sections.show(sections.config_diff(base, tuned))"),
    ("md", "## Ratios with 95 % confidence intervals"),
    ("code", "plots.compare_ratios(res)"),
    ("code", "sections.show(compare.verdict_table(res), precision=3)"),
    ("md", "## Goodput under the SLO"),
    ("code", "sections.show(res[res.metric == 'goodput_rps'][['cell', 'baseline', 'tuned', 'ratio', 'verdict']], precision=2)"),
    ("md", "## Per-cell results of both runs"),
    ("code", "both = summary.combine([summary.cell_summary(base).assign(config='baseline'), summary.cell_summary(tuned).assign(config='tuned')])\n"
             "plots.throughput_vs_concurrency(both, hue='config')"),
])


DEPLOY = nb("Deploy the vLLM stack", "Render, validate and (with a reachable cluster) apply an overlay of platform/ "
            "with the kubernetes client. With `dry_run = True` or no cluster it validates only.",
            'overlay = "minikube-gpu"\ndry_run = True\ntimeout_s = 900\n', [
    ("code", "from inferlab.platform import deploy, validate"),
    ("code", "n_objects, problems = validate.validate_overlay(overlay)\n(n_objects, problems)"),
    ("code", "exit_code = deploy.deploy(overlay, dry_run=dry_run, timeout_s=timeout_s)\nexit_code"),
])


def main() -> None:
    OUT.mkdir(exist_ok=True)
    books = {"00-deploy": DEPLOY, "10-matrix-sweep": nb("Matrix sweep", "Run a sweep spec (payloads x concurrency) on a target.",
                                   SWEEP_PARAMS.format(spec="matrix-local"), SWEEP_BODY),
             "11-stress": nb("Stress run", "Closed loop to high concurrency plus an arrival-rate ramp through the knee.",
                             SWEEP_PARAMS.format(spec="stress-local"), SWEEP_BODY),
             "20-load-test-report": LOAD_TEST, "21-stress-report": STRESS_NB, "30-compare": COMPARE}
    for name, book in books.items():
        for i, cell in enumerate(book.cells):  # stable ids: regenerating changes only what changed
            cell.id = hashlib.sha1(f"{name}/{i}".encode()).hexdigest()[:8]
        nbf.write(book, OUT / f"{name}.ipynb")
        print(OUT / f"{name}.ipynb")


if __name__ == "__main__":
    main()
