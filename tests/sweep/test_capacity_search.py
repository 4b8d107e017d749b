"""The certified capacity search end to end on the stand-in server (real HTTP, real k6): the
steps it plans run as constant-rate cells, every step records n, t, the bounds and the
decision, the run record carries the claim and the boundary interval, the report renders the
step table, and a resumed search re-judges its cells to the same result. A search cut short
(SIGTERM, as a time limit sends it; a dead target) records the steps it decided, without a
claim, and the report says "incomplete: no claim"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import inferlab
from inferlab.analysis.capacity import is_certified, is_complete
from inferlab.procs import free_port
from inferlab.runs.manifest import CUT_BY_USER
from inferlab.specs import builtin_spec, resolve_spec
from inferlab.standin import StandIn, StandInConfig
from inferlab.sweep.runner import run

from ..conftest import cli_sigterm_when

# one slot, 2 ms a token: a 64-token answer takes ~0.13 s, so the server holds ~7-8 requests/s;
# e2e <= 1.5 s at p90 (generous: 8 helpers share 2 cores) breaks near there. Small steps: a look of 30.
FAST = ["capacity.start_rate=2", "capacity.growth=2", "capacity.explore_requests=24", "capacity.explore_resolution=0.3",
        "capacity.cap_requests=60", "capacity.n_looks=2", "capacity.cert_grid=[0.5,0.7,0.9]", "capacity.claim_grid=[]",
        "capacity.warmup_s=1", "capacity.max_rate=40", "capacity.pre_allocated_vus=16", "capacity.max_vus=16",
        "slo.e2e_ms=1500", "slo.e2e_p=90", "slo.ttft_ms=1500", "slo.ttft_p=90", "slo.tpot_ms=50", "slo.tpot_p=90",
        "warmup_requests=0", "probe.idle_requests=0", "observe.traces=false"]


@pytest.fixture
def standin(monkeypatch):
    key = "standin-key"
    monkeypatch.setenv("INFERLAB_API_KEY", key)
    with StandIn(StandInConfig(port=free_port(), api_key=key, slots=1, tpot_ms=2, batch_alpha=0.05)) as s:
        yield s


def _decided_cells(run_dir: Path) -> tuple[int, bool]:
    """(cells whose step has a verdict, whether a cell is running) from run.json as written."""
    try:
        m = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):  # not written yet, or being replaced
        return 0, False
    labels = ("PASS:", "FAIL:", "UNDECIDED:", "OVER:", "UNDER:")
    return sum(c["reason"].startswith(labels) for c in m["cells"]), any(c["status"] == "running" for c in m["cells"])


def _snapshot(root: Path) -> dict:
    """Every file's bytes and mtime under ``root`` (tests/runs/test_reader_readonly.py's rule)."""
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))
            if p.is_file()}


def _sigterm_after(workspace: Path, base_url: str, decided: int) -> str:
    """``inferlab capacity`` in a child process, SIGTERMed (as `timeout` does) while a cell runs
    once ``decided`` cells carry their step's verdict; returns the run id."""
    args = ["capacity", "capacity-local", "--target", "url", "--base-url", base_url, "--label", "certify",
            *[x for kv in FAST for x in ("--set", kv)]]
    runs = workspace / "data" / "runs"

    def ready() -> bool:
        dirs = sorted(runs.iterdir())
        n, running = _decided_cells(dirs[0]) if dirs else (0, False)
        return n >= decided and running

    code, out = cli_sigterm_when(args, ready)
    assert code == 1, out[-3000:]  # the runner records the cut run partial and returns: not complete
    assert "no claim: the search stopped after" in out and "capacity-partial.json" in out, out[-3000:]
    return sorted(runs.iterdir())[0].name


@pytest.mark.slow
def test_certified_search_cut_by_sigterm_keeps_its_steps_and_resume_completes_it(workspace, standin):
    """One search, cut and resumed (one search's cost for both halves): SIGTERM while a cell runs,
    once 4 cells carry their step's verdict, leaves the run ``partial`` as before, plus
    ``capacity-partial.json``: the decided steps with a complete record's per-step fields, the
    step that was running, the stop reason, no claim, no interval; the report says "incomplete:
    no claim" and shows them; a plan refuses it; reading writes nothing. ``--resume`` then
    completes the search into ``capacity.json`` (which the reader takes, superseding the
    partial one) with the same decided steps first."""
    from inferlab.analysis.plan import plan_from_result
    from inferlab.report.capacity import front_line, headline, record_of, step_table
    from inferlab.report.sections import capacity_md, capacity_steps

    rid = _sigterm_after(workspace, standin.base_url, decided=4)
    r = inferlab.load_run(rid)
    before = _snapshot(r.dir)
    assert r.manifest.status == "partial" and r.manifest.cut_by_user() and r.manifest.reason == CUT_BY_USER
    part = r.capacity
    assert part == record_of(r) and is_certified(part) and not is_complete(part)
    assert part["complete"] is False and part["status"] == "incomplete"
    assert part["stop_reason"] == "interrupted (Ctrl-C or SIGTERM)"
    assert part["claim"].startswith(f"no claim: the search stopped after {part['cert_steps_decided']} of "
                                    f"{part['cert_steps_planned']} planned certification steps (interrupted")
    assert part["certified_rate"] is None and part["msr"] is None
    assert not {"interval_low", "interval_high", "boundary"} & set(part)  # no boundary interval
    decided = [c for c in r.manifest.cells if c.reason.startswith(("PASS:", "FAIL:", "UNDECIDED:", "OVER:", "UNDER:"))]
    assert len(part["steps"]) >= 3 and sum(len(s["cells"]) for s in part["steps"]) == len(decided)
    for s in part["steps"]:  # the per-step fields of a complete record
        for m in part["judged"]:
            assert s[f"n {m}"] >= 0 and s[f"t {m}"] >= 0
        assert s["cells"] and s["validity"] in ("VALID", "INVALID") and s["backlog"] and s["phase"] in ("explore",
                                                                                                        "certify")
    o = part["open_step"]  # the step the SIGTERM cut: its finished looks and the cell it cut
    cut = [c for c in r.manifest.cells if c.status == "partial"]
    assert o and o["step"] == len(part["steps"]) + 1 and [c.cell_id for c in cut] == [o["running"]]
    assert o["looks_done"] == len(o["cells"]) and not set(o["cells"]) & {c for s in part["steps"] for c in s["cells"]}
    under, over = part["explore_bracket"]
    assert under is None or over is None or under < over
    # the report: "incomplete: no claim", and every decided step in the table
    assert "incomplete: no claim" in front_line(part)
    md = capacity_md(r).data
    assert md.startswith("**Incomplete: no claim.** The search stopped after") and "boundary interval" not in md
    assert headline(part) == md and "Certified" not in md
    assert step_table(part).shape[0] == len(part["steps"]) == capacity_steps(r).data.shape[0]
    with pytest.raises(ValueError, match="incomplete"):
        plan_from_result(part, 10.0, where=rid)
    assert r.verify() == [] and _snapshot(r.dir) == before  # reading never writes

    spec = resolve_spec(builtin_spec("capacity-local"), sets=FAST)
    assert run(spec, target="url", base_url=standin.base_url, resume=rid) == rid
    r = inferlab.load_run(rid)
    assert r.manifest.status == "complete", r.manifest.reason
    res = r.capacity
    assert is_certified(res) and res["judge"] == "certified" and is_complete(res)
    assert res["supersedes"] == ["capacity-partial.json"] and (r.dir / "capacity-partial.json").is_file()
    keys = ("rate", "phase", "decision", "cells")
    assert [{k: s[k] for k in keys} for s in res["steps"][:len(part["steps"])]] == \
        [{k: s[k] for k in keys} for s in part["steps"]]
    assert o["running"] not in {c for s in res["steps"] for c in s["cells"]}  # the cut cell is not judged
    phases = [s["phase"] for s in res["steps"]]
    assert "explore" in phases and phases.count("certify") == 3
    for s in res["steps"]:
        for m in res["judged"]:
            assert s[f"n {m}"] > 0 and s[f"t {m}"] >= 0
        assert s["cells"] and s["validity"] in ("VALID", "INVALID") and s["backlog"]
        if s["phase"] == "certify":
            assert s["decision"] in ("pass", "fail", "undecided") and "share bounds" in " ".join(s)
    # every step's cells carry its verdict, and the looks ran as segments of the same rate
    reasons = {c.cell_id: c.reason for c in r.manifest.cells if c.cell_id != o["running"]}
    assert all(v.split(":", 1)[0] in ("PASS", "FAIL", "UNDECIDED", "OVER", "UNDER") for v in reasons.values()), reasons
    # TTFT/TPOT: judged when the cells have them, else e2e only and the record says so
    if res["unmeasured"]:
        assert "e2e_ms" in res["judged"] and all(m in res["judged_note"] for m in res["unmeasured"])
    if res["certified_rate"] is not None:
        assert res["claim"].startswith(f"at least {res['certified_rate']:g} req/s") and "95% confidence" in res["claim"]
        assert res["certified_rate"] < 12  # one slot cannot hold more, whatever the draw
    assert "fixed-sequence" in res["method"] and "bracket" not in res["method"]
    # the report's capacity section: the headline and the step table
    from inferlab.report.sections import capacity_md, capacity_steps

    md = capacity_md(r).data
    assert md.startswith("**Certified: at least") and "boundary interval" in md and "bracket" not in md
    from inferlab.report.capacity import step_table

    table = step_table(res)
    m = res["judged"][0]
    assert {"rate", "phase", "decision", "validity", "backlog", f"n {m}", f"t {m}", f"{m} share bounds"} <= set(table)
    assert capacity_steps(r).data.shape[0] == len(res["steps"])  # the report's table: every step
    # resume re-judges every finished cell from its raw file: the same steps, no new cell
    cells = len(r.manifest.cells)
    from inferlab.analysis.certify import summary
    from inferlab.analysis.capacity_steps import rejudge

    again = summary(*rejudge(r))
    assert again["certified_rate"] == res["certified_rate"] and len(again["steps"]) == len(res["steps"])
    assert len(inferlab.load_run(rid).manifest.cells) == cells
    json.dumps(res)


@pytest.mark.slow
def test_certified_search_on_a_workload_holds_its_length_and_prefix_mix(workspace, standin, tmp_path):
    """A capacity search on a workload file: each step is the workload's own open loop at a
    constant session rate (lengths and prefixes drawn as the file says), recorded as its own
    workload file inside the run; the record names the workload and its rate unit."""
    import yaml

    wl = tmp_path / "mix.yaml"
    wl.write_text(yaml.safe_dump({
        "name": "mix", "seed": 7, "sessions_per_cell": 10, "input": {"kind": "uniform", "low": 20, "high": 60},
        "output": {"kind": "fixed", "value": 24}, "prefix": {"groups": 2, "tokens": 48, "fraction": 0.5},
        "max_total_tokens": 400, "arrival": {"kind": "poisson", "rate": 1.0}}))
    spec = resolve_spec(builtin_spec("capacity-local"), sets=[
        *FAST, "capacity.max_rate=8", "capacity.cert_grid=[0.6,0.8,1.0]"])
    spec = type(spec).model_validate({**spec.model_dump(exclude_unset=True, exclude={"use_payloads", "concurrency"}),
                                      "workload": str(wl)})
    rid = run(spec, target="url", base_url=standin.base_url, label="certify-workload")
    r = inferlab.load_run(rid)
    assert r.manifest.status == "complete", r.manifest.reason
    res = r.capacity
    assert is_certified(res) and res["workload"] == "mix" and res["rate_unit"] == "requests/s"
    cells = r.manifest.cells
    assert cells and all(c.executor == "scheduled" and c.workload == "mix" for c in cells)
    for c in cells:  # each step's own workload: the file's mix at the step's constant rate
        step = yaml.safe_load((r.dir / "capacity-workloads" / f"{c.cell_id}.yaml").read_text())
        assert step["arrival"] == {"kind": "constant", "rate": c.rate, "max_vus": 16, "late_ms": 50}
        assert step["prefix"] == {"groups": 2, "tokens": 48, "fraction": 0.5} and step["output"]["value"] == 24
    req = r.requests
    assert len(req) and set(req["cell_id"]) == {c.cell_id for c in cells}


@pytest.mark.slow
def test_a_search_whose_target_dies_records_its_decided_steps(workspace, monkeypatch):
    """A stop reason (the target died: the stand-in exits after 40 completed requests, inside
    exploration step 2) ends the run ``partial`` with that reason and writes the partial record:
    step 1 decided, step 2 named as the one that stopped it, no claim."""
    key = "standin-key"
    monkeypatch.setenv("INFERLAB_API_KEY", key)
    spec = resolve_spec(builtin_spec("capacity-local"), sets=FAST)
    with StandIn(process=True, port=free_port(), api_key=key, slots=1, tpot_ms=2, die_after_requests=40) as s:
        rid = run(spec, target="url", base_url=s.base_url, label="certify-death")
    r = inferlab.load_run(rid)
    assert r.manifest.status == "partial" and r.manifest.reason.startswith("target unhealthy after"), r.manifest.reason
    part = r.capacity
    assert not is_complete(part) and part["stop_reason"] == r.manifest.reason
    assert part["claim"] == f"no claim: the search stopped after 0 of 3 planned certification steps ({r.manifest.reason})"
    assert [(s["rate"], s["phase"]) for s in part["steps"]] == [(2.0, "explore")]
    assert part["open_step"]["step"] == 2 and part["open_step"]["rate"] == 4.0
    assert part["explore_bracket"] == [2.0, None] and r.verify() == []
