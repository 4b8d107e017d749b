"""How readings/*.txt were made from the runs of this folder (README.md), with the product's own
reader, capacity judge, comparison and energy code; writes nothing into the runs.

    PYTHONPATH=src python data/gpu-evidence/2026-12-05-h100-s12/readings/read.py

Under a minute on 2 cores.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CAP = ROOT / "cap-1/ws/data/runs/20261205T113207Z-local-cap-1"
AA = ROOT / "traces-aa/ws/data"
C = "20261205T114148Z-local-ab-gpu-detailed-traces"
KEYS = ("rate", "phase", "decision", "n ttft_ms", "t ttft_ms", "n e2e_ms", "t e2e_ms", "inflation", "ttft_ms share bounds")


def capacity_readings() -> None:
    """The cut search as recorded (capacity-partial.json) and re-judged from its raw cells."""
    from inferlab.analysis.capacity_steps import partial_record, replay
    from inferlab.report.capacity import front_line, headline, step_table
    from inferlab.runs.reader import Run
    from inferlab.specs import LoadSpec

    run = Run(CAP)
    rec = run.capacity
    state = replay(run)
    again = partial_record(state, LoadSpec.model_validate(run.manifest.spec), rec["stop_reason"])
    same = [[s.get(k) for k in KEYS] for s in again["steps"]] == [[s.get(k) for k in KEYS] for s in rec["steps"]]
    with pd.option_context("display.width", 400, "display.max_columns", 40, "display.max_colwidth", 60):
        table = step_table(rec).to_string(index=False)
    (HERE / "cap-1.report.txt").write_text("\n\n".join([
        front_line(rec), headline(rec), table,
        f"re-judged from the raw cells by the current judge: {len(again['steps'])} steps "
        f"{'identical' if same else 'DIFFER'}; the open step {rec['open_step']['rate']} req/s ran "
        f"{rec['open_step']['looks_done']} of {rec['open_step']['looks_planned']} looks when the call's limit cut it"]) + "\n")


def aa_readings() -> None:
    with tempfile.TemporaryDirectory() as home:
        for kind in ("runs", "comparisons"):
            (Path(home) / "data" / kind).mkdir(parents=True)
            for r in (AA / kind).iterdir():
                (Path(home) / "data" / kind / r.name).symlink_to(r)
        os.environ["INFERLAB_HOME"] = home
        from inferlab.analysis.compare import compare_comparison
        from inferlab.analysis.energy import energy_cell_metrics
        from inferlab.runs.reader import Run

        res, _ = compare_comparison(C)
        cols = ["cell", "metric", "repeats", "baseline", "tuned", "ratio", "ci_low_adj", "ci_high_adj", "validity", "verdict"]
        with pd.option_context("display.width", 300, "display.max_columns", 20, "display.max_colwidth", 120):
            text = res[[c for c in cols if c in res.columns]].round(4).to_string(index=False)
        rows = []
        for r in sorted((AA / "runs").iterdir()):
            run = Run(r)
            for cell, m in energy_cell_metrics(run).items():
                rows.append({"run": r.name, "side": "untraced" if r.name.endswith("-a") else "detailed traces",
                             "cell": cell, **{k: m.get(k, np.nan) for k in ("j_per_token", "j_per_good_request")}})
        energy = pd.DataFrame(rows).round(4).to_string(index=False)
        (HERE / "compare.txt").write_text(text + "\n\nenergy per run (NVML):\n" + energy + "\n")


if __name__ == "__main__":
    capacity_readings()
    aa_readings()
