"""``Run.requests`` and ``Run.points`` from one pass over each cell's k6 file: the same tables
and data_quality rows the two ingest readers give file by file, in the order the tables were
first asked for, with each file parsed (and hashed) once."""

from __future__ import annotations

import pandas as pd
import pytest

import inferlab
import inferlab.runs.reader as reader
from inferlab.ingest import read_k6, read_k6_points
from inferlab.runs.layout import CELL_FILES

RUN = "20261126T214243Z-url-h200-stress"  # 5 cells: closed-loop and ramp k6 files


@pytest.fixture
def counted(monkeypatch) -> list[str]:
    """The k6 files the run reader parses, one entry per pass."""
    passes: list[str] = []
    one_pass = reader.read_k6_tables

    def counting(path, *args, **kw):
        passes.append(str(path))
        return one_pass(path, *args, **kw)

    monkeypatch.setattr(reader, "read_k6_tables", counting)
    return passes


def by_file(run) -> tuple[pd.DataFrame, pd.DataFrame, list[dict], list[dict]]:
    """The oracle: each cell's file through ``read_k6`` and ``read_k6_points`` separately,
    tagged as the reader tags them; (requests, points, their quality rows)."""
    req, pts, req_q, pts_q = [], [], [], []
    for cell in run.manifest.cells:
        p = run.dir / "cells" / cell.cell_id / CELL_FILES["k6"]
        r, o = read_k6(p), read_k6_points(p)
        req_q.append({"run_id": run.run_id, "cell_id": cell.cell_id, **r.attrs["ingest"]})
        pts_q.append({"run_id": run.run_id, "cell_id": cell.cell_id, **o.attrs["ingest"]})
        r = r.assign(phase=r["phase"] if "phase" in r.columns else "measure", run_id=run.run_id,
                     cell_id=cell.cell_id, payload=cell.payload, vus=cell.vus, executor=cell.executor)
        o = o.assign(run_id=run.run_id, cell_id=cell.cell_id)
        lead = ["run_id", "cell_id"]
        req.append(r[lead + [c for c in r.columns if c not in lead]])
        pts.append(o[lead + [c for c in o.columns if c not in lead]])
    return pd.concat(req, ignore_index=True), pd.concat(pts, ignore_index=True), req_q, pts_q


@pytest.mark.parametrize("first", ["requests", "points"])
def test_both_k6_tables_come_from_one_pass_per_file_and_equal_the_two_readers(counted, first):
    run = inferlab.load_run(RUN)
    cells = len(run.manifest.cells)
    assert cells == 5
    tables = {first: getattr(run, first)}
    tables[{"requests": "points", "points": "requests"}[first]] = run.points if first == "requests" else run.requests
    assert len(counted) == cells and len(set(counted)) == cells  # one pass per file, both tables
    req, pts, req_q, pts_q = by_file(run)
    pd.testing.assert_frame_equal(tables["requests"], req)
    pd.testing.assert_frame_equal(tables["points"], pts)
    rows = req_q + pts_q if first == "requests" else pts_q + req_q  # as if each table were read alone
    pd.testing.assert_frame_equal(run.data_quality, pd.DataFrame(rows))
    assert run.requests is tables["requests"] and len(counted) == cells  # cached: no further pass
