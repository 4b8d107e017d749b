"""Comparison orchestration: up to the cluster boundary (no cluster here), and an interleaved A/B
against the stand-in server (target url), whose two configurations differ only in slots. The
real engine's 2+2 interleave, with its engine restarts, is tests/e2e/test_comparison.py."""

from __future__ import annotations

import numpy as np
import pytest

import inferlab
from inferlab.analysis.compare import compare_comparison, compare_sides, sides
from inferlab.procs import free_port
from inferlab.runs.comparison import load_comparison
from inferlab.specs import builtin_spec, load_spec
from inferlab.standin import StandIn, StandInConfig
from inferlab.sweep.ab import _order, run_comparison


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
    repeat, a fresh stand-in on the same port with the next side's configuration, in the order
    the comparison plans (``ab._order``: ABBA by default). ``overrides``: repeat index -> a
    configuration that repeat gets instead (e.g. one that dies)."""

    def __init__(self, configs: dict[str, StandInConfig], order: str = "abba", pairs: int = 8,
                 overrides: dict[int, StandInConfig] | None = None) -> None:
        rng = np.random.default_rng(0)
        self.plan = [side for k in range(1, pairs + 1) for side in _order(k, order, rng)]
        self.configs, self.overrides, self.served = configs, overrides or {}, []  # served: (side, ground truth)
        self.current = StandIn(self._config(0)).start()

    def _config(self, i: int) -> StandInConfig:
        return self.overrides.get(i, self.configs[self.plan[i] if i < len(self.plan) else "baseline"])

    def __call__(self, comparison) -> None:
        side = comparison.repeats[-1].side
        self.current.stop()
        self.served.append((side, self.current.stats(with_requests=False)))
        self.current = StandIn(self._config(len(comparison.repeats))).start()

    def stop(self) -> None:
        self.current.stop()


def test_interleaved_ab_on_the_standin_finds_the_one_slot_side_slower(workspace, monkeypatch):
    """2+2 repeats at 4 VUs: baseline a stand-in with the default slots, tuned one with a single
    slot (vLLM's --max-num-seqs 1). The sides interleave A B B A (the default ABBA order), every
    repeat is a complete verified run against its own server, and the comparison finds the tuned
    side's throughput lower."""
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
    assert c.order == "abba" and [r.side for r in c.repeats] == ["baseline", "tuned", "tuned", "baseline"]
    for r in c.repeats:
        assert inferlab.load_run(r.run_id).verify() == []
    # the servers' ground truth: each repeat had its own; the baseline's ran the 4 VUs (and the
    # under-load probe) at once, the one-slot one never two requests
    assert [side for side, _ in switcher.served] == ["baseline", "tuned", "tuned", "baseline"]
    assert all(s.max_running >= 4 if side == "baseline" else s.max_running == 1 for side, s in switcher.served)
    a, b, what = sides(comparison=cid)
    assert len(a) == len(b) == 2 and "A B B A (abba)" in what
    res = compare_sides(a, b)
    prim = res[res["role"] == "primary"]
    assert list(prim["n_baseline"]) == [2] and list(prim["n_tuned"]) == [2]
    assert (prim["ratio"] < 0.6).all() and (prim["ci_low"] <= prim["ratio"]).all(), prim


def test_abba_until_width_with_an_engine_death_on_the_standin(workspace, monkeypatch):
    """3 pairs (odd) in ABBA order, ``--until-width`` that is never reached (looks after pairs 2
    and 3, budget 3), same configuration both sides, and the tuned repeat of pair 2 against a
    stand-in that dies after 4 completed requests (idle probe, warm-up, the first measured one):
    the order is A B | B A | A B and recorded with the design; the dead repeat's run is partial
    and stays in; the cells it never ran count against the tuned side (0 served: "worse"), and
    the comparison is judged on repeated p-values over looks 2..3."""
    key = "standin-key"
    monkeypatch.setenv("INFERLAB_API_KEY", key)
    server = StandInConfig(port=free_port(), api_key=key, tpot_ms=5)
    dying = server.model_copy(update={"die_after_requests": 4})
    switcher = SideSwitcher({"baseline": server, "tuned": server}, pairs=3, overrides={2: dying})
    spec = load_spec(builtin_spec("ci-tiny"), {"concurrency": [1, 2], "iterations_per_vu": 3, "name": "tiny"})
    try:
        cid = run_comparison(spec, spec, target="url", base_url=f"http://127.0.0.1:{server.port}", pairs=2,
                             until_width=1e-6, max_pairs=3, label="abba-death", on_repeat=switcher)
    finally:
        switcher.stop()
    c = load_comparison(cid)
    assert (c.order, c.pairs, c.max_pairs, c.until_width) == ("abba", 2, 3, 1e-6)
    assert [r.side for r in c.repeats] == ["baseline", "tuned", "tuned", "baseline", "baseline", "tuned"]
    dead = c.repeats[2]
    assert dead.status in ("partial", "failed"), dead.status
    never = [x.cell_id for x in inferlab.load_run(dead.run_id).manifest.cells if x.status in ("pending", "running")]
    assert never, "the stand-in died after the last cell"
    res, what = compare_comparison(cid)
    assert "--until-width" in what and res.attrs["looks"] == (2, 3)
    for cell in never:
        row = res[(res["cell"] == cell) & (res["metric"] == "throughput")].iloc[0]
        assert (row["n_baseline"], row["n_tuned"], row["never_ran_tuned"], row["never_ran_baseline"]) == (3, 3, 1, 0)
        assert row["verdict"] == "worse: a tuned repeat served no successful request"
    assert np.isfinite(res["p_sequential"]).any() and set(res["validity"]) <= {"VALID", "INVALID"}
