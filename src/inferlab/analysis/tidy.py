"""``inferlab ingest RUN``: derived tidy tables as parquet in data/tidy/<run_id>/ (deletable)."""

from __future__ import annotations

from pathlib import Path

from .. import paths
from ..runs.reader import load_run

TABLES = ("requests", "points", "summary", "probe", "probe_gaps", "gpu", "gpus", "host", "server")


def write_tidy(run_id_or_path: str) -> Path:
    run = load_run(run_id_or_path)
    out = paths.tidy_dir() / run.run_id
    out.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        df = getattr(run, name)
        df.attrs = {}
        df.to_parquet(out / f"{name}.parquet", index=False)
    run.data_quality.to_parquet(out / "data_quality.parquet", index=False)
    return out
