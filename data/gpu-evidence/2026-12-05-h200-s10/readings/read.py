"""How readings/*.txt were made from the runs of this folder (README.md), with the product's own
reader, capacity judge, comparison, answer check and energy code; writes nothing into the runs.

    PYTHONPATH=src python data/gpu-evidence/2026-12-05-h200-s10/readings/read.py

About a minute on 2 cores. The reports beside (readings/*.html, *.pdf) are `inferlab report --runs
<id>` with INFERLAB_HOME pointing at a folder whose data/runs and data/comparisons link to this
folder's runs (README.md, "Reading it again").
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CAP = {"cap-1": ROOT / "cap-1/ws/data/runs/20261205T033905Z-local-cap-1",
       "cap-2": ROOT / "cap-2/ws/data/runs/20261205T034456Z-local-cap-2"}
AB = ROOT / "ab/ws/data"
C = "20261205T034923Z-local-ab-gpu-graphs-vs-eager"
KEYS = ("rate", "phase", "decision", "n ttft_ms", "t ttft_ms", "n e2e_ms", "t e2e_ms", "inflation", "ttft_ms share bounds")


def capacity_readings() -> None:
    from inferlab.analysis.capacity_steps import complete_record, replay
    from inferlab.report.capacity import front_line, headline, step_table
    from inferlab.runs.reader import Run
    from inferlab.specs import LoadSpec

    for label, d in CAP.items():
        run = Run(d)
        rec = run.capacity
        again = complete_record(replay(run), LoadSpec.model_validate(run.manifest.spec))
        same = [[s.get(k) for k in KEYS] for s in again["steps"]] == [[s.get(k) for k in KEYS] for s in rec["steps"]]
        with pd.option_context("display.width", 400, "display.max_columns", 40, "display.max_colwidth", 60):
            table = step_table(rec).to_string(index=False)
        (HERE / f"{label}.report.txt").write_text("\n\n".join([
            front_line(rec), headline(rec), table,
            f"re-judged from the raw cells by the current judge: steps {'identical' if same else 'DIFFER'}, "
            f"certified {again['certified_rate']}, boundary {again['boundary']:.1f} "
            f"[{again['interval_low']:.1f}, {again['interval_high']:.1f}] (recorded: {rec['boundary']:.1f} "
            f"[{rec['interval_low']:.1f}, {rec['interval_high']:.1f}]; README, 'The boundary interval')"]) + "\n")


def ab_readings() -> None:
    with tempfile.TemporaryDirectory() as home:
        for kind in ("runs", "comparisons"):
            (Path(home) / "data" / kind).mkdir(parents=True)
            for r in (AB / kind).iterdir():
                (Path(home) / "data" / kind / r.name).symlink_to(r)
        os.environ["INFERLAB_HOME"] = home
        from inferlab.analysis.compare import compare_comparison
        from inferlab.analysis.energy import energy_cell_metrics
        from inferlab.report.answers import answer_lines
        from inferlab.runs.reader import Run

        res, _ = compare_comparison(C)
        cols = ["cell", "metric", "repeats", "baseline", "tuned", "ratio", "ci_low_adj", "ci_high_adj", "validity", "verdict"]
        with pd.option_context("display.width", 300, "display.max_columns", 20):
            text = res[[c for c in cols if c in res.columns]].round(4).to_string(index=False)
        rows = []
        for r in sorted((AB / "runs").iterdir()):
            for cell, m in energy_cell_metrics(Run(r)).items():
                rows.append({"run": r.name, "side": "eager" if r.name.endswith("-a") else "graphs", "cell": cell,
                             **{k: m.get(k, np.nan) for k in ("j_per_token", "j_per_good_request")}})
        energy = pd.DataFrame(rows).round(4).to_string(index=False)
        (HERE / "compare.txt").write_text(text + "\n\n" + "\n".join(answer_lines(C)) + "\n\nenergy per run (NVML):\n"
                                          + energy + "\n")


if __name__ == "__main__":
    capacity_readings()
    ab_readings()
