"""The certified capacity search end to end on the stand-in server (real HTTP, real k6): the
steps it plans run as constant-rate cells, every step records n, t, the bounds and the
decision, the run record carries the claim and the boundary interval, the report renders the
step table, and a resumed search re-judges its cells to the same result."""

from __future__ import annotations

import json

import pytest

import inferlab
from inferlab.analysis.capacity import is_certified
from inferlab.procs import free_port
from inferlab.specs import builtin_spec, resolve_spec
from inferlab.standin import StandIn, StandInConfig
from inferlab.sweep.runner import run

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


def test_certified_search_on_the_standin_records_every_step(workspace, standin):
    spec = resolve_spec(builtin_spec("capacity-local"), sets=FAST)
    rid = run(spec, target="url", base_url=standin.base_url, label="certify")
    r = inferlab.load_run(rid)
    assert r.manifest.status == "complete", r.manifest.reason
    res = r.capacity
    assert is_certified(res) and res["judge"] == "certified"
    phases = [s["phase"] for s in res["steps"]]
    assert "explore" in phases and phases.count("certify") == 3
    for s in res["steps"]:
        for m in res["judged"]:
            assert s[f"n {m}"] > 0 and s[f"t {m}"] >= 0
        assert s["cells"] and s["validity"] in ("VALID", "INVALID") and s["backlog"]
        if s["phase"] == "certify":
            assert s["decision"] in ("pass", "fail", "undecided") and "share bounds" in " ".join(s)
    # every step's cells carry its verdict, and the looks ran as segments of the same rate
    reasons = {c.cell_id: c.reason for c in r.manifest.cells}
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
    from inferlab.sweep.capacity_search import rejudge

    again = summary(*rejudge(r))
    assert again["certified_rate"] == res["certified_rate"] and len(again["steps"]) == len(res["steps"])
    assert len(inferlab.load_run(rid).manifest.cells) == cells
    json.dumps(res)


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
