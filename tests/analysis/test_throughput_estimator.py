"""Closed-loop throughput against a known truth: a request-level queueing simulator
(tests/sim/queueing.py) with 1, 2, 4, 8 and 16 slots, lock-step batching (every answer the same
length) and lognormal service times, a batch that slows each request a little (GPU-like) or much
(2-core CPU-like), at the shipped cell sizes (2 x VUs + 20 requests,
specs.models.SweepSpec.iterations). Issue 19 item 1: bias under 2 %."""

from __future__ import annotations

import numpy as np
import pytest

from inferlab.analysis.window import repeat_metrics
from inferlab.specs import builtin_spec, load_spec
from tests.sim.queueing import closed_loop, true_closed_rate

SPEC = load_spec(builtin_spec("matrix-local"))
SIMS = {0.0: 1, 0.02: 300, 0.2: 1000, 0.5: 1000}  # lock-step is deterministic; spread shapes need ~1,000 runs
# Distinct shapes only: with vus <= slots every user is served at once, so more slots change nothing
SHAPES = [(1, 1), (4, 1), (4, 2), (4, 4), (16, 1), (16, 2), (16, 4), (16, 8), (16, 16)]


@pytest.mark.parametrize("vus,slots", SHAPES)
@pytest.mark.parametrize("sigma", list(SIMS))  # lock-step, clustered (a batch of equal answers), spread
@pytest.mark.parametrize("alpha", [0.05, 0.6])  # time per token at 16 in the batch: 1.75x (GPU-like), 10x (2-core CPU)
def test_window_throughput_bias_under_2_percent(vus, slots, sigma, alpha):
    n = SPEC.iterations(vus)
    truth = true_closed_rate(vus, slots, alpha, sigma)
    est = np.array([repeat_metrics(closed_loop(vus, n, slots, alpha, sigma, seed=s), 1e9, vus=vus)["throughput"]
                    for s in range(SIMS[sigma])]) / truth
    bias, se = est.mean() - 1, est.std(ddof=1) / np.sqrt(len(est)) if len(est) > 1 else 0.0
    # The whole 95 % interval of the bias inside +-2 %, not only its estimate (a 300-run estimate
    # at 16 x 16, sigma 0.5, has a standard error of 0.6 points). Measured (1,000 runs a shape):
    # -0.0..+1.0 %, standard error 0.13-0.39 points. Before the session-14 corrections 16 x 16
    # read +2.1 % (sigma 0.5, alpha 0.05) and +4.6 % (sigma 0.5, alpha 0.6). Heavier tails
    # (sigma 1), a bimodal length mix and many fast failures are not claimed (docs/decisions.md).
    assert abs(bias) + 1.96 * se < 0.02, \
        f"{slots} slots, {vus} VUs, {n} requests, sigma {sigma}, alpha {alpha}: bias {bias:+.2%} (se {se:.2%})"


def test_old_littles_law_estimator_was_biased_on_this_simulator():
    """The simulator is not vacuous: Little's law over the whole cell (the estimator before issue
    19) reads a 1-slot server at 16 VUs and 36 requests ~26 % high, as the review found."""
    req = closed_loop(16, 36, 1, 0.05, 0.0)
    old = 16 / (req["duration_ms"].mean() / 1000)
    assert old / true_closed_rate(16, 1, 0.05, 0.0) - 1 == pytest.approx(0.26, abs=0.02)
    assert repeat_metrics(req, 1e9, vus=16)["throughput"] == pytest.approx(true_closed_rate(16, 1, 0.05), rel=1e-6)


def test_drain_round_is_cut():
    """A 28-request cell at 8 VUs on a server that batches all 8 (rounds 8, 8, 8, 4): the short
    last round no longer lifts throughput (Little's law read +8.8 %)."""
    req = closed_loop(8, 28, 8, 0.05, 0.0)
    assert repeat_metrics(req, 1e9, vus=8)["throughput"] == pytest.approx(true_closed_rate(8, 8, 0.05), rel=1e-6)


def test_littles_law_check_holds_on_clean_lockstep_runs():
    m = repeat_metrics(closed_loop(4, SPEC.iterations(4), 2, 0.05, 0.0), 1e9, vus=4)
    assert m["little_ratio"] == pytest.approx(1.0, abs=0.05)
