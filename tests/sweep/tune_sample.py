"""A tune record whose trials are the two shipped capacity runs (real runs), for the tests that
render the tune report: no tune record ships in data/sample (its 12 runs would add ~8 MB)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from inferlab.runs.tune_record import Trial, TuneRecord, save_tune, tunes_dir
from inferlab.specs.tune import load_tune_spec

SAMPLE_CAPACITY = ("20261127T082345Z-local-capacity-local-1", "20261127T082900Z-local-capacity-local-2")
BASE = ["--max-model-len", "2048", "--enforce-eager"]


def sample_tune(sample_dir: Path, tune_id: str = "t-report") -> str:
    """Write the record under the workspace's data/tunes/ and return its id."""
    spec = load_tune_spec("tune-local")
    d = tunes_dir() / tune_id
    d.mkdir(parents=True)
    trials = []
    for i, rid in enumerate(SAMPLE_CAPACITY):
        cap = json.loads((sample_dir / rid / "capacity.json").read_text())
        trials.append(Trial(number=i, seed="default" if i == 0 else "", params={}, args=BASE, state="complete",
                            run_id=rid, msr=cap["msr"], interval_low=cap["interval_low"],
                            interval_high=cap["interval_high"], n_steps=len(cap["steps"])))
    trials.append(Trial(number=2, params={}, args=["--bad"], state="failed", reason="engine did not start"))
    rec = TuneRecord(tune_id=tune_id, created_at=datetime.now(UTC), target="local", status="complete",
                     spec=spec.model_dump(mode="json"), capacity_spec={}, baseline_args=BASE, trials=trials, best=1)
    rec.confirmation.outcome, rec.confirmation.reason = "nothing beats the default", "the best is the baseline itself"
    save_tune(rec, d)
    return tune_id
