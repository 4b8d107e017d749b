"""Sequential step decisions and the certified search, on the request-level queueing simulator.

The server (tests/sim/queueing.py ``open_loop_batch``): 8 slots, processor sharing with a 5 %
slowdown per extra running request, lognormal work (mean 1 s, log-sd 0.6), the first 15 % of
a request's work its prefill. SLO: TTFT <= 500 ms at p95. Its violating share is ~1.5 % at low
load (long prompts), 2.4 % at 4.0 req/s, 5 % near 4.6-4.75 req/s and climbs steeply after, as
the queue starts to form (capacity ~5.9 req/s); violations there come in runs (a step of 1,500
requests carries the information of ~1,500 / 5 independent ones).

Truth for an engine of speed ``s`` (latencies at rate ``r`` = a speed-1 engine's at ``r / s``,
divided by ``s``): the boundary is ``s * rho`` where the long-run p95 TTFT of the speed-1 engine
at ``rho`` equals ``500 ms * s``. ``Q95_S`` below is that p95 on a 0.05 req/s grid, from 3 x
25,000-request runs per rate (``open_loop_batch(..., prefill_share=0.15, seed=2026)``, first
1,000 cut; about 20 s to regenerate), smoothed (5-point running mean, made monotone).
The rule and the searches are simulated vectorized (``sequential_many``: what ``decide`` gives
look by look, checked replicate for replicate), so CI runs the issue's full 2,000 searches per
noise level.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from inferlab.analysis.certify import (CERTIFY, EXPLORE, SearchConfig, StepPlan, StepRecord, boundary_guess,
                                       boundary_interval,
                                       certified_rate, next_step, record, summary)
from inferlab.analysis.step_decision import (CONTINUE, FAIL, GROWS, KEEPS_UP, PASS, RISES, Backlog, BoundCount, SloBound, StepDecision,
                                             backlog_growth, clopper_pearson, decide, decide_frame, default_cap,
                                             look_sizes, requests_needed, sequential_many, spent_alpha,
                                             step_backlog, variance_inflation)
from tests.sim.queueing import T0, looks_at_speeds, open_loop, open_loop_batch, telegraph_path

SIM = dict(slots=8, alpha=0.05, sigma=0.6, work_mean=1.0, prefill_share=0.15)
SLO = (SloBound("ttft_ms", 500.0, 0.95),)
WARM = 50  # requests cut from each step's start (its warm-up)
RHO = np.round(np.arange(2.0, 5.61, 0.05), 3)
Q95_S = np.array([
    0.3584, 0.3583, 0.3608, 0.3646, 0.3616, 0.3640, 0.3636, 0.3627, 0.3652, 0.3667, 0.3668, 0.3709, 0.3703,
    0.3695, 0.3704, 0.3722, 0.3765, 0.3737, 0.3768, 0.3770, 0.3759, 0.3790, 0.3841, 0.3810, 0.3797, 0.3843,
    0.3844, 0.3881, 0.3922, 0.3900, 0.3893, 0.3930, 0.3934, 0.3956, 0.3997, 0.4079, 0.4011, 0.4086, 0.4079,
    0.4120, 0.4113, 0.4215, 0.4282, 0.4223, 0.4332, 0.4374, 0.4412, 0.4447, 0.4609, 0.4611, 0.4895, 0.4865,
    0.4938, 0.5158, 0.5513, 0.5447, 0.5765, 0.6180, 0.6306, 0.6792, 0.6888, 0.7183, 0.7752, 0.8265, 0.8756,
    0.9551, 0.9810, 1.0770, 1.2570, 1.5039, 1.7457, 1.6841, 1.7384])


def true_boundary(speed: np.ndarray) -> np.ndarray:
    """The rate where the long-run p95 TTFT reaches 500 ms, for engines of these speeds."""
    smooth = np.convolve(Q95_S, np.ones(5) / 5, mode="same")
    smooth[:2], smooth[-2:] = Q95_S[:2], Q95_S[-2:]
    return speed * np.interp(0.5 * speed, np.maximum.accumulate(smooth), RHO)


def ttft_ms(rates, n: int, speeds=1.0, seed: int = 0) -> np.ndarray:
    """(steps, n) TTFTs in ms of constant-rate steps (one per rate), warm-up cut."""
    rates = np.asarray(rates, float)
    tt = open_loop_batch(np.arange(n + WARM)[None, :] / rates[:, None], speed=speeds, seed=seed, **SIM)["ttft"]
    tt *= 1000.0  # in place: a fresh (2,000 x 4,050) array costs more to touch than to fill
    return tt[:, WARM:]


def run_step(rate: float, values: np.ndarray, looks, alpha: float = 0.05):
    """The step's sequential decision through :func:`decide`: look at each size until one is final."""
    for k, m in enumerate(looks, 1):
        d = decide(rate, {"ttft_ms": values[:m]}, np.ones(m, bool), list(SLO), k, len(looks), alpha, ends=looks[:k])
        if d.final:
            return d
    return d


CAP = default_cap(SLO)  # 4,000 requests at p95


def pass_rate(rate: float, reps: int, cap: int, n_looks: int, seed: int) -> tuple[float, float, float]:
    """(share of steps passed, pooled violating share, mean requests used) at one rate."""
    tt = ttft_ms(np.full(reps, rate), cap, seed=seed)
    out = sequential_many(tt, SLO[0], look_sizes(cap, n_looks))
    return float(np.mean(out.decision == PASS)), float(np.mean(tt > 500)), float(np.mean(out.n))


def as_decision(rate: float, out, i: int, n_looks: int) -> StepDecision:
    """Replicate ``i`` of a :func:`sequential_many` outcome as the StepDecision a step records."""
    b = SLO[0]
    c = BoundCount(b.metric, b.bound, b.q, int(out.n[i]), int(out.t[i]), float(out.d[i]), float(out.lower[i]),
                   float(out.upper[i]), str(out.decision[i]))
    return StepDecision(rate, int(out.n[i]), n_looks, n_looks, (c,), None, str(out.decision[i]), "simulated")


# ---------------------------------------------------------------- the step decision


def test_the_batch_simulator_is_the_event_simulator():
    """open_loop_batch replays open_loop request for request (same work draws, same seed)."""
    arr = np.arange(300) / 5.0
    one = open_loop(arr, 8, 0.05, 0.6, 1.0, seed=3)
    many = open_loop_batch(np.vstack([arr, arr]), 8, 0.05, 0.6, 1.0, seed=3)
    assert np.allclose(one["duration_ms"].to_numpy() / 1000, many["e2e"][0], atol=1e-9)
    assert np.all(many["ttft"] > 0) and np.all(many["ttft"] < many["e2e"])


def test_the_batch_simulator_refuses_what_its_compiled_loop_cannot_run():
    """No slots (the loop would read past its slot array and never end) and a speed path with a
    NaN time or factor (the loop would ignore it and every change after it)."""
    arr = np.arange(20)[None, :] / 5.0
    with pytest.raises(ValueError, match="slots must be at least 1"):
        open_loop_batch(arr, 0)
    for times, factors in (([[0.0, np.nan]], [[1.0, 0.5]]), ([[0.0, 1.0]], [[1.0, np.nan]])):
        with pytest.raises(ValueError, match="speed_path"):
            open_loop_batch(arr, 4, speed_path=(np.array(times), np.array(factors)))


def test_requests_needed_for_a_zero_violation_pass():
    assert requests_needed(0.99, 0.95) == 299 and requests_needed(0.99, 0.99) == 459
    assert requests_needed(0.95, 0.95) == 59
    # the same number from the bound itself: zero violations in 299 requests bound p99 at 95 %
    assert clopper_pearson(0, 299, 0.05)[1] <= 0.01 < clopper_pearson(0, 298, 0.05)[1]


def test_alpha_spent_over_the_looks_adds_up_to_alpha():
    spent = [spent_alpha(0.05, k, 5) for k in range(1, 6)]
    assert abs(sum(spent) - 0.05) < 1e-12 and spent == sorted(spent)
    assert look_sizes(1500, 5) == [300, 600, 900, 1200, 1500]


def test_independent_requests_p99_error_and_power():
    """Independent draws at p99, 5 looks up to the default cap (20,000 requests): a step at the
    allowed 1 % passes <= 5 % of the time; one at 0.5 % passes >= 80 %, 1,000 steps each."""
    rng = np.random.default_rng(7)
    slo = SloBound("e2e_ms", 1.0, 0.99)
    looks = look_sizes(default_cap([slo]), 5)

    def passes(p: float) -> float:
        x = np.where(rng.random((1000, looks[-1])) < p, 2.0, 0.0)  # 2.0: over the bound
        return float(np.mean(sequential_many(x, slo, looks).decision == PASS))

    bad, good = passes(0.01), passes(0.005)
    assert bad <= 0.05, f"P(pass | share = allowed) = {bad:.3f}"
    assert good >= 0.80, f"P(pass | share = allowed / 2) = {good:.3f}"


def test_vectorized_rule_is_the_step_rule():
    """sequential_many gives, replicate for replicate, what decide() gives look by look."""
    tt = ttft_ms(np.full(12, 4.6), 1000, seed=4)
    looks = look_sizes(1000, 5)
    out = sequential_many(tt, SLO[0], looks)
    for i, v in enumerate(tt):
        d = run_step(4.6, v, looks)
        assert (d.decision, d.n, d.counts[0].t) == (out.decision[i], out.n[i], out.t[i])
        assert d.counts[0].inflation == pytest.approx(out.d[i]) and d.counts[0].upper == pytest.approx(out.upper[i])


def test_queueing_steps_at_exactly_the_allowed_and_half_the_allowed_share():
    """The issue's criterion at its edges, on the queueing simulator (violations in runs), 5 looks
    up to the default cap (4,000 requests at p95): P(pass | share = 1 - q) <= 5 % and
    P(pass | share = (1 - q) / 2) >= 80 %, 'undecided' counted as a fail, 1,000 steps each.
    Measured: 2.6 % (share 5.14 %) and 90.1 % (2.55 %, 2,470 requests on average; with the
    clustering floor pooled over the looks, before session 9: 2.5 % and 89.7 %); the old rule
    (cap 1,500, inflation at its 90 % bound): 7.0 % (5.03 %) and 71.5 % (2.54 %)."""
    bad, share_bad, _ = pass_rate(4.62, 1000, CAP, 5, seed=31)
    good, share_good, n_good = pass_rate(4.0, 1000, CAP, 5, seed=13)
    assert share_bad >= 0.05 and share_good >= 0.025, (share_bad, share_good)
    figures = (f"P(pass | {share_bad:.2%}) = {bad:.3f}, P(pass | {share_good:.2%}) = {good:.3f} "
               f"({n_good:.0f} requests on average)")
    print(figures)
    assert bad <= 0.05 and good >= 0.80, figures


def test_queueing_steps_above_the_allowed_share_fail():
    """Further over the allowed share the rule passes even less often (its false-pass rate
    falls with the excess): at 7.2 % against 5 % allowed, measured 0 of 400."""
    bad, share_bad, _ = pass_rate(4.8, 400, CAP, 5, seed=22)
    assert share_bad >= 0.065 and bad <= 0.01, (share_bad, bad)


def test_a_failed_request_violates_every_bound_and_the_record_says_why():
    n = 400
    start = T0 + pd.to_timedelta(np.arange(n) / 4.0, "s")
    frame = pd.DataFrame({"start_ts": start, "end_ts": start + pd.Timedelta(milliseconds=300),
                          "ttft_ms": 100.0, "tpot_ms": 20.0, "ok": np.arange(n) % 10 != 0})
    slo = [SloBound("ttft_ms", 500.0, 0.99), SloBound("tpot_ms", 50.0, 0.99)]
    d = decide_frame(frame, 4.0, slo, 1, 1)
    assert [c.t for c in d.counts] == [40, 40] and d.decision == "fail"
    assert "ttft_ms" in d.reason and "tpot_ms" in d.reason and "40 of 400" in d.reason
    clean = decide_frame(frame.assign(ok=True), 4.0, slo, 1, 1)
    assert clean.decision == PASS and clean.counts[0].upper <= 0.01 and clean.backlog.grows is False


def test_a_calm_step_with_a_transient_far_below_the_bound_passes():
    """Regression (H200, e2e <= 2,000 ms at p95, 129.5 req/s: 0 violations in 3,981 requests came
    out UNDECIDED, upper bound 15.66 %): the 50 largest values in one contiguous run, all below
    0.3x the bound, used to floor D at ~the batch size. They are not near the bound, so they no
    longer set the floor: the step passes at p95 and at p99 (cap 4,000). The same transient
    near the bound (0.6-0.95x) still floors D: then it is evidence about how violations cluster."""
    rng = np.random.default_rng(11)
    n, bound = 4000, 2000.0
    x = rng.uniform(300.0, 450.0, n)
    x[300:350] = rng.uniform(480.0, 590.0, 50)  # the transient, within the first look: all < 0.3 x 2,000 ms
    for q in (0.95, 0.99):
        slo = SloBound("e2e_ms", bound, q)
        looks = look_sizes(4000, 5)
        out = sequential_many(x[None, :], slo, looks)
        assert out.decision[0] == PASS and out.d[0] == pytest.approx(1.0), (q, out.d[0], out.upper[0])
        d = decide(129.5, {"e2e_ms": x}, np.ones(n, bool), [slo], 5, 5)
        assert d.passed and d.counts[0].inflation == pytest.approx(1.0), d.reason
    near = x.copy()
    near[300:350] = rng.uniform(1200.0, 1900.0, 50)
    c = decide(129.5, {"e2e_ms": near}, np.ones(n, bool), [SloBound("e2e_ms", bound, 0.95)], 5, 5).counts[0]
    assert c.t == 0 and c.inflation > 100, c
    # as the search calls it, told where the looks end: the burst inside look 1 still floors D, at
    # its ceiling (a look's 800 requests / 10), and the step does not pass
    d = decide(129.5, {"e2e_ms": near}, np.ones(n, bool), [SloBound("e2e_ms", bound, 0.95)], 5, 5,
               ends=look_sizes(4000, 5))
    assert d.counts[0].inflation == pytest.approx(80.0) and not d.passed, d.reason
    with pytest.raises(ValueError, match="cumulative sizes"):
        decide(129.5, {"e2e_ms": near}, np.ones(n, bool), [SloBound("e2e_ms", bound, 0.95)], 5, 5, ends=[800] * 5)


def test_a_look_that_ran_slower_as_a_whole_is_not_clustered_violations():
    """Regression (the CPU engine, data/capacity-evidence/2026-12-04-local-cpu: a p90 e2e step,
    0 of 800 values over the bound, the largest 84 % of it, came out UNDECIDED with D = 69.7):
    five looks of 160, the second ~16 % slower as a whole, so the 50 largest values all sit in
    it. Pooled, the clustering floor reads that as clustered violations (D near n / 10); told
    where the looks end, it compares each batch with its own look and the step passes. Within
    a look, the same 50 values in one run still floor D: that is how violations would cluster."""
    rng = np.random.default_rng(5)
    looks = look_sizes(800, 5)
    x = rng.uniform(2300.0, 2600.0, 800)
    x[160:320] *= 1.16  # look 2 ran slower: its values are the largest, all below 0.65 x the bound
    slo = SloBound("e2e_ms", 5000.0, 0.90)
    pooled = variance_inflation(x, x > 5000, 5000.0)
    by_look = variance_inflation(x, x > 5000, 5000.0, ends=looks)
    assert pooled > 25 and by_look < 5, (pooled, by_look)  # by look: chance, at its upper bound (9 dof)
    d = decide(2.4, {"e2e_ms": x}, np.ones(800, bool), [slo], 5, 5, ends=looks)
    assert d.passed and d.counts[0].upper <= 0.10, d.reason
    assert not decide(2.4, {"e2e_ms": x}, np.ones(800, bool), [slo], 5, 5).passed  # the pooled floor
    run = x.copy()
    run[400:450] = rng.uniform(3500.0, 4500.0, 50)  # one burst inside look 3, near the bound
    assert variance_inflation(run, run > 5000, 5000.0, ends=looks) >= 10
    assert sequential_many(x[None, :], slo, looks).decision[0] == PASS  # the vectorized rule agrees


def test_a_step_records_how_far_apart_its_looks_ran_and_the_report_says_when_beyond_calibration():
    """capacity_steps.look_spread: the log-sd of the looks' median e2e (None under two looks);
    it goes into the step's row, and report.capacity.spread_note names certification steps
    whose spread exceeds LOOK_SPREAD_CALIBRATED (3 %) and says nothing otherwise."""
    from inferlab.analysis.capacity_steps import Segment, look_spread, step_record
    from inferlab.analysis.certify import step_rows
    from inferlab.report.capacity import spread_note

    def seg(median_ms: float) -> Segment:
        return Segment("c", pd.DataFrame({"e2e_ms": np.full(160, median_ms), "ok": True}), None, "", "VALID")

    assert look_spread([seg(1000.0)]) is None and look_spread([seg(1000.0)] * 3) == 0.0
    apart = [seg(1000.0), seg(1100.0), seg(1000.0), seg(900.0)]
    assert look_spread(apart) == pytest.approx(np.std(np.log([1000, 1100, 1000, 900]), ddof=1))
    assert look_spread([seg(1000.0), Segment("e", pd.DataFrame({"e2e_ms": [], "ok": []}), None, "", "VALID"),
                        seg(1000.0)]) == 0.0  # a look with no window is left out
    slo = [SloBound("e2e_ms", 5000.0, 0.9)]
    d = decide(3.0, {"e2e_ms": np.full(640, 1000.0)}, np.ones(640, bool), slo, 4, 5)
    rows = step_rows([step_record(StepPlan(3.0, CERTIFY, (160, 320, 480, 640, 800)), d, apart)])
    assert rows[0]["look spread"] == pytest.approx(look_spread(apart), abs=1e-4)
    assert "1 of 1 certification steps" in spread_note({"steps": rows}) and "8.2%" in spread_note({"steps": rows})
    assert spread_note({"steps": [{**rows[0], "look spread": 0.02}]}) is None
    assert spread_note({"steps": [{**rows[0], "phase": "explore"}]}) is None  # exploration is not judged for it


def test_the_front_pages_name_invalid_steps_under_the_claim_and_only_those():
    """report.capacity: a claim is stated from INVALID looks, never quietly; only certification
    steps at or below the claim count (one above it, or exploration, is not what it rests on), a
    search that claims nothing gets no note, and one INVALID step reads in the singular."""
    from inferlab.report.capacity import front_line, headline, invalid_under_claim

    def step(rate, phase="certify", validity="VALID", decision="pass"):
        return {"rate": rate, "phase": phase, "validity": validity, "decision": decision,
                "validity_reasons": "send_lag_p99: send lag p99 12.0 ms > 10 ms" if validity == "INVALID" else ""}

    def result(rate, steps):
        return {"judge": "certified", "complete": True, "certified_rate": rate, "steps": steps,
                "claim": f"at least {rate} req/s" if rate else "no rate certified", "interval_low": 0.0,
                "interval_high": float("inf"), "boundary": float("nan"), "config": {"alpha": 0.05}}

    one = result(3.0, [step(1.0, "explore", "INVALID"), step(2.0), step(3.0, validity="INVALID"),
                       step(4.0, validity="INVALID", decision="fail")])
    assert [s["rate"] for s in invalid_under_claim(one)] == [3.0]
    assert front_line(one).endswith("1 of the 2 certification steps it rests on holds an INVALID look.")
    assert "**1 of the 2 certification steps the claim rests on holds an INVALID look** (3 req/s; checks: " \
           "send_lag_p99)" in headline(one)
    clean = result(3.0, [step(2.0), step(3.0), step(4.0, validity="INVALID", decision="fail")])
    none = result(None, [step(2.0, validity="INVALID", decision="undecided")])
    for r in (clean, none):
        assert invalid_under_claim(r) == [] and "INVALID look" not in front_line(r) + headline(r)


def test_look_to_look_speed_changes_at_the_boundary_are_a_known_limit():
    """The rule's error rates assume an engine as fast in one look as in the next. With each
    look's speed drawn lognormal (log-sd ``sigma``), steps near the allowed share pass more
    often than 5 %: a step's share depends on the speeds its five looks happened to draw, and
    five looks cannot bound the long-run mixture well. Measured (1,000 steps each, p95, cap
    4,000, 5 looks of 800 on fresh servers), old pooled floor and look-aware floor alike:
    sigma 0: 2.6 % (share 5.14 %); 3 %: 4.9 % (5.22 %); 5 %: 9.9 % (5.30 %); 10 %: 30 % at 4.3
    req/s (5.33 %, not run here). docs/capacity.md ("Known limit: look-to-look speed changes") says so, and
    the report shows each certification step's look-to-look spread."""
    looks = look_sizes(CAP, 5)
    measured = {}
    for sigma, rate in ((0.0, 4.62), (0.03, 4.6), (0.05, 4.55)):
        tt = looks_at_speeds(rate, 1000, CAP // 5, 5, WARM, sigma, seed=5, **SIM)["ttft"] * 1000.0
        out = sequential_many(tt, SLO[0], looks)
        measured[sigma] = (float(np.mean(tt > 500)), float(np.mean(out.decision == PASS)))
    print(measured)
    assert all(share >= 0.05 for share, _ in measured.values()), measured
    assert measured[0.0][1] <= 0.05 and measured[0.03][1] <= 0.06, measured  # steady looks: as documented
    assert 0.06 <= measured[0.05][1] <= 0.15, measured  # 5 % look-to-look: about twice the nominal rate


# ---------------------------------------------------------------- backlog growth


def _backlog_verdicts(rate: float, reps: int, n: int = 600, seed: int = 3) -> list:
    arr = np.arange(n + WARM)[None, :] / np.full((reps, 1), rate)
    end = open_loop_batch(arr, seed=seed, **SIM)["end"]
    sent = arr[:, WARM:]
    horizon = sent[:, -1:]  # the step ends at its last send: later completions are not seen
    done = np.where(end[:, WARM:] <= horizon, end[:, WARM:], np.nan)
    return [backlog_growth(s, d) for s, d in zip(sent, done)]


def test_backlog_growth_fails_an_overloaded_step_and_not_a_busy_one():
    busy = _backlog_verdicts(4.8, 100)  # 81 % of capacity: the queue comes and goes
    over = _backlog_verdicts(6.5, 100)  # 110 %: the queue grows ~0.6 requests/s
    false_alarm = np.mean([b.grows for b in busy])
    caught = np.mean([b.grows for b in over])
    assert false_alarm <= 0.05, f"busy but stable steps failed by backlog: {false_alarm:.2f}"
    assert caught >= 0.95, f"overloaded steps caught: {caught:.2f}"


# An H200-like engine (data/gpu-evidence/2026-12-04-h200-session7): no slot limit, 4 % slowdown per
# running request, 0.1 s of work a lone request; its decode speed swings to 0.6 for ~1 s out of
# every ~3 s, so the requests in flight swing by ~100 within a look. Long-run capacity ~200 req/s
# (mean e2e over 4 x 300 s: steady at 170, drifting up at 200, growing at 215).
SWING = dict(slots=4096, alpha=0.04, sigma=0.6, work_mean=0.1, prefill_share=0.1)
SWING_CAPACITY = 200.0


def _look_rises(rate: float, reps: int, looks: int, seed: int, n: int = 800, warm: int = 1000) -> np.ndarray:
    """(reps, looks): did each look's window rise? Each look is its own schedule (a k6 cell:
    ``warm`` requests cut as the warm-up, ``n`` judged, ~4 s at 200 req/s as on the H200) on
    an engine drained between looks, with its own decode-speed swings."""
    rng = np.random.default_rng(seed)
    rises = np.zeros((reps, looks), bool)
    for k in range(looks):
        arr = np.arange(warm + n)[None, :] / np.full((reps, 1), rate)
        path = telegraph_path(reps, (warm + n) / rate + 60, 0.6, 2.0, 1.0, rng)
        end = open_loop_batch(arr, seed=seed * 10 + k, speed_path=path, **SWING)["end"]
        for i in range(reps):
            t0, horizon = arr[i, warm], arr[i, -1]  # the step sees completions up to its last send
            seen = np.where(end[i] <= horizon, end[i], np.nan) - t0
            rises[i, k] = backlog_growth(arr[i, warm:] - t0, seen[warm:], earlier_done_s=seen[:warm]).grows
    return rises


def _fails_on_backlog(rises: np.ndarray) -> np.ndarray:
    """Per step: does step_backlog say 'grows' at some look? (The counts are left out: a step
    whose counts pass stops at its first look that does not rise.)"""
    return np.array([any(step_backlog([_rose(x) for x in row[:k + 1]]).verdict == GROWS for k in range(len(row)))
                     for row in rises])


def _rose(x: bool) -> Backlog:
    """A look's window test that rose (or not)."""
    return Backlog(0.0, 1.0 if x else -1.0, 0.0 if x else 1.0, bool(x))


def test_step_backlog_grows_only_on_three_rising_looks_in_a_row():
    up, flat = _rose(True), _rose(False)
    assert step_backlog([up]).verdict == RISES and step_backlog([up, up]).verdict == RISES
    assert step_backlog([up, up, up]).verdict == GROWS and step_backlog([flat, up, up, up]).verdict == GROWS
    assert step_backlog([up, up, flat]).verdict == KEEPS_UP and step_backlog([up, flat, up]).verdict == RISES
    assert step_backlog([None, up]).rising == 1 and step_backlog([]).verdict == KEEPS_UP
    assert "the last 3 looks all rose" in step_backlog([up] * 3).note


def test_judge_a_rising_look_holds_a_pass_back_until_the_cap_and_dropped_sends_fail_at_once():
    """capacity_steps.judge on made-up looks whose counts pass (0 violations in 400 a look):
    one rising look holds a certification pass back (continue), three running fail, a rise at
    the cap leaves it to the counts, a look with no window is skipped; an exploration step is
    not over on a rise, but dropped sends fail either phase."""
    from inferlab.analysis.capacity_steps import Segment, judge

    slo = (SloBound("e2e_ms", 5000.0, 0.9),)
    cfg = SearchConfig(slo, start_rate=2.0)
    win = pd.DataFrame({"e2e_ms": np.full(400, 100.0), "ok": True})

    def look(rose: bool | None, dropped: int = 0) -> Segment:
        return Segment("c", win, None if rose is None else _rose(rose), "", "VALID", [], dropped)

    cert, explore = StepPlan(3.0, CERTIFY, (400, 800, 1200, 1600, 2000)), StepPlan(3.0, EXPLORE, (400,))
    decision = lambda plan, looks: judge(plan, [look(*x) if isinstance(x, tuple) else look(x) for x in looks],  # noqa: E731
                                         slo, cfg).decision
    assert decision(cert, [False]) == PASS
    assert decision(cert, [True]) == CONTINUE and decision(cert, [True, True]) == CONTINUE
    assert decision(cert, [True, False]) == PASS and decision(cert, [True, True, True]) == FAIL
    assert decision(cert, [False, False, False, True, True]) == PASS  # at the cap: the counts decide
    assert decision(cert, [False, True, True, False, True]) == PASS
    assert decision(cert, [True, None]) == CONTINUE  # a look with no window neither rose nor kept up
    assert decision(cert, [(False, 3)]) == FAIL and decision(explore, [(False, 2)]) == FAIL
    assert decision(explore, [True]) == PASS  # exploration: the counts' point verdict, not over on one rise


def test_backlog_swings_fail_few_steps_and_a_growing_queue_most():
    """On the swinging engine, 4 s looks (800 requests, as the H200 searches ran): a step at 80 %
    of capacity rises in its first look in 34.5 % of 200 steps (one window cannot tell a swing
    from a queue: the rule that failed a step on one rising window failed those), three rising
    looks in a row came in 4.5 %; at 125 % of capacity 100 of 100 steps grew by their third
    look. Not asserted here (slower), measured with the same code: at 110 % only ~35 % grow by
    look 3 with 4 s looks (per look 70 %); with 20 s looks (4,000 requests, the default p99
    cap's) a look at 80 % rises in 12 %, three in a row in 0 of 100, and 62 % grow by look 3 at
    110 % (per look 85 %): a small overload is the latency bounds' to catch, or longer looks'."""
    busy = _look_rises(0.8 * SWING_CAPACITY, 200, 3, seed=1)
    over = _look_rises(1.25 * SWING_CAPACITY, 100, 3, seed=2)
    one_window = busy[:, 0].mean()
    false_fail = _fails_on_backlog(busy).mean()
    caught = _fails_on_backlog(over).mean()
    figures = f"one window rises {one_window:.3f}, steps failed at 80 % {false_fail:.3f}, caught at 125 % {caught:.3f}"
    print(figures)
    assert one_window >= 0.25, figures  # the swings are there: the old one-window rule fails these steps
    assert false_fail <= 0.09, figures
    assert caught >= 0.9, figures


def test_backlog_of_a_short_window_counts_what_was_in_flight_when_it_opened():
    """A server that keeps up (0.4 s an answer at 6/s, ~2.4 in flight): a 20-request window cut
    after a warm-up starts with the warm-up's requests in flight. Counted, the backlog is flat;
    left out, the window's own fill (0 -> 2.4) would read as growth."""
    rng = np.random.default_rng(5)
    sent_all = np.arange(26) / 6.0
    done_all = sent_all + 0.4 + rng.uniform(0, 0.05, 26)
    t0 = sent_all[6]
    sent, done = sent_all[6:] - t0, done_all[6:] - t0
    early = done_all[:6] - t0
    assert not backlog_growth(sent, done, earlier_done_s=early).grows
    fill_only = backlog_growth(sent, done)
    assert fill_only.growth > backlog_growth(sent, done, earlier_done_s=early).growth


def test_backlog_never_hinges_on_one_request():
    sent = np.arange(300) / 3.0
    done = sent + 0.2
    done[-1] = np.nan  # the last request still in flight when the window closes
    assert not backlog_growth(sent, done).grows
    assert not backlog_growth(sent, np.where(np.arange(300) == 150, np.nan, done)).grows


# ---------------------------------------------------------------- the search


def run_searches(noise: float, reps: int, seed: int, cfg: SearchConfig) -> tuple[np.ndarray, list[list[StepRecord]]]:
    """``reps`` searches, each against its own engine (speed lognormal(0, noise)); every round
    simulates the next step of all unfinished searches at once and decides them at once
    (:func:`sequential_many`)."""
    rng = np.random.default_rng(seed)
    speeds = rng.lognormal(0.0, noise, reps)
    steps: list[list[StepRecord]] = [[] for _ in range(reps)]
    plans = [next_step(s, cfg) for s in steps]
    rnd = 0
    while any(plans):
        for phase in (EXPLORE, CERTIFY):
            idx = [i for i, p in enumerate(plans) if p is not None and p.phase == phase]
            if not idx:
                continue
            n = plans[idx[0]].requests
            tt = ttft_ms([plans[i].rate for i in idx], n, speeds[idx], seed=seed * 1000 + rnd)
            rnd += 1
            if phase == EXPLORE:  # one look at the end; counts only
                t = (~(tt <= 500)).sum(axis=1)
                for j, i in enumerate(idx):
                    steps[i].append(StepRecord(plans[i].rate, EXPLORE, {"ttft_ms": n}, {"ttft_ms": int(t[j])},
                                               {"ttft_ms": 1.0}))
            else:
                out = sequential_many(tt, SLO[0], list(plans[idx[0]].looks), cfg.alpha)
                for j, i in enumerate(idx):
                    steps[i].append(record(as_decision(plans[i].rate, out, j, cfg.n_looks), CERTIFY))
        plans = [next_step(s, cfg) for s in steps]
    return speeds, steps


@pytest.mark.slow
@pytest.mark.parametrize("noise", [0.03, 0.07])
def test_search_interval_covers_the_true_boundary(noise):
    """The nominal 95 % boundary interval contains the true boundary of each search's engine in
    93-97 % of 2,000 searches, median relative width <= 20 %; the certified rate exceeds the true
    boundary in <= 5 % of searches. Measured: 94.3 % / 93.6 % coverage, width 8.2 % / 8.4 %,
    certified > truth 0.1 % / 0.1 % (3 % / 7 % noise); before (cap 1,500, D at 90 %, 0.8 in the
    fit): 94.1 % / 94.4 %, width ~14-15 %."""
    reps = 2000
    cfg = SearchConfig(SLO, start_rate=2.0)
    speeds, steps = run_searches(noise, reps, seed=int(noise * 100), cfg=cfg)
    truth = true_boundary(speeds)
    iv = [boundary_interval(s, cfg) for s in steps]
    low, high = np.array([v.low for v in iv]), np.array([v.high for v in iv])
    covered = float(np.mean((low <= truth) & (truth <= high)))
    width = float(np.median((high - low) / truth))
    certified = np.array([certified_rate(s) or 0.0 for s in steps])
    over_claim = float(np.mean(certified > truth))
    band = (0.93, 0.97)
    figures = (f"noise {noise:.0%}, {reps} searches: coverage {covered:.3f}, median width {width:.3f}, "
               f"unbounded above {np.mean(~np.isfinite(high)):.3f}, certified > truth {over_claim:.3f}, "
               f"nothing certified {np.mean(certified == 0):.3f}, median certified/truth "
               f"{np.median(certified / truth):.3f}")
    print(figures)
    assert band[0] <= covered <= band[1], figures
    assert width <= 0.20, figures
    assert over_claim <= 0.05, figures


def test_the_fit_keeps_a_cert_step_whose_rate_was_rounded_for_k6():
    """A runner holds each planned rate rounded to 0.01 req/s (capacity_steps.rate_of); the fit
    must keep every cert_grid step and leave out only the claim_grid ones. Session 10's H200
    search (guess 622.214, 0.86 x guess = 535.104 held as 535.1) lost its lowest cert step to a
    cut at exactly guess * 0.86: its interval read [0, inf] instead of [374, 629]."""
    from inferlab.analysis.capacity_steps import rate_of

    cfg = SearchConfig(SLO, start_rate=2.0)
    _, steps = run_searches(0.03, 60, seed=11, cfg=cfg)
    rounded_below, moved = 0, []
    for s in steps:
        guess = boundary_guess(s, cfg)
        held = [dataclasses.replace(x, rate=rate_of(x.rate)) if x.phase == CERTIFY else x for x in s]
        rounded_below += any(x.phase == CERTIFY and guess * 0.8 < x.rate < guess * min(cfg.cert_grid) for x in held)
        a, b = boundary_interval(s, cfg), boundary_interval(held, cfg)
        if np.isfinite(a.estimate):
            moved.append(abs(b.estimate / a.estimate - 1))
    assert rounded_below >= 10  # the case arises: a cert step held below its planned rate
    assert max(moved) < 0.005  # and the fit is the one of the planned steps, to rounding


def test_a_bound_never_violated_does_not_widen_the_interval_of_the_one_that_crosses():
    """Two bounds: TTFT's violating share rises through its allowed 5 % among the certification
    steps, TPOT has no violation at any of them (its fit cannot bound anything). The boundary is
    TTFT's crossing and its interval TTFT's own; TPOT's unbounded fit (low 0) used to set the low."""
    slo = (SloBound("ttft_ms", 500.0, 0.95), SloBound("tpot_ms", 50.0, 0.95))
    cfg = SearchConfig(slo, start_rate=2.0, claim_grid=())
    explore = [StepRecord(r, EXPLORE, {"ttft_ms": 300, "tpot_ms": 300}, {"ttft_ms": t, "tpot_ms": 0},
                          {"ttft_ms": 1.0, "tpot_ms": 1.0}) for r, t in ((4.0, 0), (4.2, 100))]
    guess = boundary_guess(explore, cfg)
    shares = (0.0, 0.01, 0.02, 0.04, 0.07, 0.12, 0.2, 0.3)
    cert = [StepRecord(guess * m, CERTIFY, {"ttft_ms": 800, "tpot_ms": 800},
                       {"ttft_ms": round(800 * p), "tpot_ms": 0}, {"ttft_ms": 1.0, "tpot_ms": 1.0})
            for m, p in zip(sorted(cfg.cert_grid), shares)]
    iv = boundary_interval(explore + cert, cfg)
    est, low, high = iv.per_metric["ttft_ms"]
    assert iv.binding == "ttft_ms" and (iv.estimate, iv.low, iv.high) == (est, low, high)
    assert 0 < low < est < high < np.inf and iv.per_metric["tpot_ms"][1] == 0.0
    # every step well inside the SLO, a few violations at the top: the fit would extrapolate a
    # crossing far above the rates tested; with the band open there, no estimate is given
    # (the shape of session 9's search A: four steps, 2 violations at the third, D ~15), so the
    # band stays open above them
    few = [StepRecord(x.rate, CERTIFY, x.n, {"ttft_ms": k, "tpot_ms": 0}, {"ttft_ms": 15.0, "tpot_ms": 1.0})
           for x, k in zip(cert[:4], (0, 0, 2, 0))]
    iv = boundary_interval(explore + few, cfg)
    assert np.isnan(iv.estimate) and iv.high == np.inf
    assert iv.per_metric["ttft_ms"][0] != iv.per_metric["ttft_ms"][0]  # NaN where the fit alone would say ~2x


# ---------------------------------------------------------------- planning and the summary


def test_the_plan_resumes_from_the_steps_so_far_and_the_summary_names_its_method():
    cfg = SearchConfig(SLO, start_rate=2.0, explore_requests=150)
    speeds, searches = run_searches(0.0, 1, seed=5, cfg=cfg)
    steps = searches[0]
    # resumable: planning from any prefix of the steps gives the step that was run next
    for k in range(len(steps)):
        plan = next_step(steps[:k], cfg)
        assert plan is not None and abs(plan.rate - steps[k].rate) < 1e-9 and plan.phase == steps[k].phase
        assert plan.hold_s(10.0) == pytest.approx(10.0 + plan.requests / plan.rate)
    assert next_step(steps, cfg) is None
    assert [s.phase for s in steps].index(CERTIFY) == sum(s.phase == EXPLORE for s in steps)
    out = summary(steps, cfg)
    assert out["claim"].startswith("at least") and "95% confidence" in out["claim"]
    assert out["interval_low"] <= out["boundary"] <= out["interval_high"]
    assert "fixed-sequence" in out["method"] and "bracket" not in out["method"]
    rows = out["steps"]
    assert len(rows) == len(steps) and {"rate", "n ttft_ms", "t ttft_ms", "decision", "backlog"} <= set(rows[-1])
    assert rows[0]["reason"].startswith("exploration")
