"""``inferlab tune SPEC``: search engine settings for the highest max sustainable rate.

An optuna study (TPE sampler, ask-and-tell) over the tune spec's space, persisted as SQLite in
the tune record (``data/tunes/<tune_id>/study.db``) so ``resume`` continues it. The seed trials
(e.g. the baseline and ``--max-num-seqs 1``) are enqueued first. Each trial puts the candidate's
engine arguments in place (local: the run starts a fresh engine with them; url: the user's
restart command; k8s: a patch of the Deployment, see ``restart.py``) and runs the capacity spec
as a run of its own in data/runs (``runner.run``); its run id goes on the trial.

Objective: the *certified lower bound* of that run's certified capacity search, requests/s
(analysis/certify.py: "at least X req/s at the SLO, 95 % confidence", fixed-sequence testing
over sequentially decided steps); a search that certified no rate scores 0. The trial keeps
the boundary interval beside it (``interval_low``/``interval_high``: where the SLO breaks for
that engine), for information: trials are ranked by what is certified, never by a point
estimate or a bracket. A candidate whose engine does not start (or whose run ends without a
capacity result) is a failed trial, recorded with the reason; the tune goes on. A point
measured before is not run again: its result is reused (``duplicate_of``).

Objective ``energy`` (``--objective energy``, sweep/tune_energy.py): each candidate runs the tune
spec's ``energy.spec`` instead, a sweep offered a fixed open-loop rate (``--rate``), and is ranked
by its J per good request (or per output token) from the run's GPU energy readings, lower
winning; the study minimises. A run without a reading or without a good request is a failed
trial. Refused before the first trial where no reading can exist (a CPU engine, no NVML). The
confirmation A/B then runs that fixed-rate spec with the energy metric as its primary metric.

Budget: ``max_trials`` (seeds and duplicates included) and ``max_minutes`` of trial time (summed
over sessions); no trial starts when the remaining time is below the mean trial duration so far.
Then the winner is confirmed against the baseline by the interleaved A/B (``run_comparison``,
local target): "winner confirmed" needs a primary-metric verdict "better" in some cell and "worse"
in none; otherwise the result is "nothing beats the default". A confirmed winner is written as a
kustomize component (``components.write_engine_component``), validated before it is kept.
"""

from __future__ import annotations

import statistics
from datetime import UTC, datetime
from pathlib import Path

import optuna
from rich.console import Console
from rich.markup import escape

from ..runs.layout import slug
from ..runs.tune_record import STUDY, Trial, TuneRecord, find_tune, load_tune, save_tune, tunes_dir
from ..specs import LoadSpec, SpecError, resolve_spec
from ..specs.tune import (BoolParam, Budget, CategoricalParam, IntParam, TuneSpec, baseline_point, changed_flags,
                          engine_args, value_error)
from . import restart
from .tune_energy import energy_load, energy_objective_text, energy_trial, energy_witness, pin_rate

console = Console(stderr=True)
OBJECTIVE = ("certified lower bound (requests/s) of a certified capacity search: at least this rate meets every SLO "
             "bound, 95 % confidence (fixed-sequence testing); 0 when none is certified; a candidate whose engine did "
             "not start is a failed trial")
INTERRUPTED = "interrupted by the user (Ctrl-C); `--resume` runs this candidate again"


def distributions(space: dict) -> dict[str, optuna.distributions.BaseDistribution]:
    """optuna distributions of a tune space: categorical -> categorical, int -> int (log or
    stepped), bool -> categorical [false, true]."""
    out: dict[str, optuna.distributions.BaseDistribution] = {}
    for name, p in space.items():
        if isinstance(p, CategoricalParam):
            out[name] = optuna.distributions.CategoricalDistribution(p.choices)
        elif isinstance(p, IntParam):
            out[name] = optuna.distributions.IntDistribution(p.low, p.high, log=p.log, step=p.step)
        elif isinstance(p, BoolParam):
            out[name] = optuna.distributions.CategoricalDistribution([False, True])
    return out


def capacity_spec(spec: TuneSpec) -> LoadSpec:
    cap = resolve_spec(spec.capacity, sets=spec.set)
    if cap.kind != "capacity":
        raise ValueError(f"tune spec {spec.name!r}: capacity spec {spec.capacity!r} is kind {cap.kind!r}; a tune "
                         "measures candidates by their max sustainable rate (kind: capacity)")
    return cap


def with_args(spec: LoadSpec, args: list[str]) -> LoadSpec:
    return spec.model_copy(update={"engine": spec.engine.model_copy(update={"args": list(args)})}, deep=True)


def _study(d: Path, tune_id: str, spec: TuneSpec, direction: str = "maximize") -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=spec.sampler_seed, n_startup_trials=len(spec.seed_trials) + 2)
    return optuna.create_study(study_name=tune_id, storage=f"sqlite:///{d / STUDY}", direction=direction,
                               sampler=sampler, load_if_exists=True)


def tune(spec: TuneSpec, target: str = "local", base_url: str | None = None, budget: Budget | None = None,
         resume: str | None = None, confirm: bool = True, write_component: bool = True,
         spec_dir: Path | None = None, accept_output_change: bool = False, objective: str | None = None,
         rate: float | None = None) -> str:
    """Run (or resume) a tune; returns its id. ``budget`` overrides the spec's. ``spec_dir``: the
    tune spec's folder (a relative ``restart_command_file`` is read from there).
    ``accept_output_change``: write the winner even when its answers differ (see the answer-check hook).
    ``objective``: ``capacity`` (the default) or ``energy`` with ``rate`` (module docstring); a
    resume takes the record's and refuses a different one."""
    budget = budget or spec.budget
    cap = capacity_spec(spec)
    if resume:
        d = find_tune(resume)
        rec = load_tune(d)
        if rec.spec != spec.model_dump(mode="json"):
            raise ValueError(f"tune {rec.tune_id}: the spec differs from the one it started with; "
                             "resume with that spec")
        given = (objective or rec.objective_kind, rate or (rec.energy or {}).get("rate"))
        if given != (rec.objective_kind, (rec.energy or {}).get("rate")):
            raise SpecError(f"tune {rec.tune_id} ranks by {rec.objective_kind}"
                             + (f" at {rec.energy['rate']:g} requests/s" if rec.energy else "")
                             + "; resume it without --objective/--rate, or with the same ones")
        target = rec.target
    else:
        if rate is not None and objective != "energy":
            raise SpecError("--rate is the fixed load of --objective energy; give --objective energy too")
        now = datetime.now(UTC)
        tune_id = f"{now:%Y%m%dT%H%M%SZ}-{target}-tune-{slug(spec.name)}"
        d = tunes_dir() / tune_id
        rec = TuneRecord(tune_id=tune_id, created_at=now, target=target, spec=spec.model_dump(mode="json"),
                         capacity_spec=cap.model_dump(mode="json"), objective=OBJECTIVE,
                         objective_kind="energy" if objective == "energy" else "capacity")
    if rec.objective_kind == "energy":  # before a new tune's folder exists: a refusal leaves nothing behind
        cap, info = energy_load(spec, rec.energy["rate"] if rec.energy else rate)
        why = energy_witness(target, cap)
        if why:
            raise RuntimeError(why)
    d.mkdir(parents=True, exist_ok=bool(resume))
    if rec.objective_kind == "energy":
        cap, rec.energy = pin_rate(cap, info, d)
        rec.objective = energy_objective_text(rec.energy)
    if resume and rec.baseline_args:  # k8s: the deployment may still run an interrupted trial's candidate
        base_args = rec.baseline_args
    else:
        base_args = restart.k8s_current_args() if target == "k8s" else cap.engine.args
    rec.baseline_args = list(base_args)
    rec.baseline_params = baseline_point(spec.space, base_args)
    outside = {k: err for k, v in rec.baseline_params.items() if (err := value_error(spec.space[k], v))}
    if outside:  # the baseline is enqueued as a seed trial: optuna refuses a value outside the space
        raise ValueError(f"tune spec {spec.name!r}: the baseline's engine arguments {base_args} imply values outside "
                         f"the search space: " + "; ".join(f"space.{k}: {e}" for k, e in outside.items())
                         + " (add them to the choices or widen the range)")
    study = _study(d, rec.tune_id, spec, rec.direction)
    if not resume:
        for s in spec.seed_trials:
            study.enqueue_trial({**rec.baseline_params, **s.params}, user_attrs={"seed": s.name})
    _requeue_interrupted(study, rec)
    save_tune(rec, d)
    command = restart.restart_command(spec.restart_command_file, spec_dir) if target == "url" else ""
    console.print(f"[bold]tune[/] {rec.tune_id} -> {d}\n  objective: {rec.objective}\n  budget: {budget.max_trials} "
                  f"trials, {budget.max_minutes:g} min; baseline args: {' '.join(base_args) or '(none)'}")
    try:
        stop = _search(study, rec, d, spec, cap, budget, target, base_url, base_args, command)
        console.print(f"search stopped: {stop}")
        rec.notes = [n for n in rec.notes if not n.startswith("search stopped")] + [f"search stopped: {stop}"]
        if stop == INTERRUPTED:
            rec.status, rec.reason = "partial", INTERRUPTED
            return rec.tune_id
        _set_best(rec)
        if confirm and rec.confirmation.outcome == "not run":
            _confirm(rec, d, spec, target, base_url)
        if write_component and rec.confirmation.outcome == "winner confirmed" and not rec.component \
                and _answers_allow(rec, accept_output_change):
            _write_component(rec, spec)
        rec.status, rec.reason = "complete", ""
    except KeyboardInterrupt:
        rec.status, rec.reason = "partial", "interrupted by the user (Ctrl-C); `--resume` goes on"
    except Exception as exc:  # noqa: BLE001 - recorded, then raised for the caller to report
        rec.status, rec.reason = "partial" if rec.trials else "failed", f"{type(exc).__name__}: {exc}"
        raise
    finally:
        if target == "k8s":
            why = restart.k8s_restore(list(base_args))
            if why:
                rec.notes.append(f"restoring the deployment's original arguments failed: {why}")
        rec.ended_at = datetime.now(UTC)
        save_tune(rec, d)
        console.print(f"[bold]{rec.status}[/] {rec.tune_id}" + (f": {rec.reason}" if rec.reason else ""))
    return rec.tune_id


def _requeue_interrupted(study: optuna.Study, rec: TuneRecord) -> None:
    """A trial cut by Ctrl-C (still RUNNING in the study): failed, and its candidate enqueued again."""
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        study.enqueue_trial(t.params, user_attrs=dict(t.user_attrs))
        r = rec.trial(t.number)
        if r is not None and r.state == "running":
            r.state, r.reason, r.ended_at = "failed", INTERRUPTED, r.ended_at or datetime.now(UTC)


def _used_minutes(rec: TuneRecord) -> tuple[float, float | None]:
    """(trial minutes spent, mean minutes of a trial that ran) over every session of the tune."""
    spans = [(t.ended_at - t.started_at).total_seconds() / 60 for t in rec.trials
             if t.started_at and t.ended_at and t.duplicate_of is None]
    return sum(spans), (statistics.fmean(spans) if spans else None)


def _search(study, rec: TuneRecord, d: Path, spec: TuneSpec, cap: LoadSpec, budget: Budget, target: str,
            base_url: str | None, base_args: list[str], command: str) -> str:
    """The trial loop; returns why it stopped."""
    dists = distributions(spec.space)
    while True:
        # an interrupted trial is run again (re-enqueued), so it does not count against the budget
        counted = [t for t in rec.trials if t.state != "running" and t.reason != INTERRUPTED]
        used, mean = _used_minutes(rec)
        if len(counted) >= budget.max_trials:
            return f"trial budget reached ({len(counted)} of {budget.max_trials})"
        if mean is not None and used + mean > budget.max_minutes:
            return (f"time budget: {used:.1f} of {budget.max_minutes:g} min used, a trial takes ~{mean:.1f} min")
        ot = study.ask(dists)
        point = {k: ot.params[k] for k in spec.space}
        args = engine_args(spec.space, base_args, point)
        t = Trial(number=ot.number, seed=str(ot.user_attrs.get("seed", "")), params=point, args=args,
                  changed=changed_flags(spec.space, point), started_at=datetime.now(UTC))
        rec.trials.append(t)
        label = f"trial {len(counted) + 1}/{budget.max_trials}" + (f" [seed {t.seed}]" if t.seed else "")
        flags = " ".join(t.changed) or "(vLLM defaults for every searched flag)"
        console.print(f"[bold]{label}[/] #{t.number}: {flags}")
        # reuse only a measured result: an interrupted or failed candidate is run again (--resume,
        # or a start failure that may not repeat)
        same = next((o for o in rec.trials if o is not t and o.state == "complete" and o.args == args), None)
        if same is not None:
            _reuse(t, same)
        else:
            save_tune(rec, d)
            _evaluate(t, rec, spec, cap, target, base_url, command)
        t.ended_at = datetime.now(UTC)
        if t.reason == INTERRUPTED:
            save_tune(rec, d)
            return INTERRUPTED
        ot.set_user_attr("run_id", t.run_id or "")
        ot.set_user_attr("reason", t.reason)
        if t.state == "complete":
            study.tell(ot, float(rec.score(t) or 0.0))  # a complete energy trial always has its figure
        else:
            study.tell(ot, state=optuna.trial.TrialState.FAIL)
        _set_best(rec)
        save_tune(rec, d)
        _print_result(t, rec)


def _reuse(t: Trial, same: Trial) -> None:
    t.duplicate_of = same.number
    t.state, t.run_id, t.msr = same.state, same.run_id, same.msr
    t.interval_low, t.interval_high, t.n_steps = same.interval_low, same.interval_high, same.n_steps
    t.value, t.energy = same.value, same.energy
    t.reason = f"same engine arguments as trial #{same.number}: its result reused, not run again"


def _evaluate(t: Trial, rec: TuneRecord, spec: TuneSpec, cap: LoadSpec, target: str, base_url: str | None,
              command: str) -> None:
    """Put the candidate in place, run ``cap`` (the capacity search, or the energy objective's
    fixed-rate sweep), read its result into ``t``."""
    from ..runs.reader import load_run
    from .runner import run

    why = ""
    if target == "url":
        why = restart.url_restart(command, t.args, t.number, base_url or "", cap.engine.startup_timeout_s,
                                  verify_tls=not cap.tls_skip_verify)
    elif target == "k8s":
        why = restart.k8s_apply(t.args)
    if why:
        t.state, t.reason = "failed", why
        return
    t.run_id = run(with_args(cap, t.args), target=target, base_url=base_url, label=f"{spec.name}-t{t.number}")
    r = load_run(t.run_id)
    m = r.manifest
    if m.cut_by_user():
        t.state, t.reason = "failed", INTERRUPTED
        return
    if rec.objective_kind == "energy":
        t.value, t.energy, why = energy_trial(r, rec.energy["metric"] if rec.energy else "")
        t.state, t.reason = ("complete", "") if t.value is not None else ("failed", why[:600])
        return
    from ..analysis.capacity import is_complete

    res = r.capacity
    if not is_complete(res):  # no record, or a search cut short (a partial record claims nothing)
        t.state = "failed"
        t.reason = f"run {m.status}: {m.reason or 'no capacity result'}"[:600]
        return
    t.state = "complete"
    t.msr, t.interval_low, t.interval_high, t.n_steps, t.reason = trial_result(res)


def trial_result(res: dict) -> tuple[float, float | None, float | None, int, str]:
    """A capacity record's (objective, interval low, interval high, steps, note) for a trial:
    the certified lower bound (0 when none) and the boundary interval; a legacy record (before
    issue 19) its highest passing rate and bracket, noted as not certified."""
    from ..analysis.capacity import is_certified

    n = res.get("n_steps", len(res.get("steps", [])))
    if is_certified(res):
        x = res.get("certified_rate")
        fin = lambda v: float(v) if v is not None and v == v and abs(v) != float("inf") else None  # noqa: E731
        return (float(x) if x is not None else 0.0, fin(res.get("interval_low")), fin(res.get("interval_high")), n,
                "" if x is not None else f"nothing certified: {res.get('claim', '')}")
    x = res.get("msr")
    return (float(x) if x is not None else 0.0, res.get("interval_low"), res.get("interval_high"), n,
            "legacy bracket search: not certified" + ("; no rate met the SLO" if x is None else ""))


def _set_best(rec: TuneRecord) -> None:
    done = [t for t in rec.trials if t.state == "complete"]
    sign = -1.0 if rec.direction == "minimize" else 1.0  # energy: the lowest wins
    # ties: the earlier trial (seeds come first, so the baseline wins a tie)
    rec.best = max(done, key=lambda t: (sign * (rec.score(t) or 0.0), -t.number)).number if done else None


def _print_result(t: Trial, rec: TuneRecord) -> None:
    if t.state == "complete" and rec.objective_kind == "energy":
        res = escape(rec.result_text(t))
    elif t.state == "complete" and not t.msr:
        res = escape(f"nothing certified ({t.reason})")
    elif t.state == "complete":
        iv = "" if t.interval_low is None or t.interval_high is None else \
            f", boundary interval [{t.interval_low:.3g}, {t.interval_high:.3g}]"
        res = escape(f"certified at least {t.msr:g}/s{iv}")
    else:
        res = f"[red]failed[/]: {escape(t.reason[:200])}"
    best = rec.trial(rec.best) if rec.best is not None else None
    used, _ = _used_minutes(rec)
    console.print(f"    -> {res}" + (f" (reused from #{t.duplicate_of})" if t.duplicate_of is not None else "")
                  + (f"; best so far #{best.number} {escape(rec.result_text(best))}" if best else "")
                  + f"; {used:.1f} min of trials")


def _confirm(rec: TuneRecord, d: Path, spec: TuneSpec, target: str, base_url: str | None) -> None:
    """The winner against the baseline by the interleaved A/B (module docstring: the rule)."""
    from ..analysis.compare import compare_sides
    from ..runs.comparison import load_comparison
    from ..runs.reader import load_run
    from .ab import run_comparison

    best = rec.trial(rec.best) if rec.best is not None else None
    c = rec.confirmation
    if best is None:
        c.outcome, c.reason = "not run", "no candidate completed its run with a result"
        return
    if best.args == rec.baseline_args or best.params == rec.baseline_params:
        c.outcome, c.reason = "nothing beats the default", "the search's best candidate is the baseline itself"
        return
    if target != "local":
        c.reason = ("the A/B restarts engines between repeats only on the local target: deploy the component into two "
                    "overlays and run `inferlab ab --overlay-baseline ... --overlay-tuned ...`")
        return
    primary = "throughput"
    if rec.objective_kind == "energy" and rec.energy:  # the fixed-rate load, judged on the energy metric
        ab_spec, primary = LoadSpec.model_validate(rec.energy["spec"]), rec.energy["metric"]
    elif spec.confirm.spec:
        ab_spec = resolve_spec(spec.confirm.spec, sets=spec.confirm.set)
    else:
        ab_spec = capacity_spec(spec)
    console.print(f"[bold]confirmation[/]: trial #{best.number} vs the baseline, {spec.confirm.pairs} "
                  f"interleaved pairs of {ab_spec.name!r}")
    cid = run_comparison(with_args(ab_spec, rec.baseline_args), with_args(ab_spec, best.args), target=target,
                         base_url=base_url, pairs=spec.confirm.pairs, label=f"{spec.name}-confirm", primary=primary)
    c.comparison_id = cid
    cmp = load_comparison(cid)
    res = compare_sides([load_run(r) for r in cmp.run_ids("baseline")], [load_run(r) for r in cmp.run_ids("tuned")],
                        primary=cmp.primary)
    prim = res[res["role"] == "primary"] if not res.empty else res
    c.rows = [{"cell": r.cell, "metric": r.metric, "ratio": float(r.ratio), "ci_low": float(r.ci_low),
               "ci_high": float(r.ci_high), "q_value": float(r.q_value), "verdict": str(r.verdict)}
              for r in prim.itertuples()]
    verdicts = [r["verdict"] for r in c.rows]
    if "better" in verdicts and not any(v.startswith("worse") for v in verdicts):
        c.outcome = "winner confirmed"
        c.reason = f"{verdicts.count('better')} of {len(verdicts)} cells better on {prim['metric'].iloc[0]}, none worse"
    else:
        c.outcome = "nothing beats the default"
        c.reason = f"the A/B found no cell better without one worse (verdicts: {', '.join(verdicts) or 'none'})"
    console.print(f"  {c.outcome}: {c.reason}")


def _write_component(rec: TuneRecord, spec: TuneSpec) -> None:
    from .components import write_engine_component

    best = rec.trial(rec.best)
    assert best is not None
    cmp = rec.confirmation
    figure = (rec.result_text(best) if rec.objective_kind == "energy" else
              f"certified at least {best.msr:g}/s (boundary interval [{best.interval_low}, {best.interval_high}])")
    why = [f"inferlab tune {rec.tune_id}: trial #{best.number}, {figure} on {rec.target}",
           f"confirmed by the interleaved A/B {cmp.comparison_id}: {cmp.reason}"]
    path = write_engine_component(spec.component.name, spec.component.overlay, spec.space, best.params, why)
    rec.component = str(path)
    console.print(f"component written: {path}")


# --- the answer-check hook (logic in sweep/answer_check.py) ------------------------------------
def _answers_allow(rec: TuneRecord, accept_output_change: bool) -> bool:
    """Whether the confirmation's answer check lets the winner be written as the component: not
    when its answers differ from the baseline's (or were not compared) without
    ``--accept-output-change``. Why goes into the tune's notes."""
    from .answer_check import component_gate

    ok, why = component_gate(rec.confirmation.comparison_id, accept_output_change)
    rec.notes = [n for n in rec.notes if not n.startswith("answer check:")] + [f"answer check: {why}"]
    console.print(f"answer check: {escape(why)}")
    return ok
