"""Shared by the golden tests of shipped evidence: a workspace that holds a shipped record
folder's runs and comparisons as links, so the product's readers find them by id; and a shipped
capacity search read again with the product's verifier and judge."""

from __future__ import annotations

from pathlib import Path

from inferlab.analysis.capacity_steps import complete_record, replay
from inferlab.runs.reader import Run
from inferlab.runs.verify import verify_run
from inferlab.specs import LoadSpec

# what the local capacity evidence leaves out for size: the 1 s /metrics series
LEFT_OUT = [("missing", "telemetry/metrics-samples.prom.gz")]


def shipped_search(run_dir: Path) -> tuple[Run, dict, dict]:
    """A shipped capacity search read again: it verifies but for what was left out for size
    (``LEFT_OUT``), it is complete, and it comes back as (run, recorded record, the complete
    record the current judge rebuilds from its raw cells) for the test to compare."""
    assert [(p.kind, p.path) for p in verify_run(run_dir)] == LEFT_OUT
    run = Run(run_dir)
    rec = run.capacity
    assert rec["complete"] is True and run.manifest.status == "complete"
    return run, rec, judged_again(run)


def judged_again(run: Run) -> dict:
    """The complete capacity record the current judge rebuilds from a run's raw cells (read-only)."""
    return complete_record(replay(run), LoadSpec.model_validate(run.manifest.spec))


def link_workspace(home: Path, data: Path) -> Path:
    """``home/data/{runs,comparisons}/<id>`` -> ``data/{runs,comparisons}/<id>`` (read-only use)."""
    for kind in ("runs", "comparisons"):
        (home / "data" / kind).mkdir(parents=True, exist_ok=True)
        for r in (data / kind).iterdir() if (data / kind).is_dir() else ():
            (home / "data" / kind / r.name).symlink_to(r)
    return home
