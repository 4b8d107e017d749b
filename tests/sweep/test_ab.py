"""Comparison orchestration: up to the cluster boundary (no cluster here), and an interleaved A/B
against the stand-in server (target url), whose two configurations differ only in slots. The
real engine's 2+2 interleave, with its engine restarts, is tests/e2e/test_comparison.py."""

from __future__ import annotations

import pytest

import inferlab
from inferlab.analysis.compare import compare_sides, sides
from inferlab.procs import free_port
from inferlab.runs.comparison import load_comparison
from inferlab.specs import builtin_spec, load_spec
from inferlab.standin import StandIn, StandInConfig
from inferlab.sweep.ab import run_comparison


def test_k8s_comparison_deploys_each_sides_overlay_and_stops_without_a_cluster(workspace, monkeypatch, tmp_path):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    spec = load_spec(builtin_spec("ci-tiny"))
    with pytest.raises(RuntimeError, match="deploy of overlay 'baseline' exited 3"):
        run_comparison(spec, spec, target="k8s", pairs=1, label="k8s", overlays=("baseline", "tuned"))
    (d,) = (workspace / "data" / "comparisons").iterdir()
    c = load_comparison(d)
    assert c.status == "failed" and "deploy of overlay" in c.reason and c.repeats == []


def test_comparisons_take_sweep_specs_only(workspace):
    with pytest.raises(ValueError, match="sweep specs"):
        run_comparison(load_spec(builtin_spec("stress-local")), load_spec(builtin_spec("stress-local")))


class SideSwitcher:
    """The user's part of an A/B on a url target (the tool cannot restart that server): after each
    repeat, a fresh stand-in on the same port with the next side's configuration."""

    def __init__(self, configs: dict[str, StandInConfig]) -> None:
        self.configs, self.served = configs, []  # served: (side, the stand-in's ground truth) per repeat
        self.current = StandIn(configs["baseline"]).start()

    def __call__(self, comparison) -> None:
        side = comparison.repeats[-1].side
        self.current.stop()
        self.served.append((side, self.current.stats(with_requests=False)))
        self.current = StandIn(self.configs["tuned" if side == "baseline" else "baseline"]).start()

    def stop(self) -> None:
        self.current.stop()


def test_interleaved_ab_on_the_standin_finds_the_one_slot_side_slower(workspace, monkeypatch):
    """2+2 repeats at 4 VUs: baseline a stand-in with the default slots, tuned one with a single
    slot (vLLM's --max-num-seqs 1). The sides alternate, every repeat is a complete verified run
    against its own server, and the comparison finds the tuned side's throughput lower."""
    key = "standin-key"
    monkeypatch.setenv("INFERLAB_API_KEY", key)
    server = StandInConfig(port=free_port(), api_key=key, tpot_ms=10)
    switcher = SideSwitcher({"baseline": server, "tuned": server.model_copy(update={"slots": 1})})
    sweep = {"concurrency": [4], "iterations_per_vu": 6}
    base = load_spec(builtin_spec("ci-tiny"), {**sweep, "name": "tiny-a"})
    tuned = load_spec(builtin_spec("ci-tiny"), {**sweep, "name": "tiny-b", "engine": {"args": ["--max-num-seqs", "1"]}})
    try:
        cid = run_comparison(base, tuned, target="url", base_url=f"http://127.0.0.1:{server.port}", pairs=2,
                             label="standin", on_repeat=switcher)
    finally:
        switcher.stop()
    c = load_comparison(cid)
    assert c.status == "complete", c.reason
    assert any("cannot restart it between repeats" in n for n in c.notes), c.notes
    assert [r.side for r in c.repeats] == ["baseline", "tuned", "baseline", "tuned"]
    for r in c.repeats:
        assert inferlab.load_run(r.run_id).verify() == []
    # the servers' ground truth: each repeat had its own; the baseline's ran the 4 VUs (and the
    # under-load probe) at once, the one-slot one never two requests
    assert [side for side, _ in switcher.served] == ["baseline", "tuned", "baseline", "tuned"]
    assert all(s.max_running >= 4 if side == "baseline" else s.max_running == 1 for side, s in switcher.served)
    a, b, what = sides(comparison=cid)
    assert len(a) == len(b) == 2 and "A B A B" in what
    res = compare_sides(a, b)
    prim = res[res["role"] == "primary"]
    assert list(prim["n_baseline"]) == [2] and list(prim["n_tuned"]) == [2]
    assert (prim["ratio"] < 0.6).all() and (prim["ci_low"] <= prim["ratio"]).all(), prim
