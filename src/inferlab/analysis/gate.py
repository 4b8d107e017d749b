"""The regression gate: is the candidate non-inferior to the baseline within a margin?

``inferlab gate`` (cli/gate.py) reads a comparison's two sides (baseline = the comparison's
baseline, candidate = its tuned side) and gates, in every cell both sides ran:

- the **primary metric** (the comparison's: throughput unless it names another; a capacity
  comparison's max sustainable rate), from analysis.compare's per-repeat table;
- the **token-level SLO percentiles** where the runs measured them: TTFT and TPOT at the SLO's
  percentiles (p99 by default) from the server's spans, e2e at its percentile (p95) from k6's
  durations (analysis.token_slo), one value per repeat over the steady-state window's successful
  requests (analysis.window), ``-r<n>`` cells of one run folded by geometric mean as compare
  folds them. The percentiles are the candidate's SLO's, applied to both sides. A metric no
  repeat measured (no spans: url targets, k8s without the tracing component, traces off) is
  listed as not gated; one measured but without a value in some repeat (too few window requests
  for the percentile) is inconclusive, never skipped.

Each gated metric gets the one-sided test of analysis.equivalence in its own worse direction
(:func:`analysis.equivalence.lower_is_better`) and one of three outcomes:
``non-inferior`` (the worse end of the ``1 - 2 alpha`` interval is within the margin),
``regression`` (the better end is past it, Holm-adjusted across the gated metrics), or
``inconclusive`` (with how many more repeats a side would decide).

Exit status (:data:`EXIT`): 0 when *every* gated metric is non-inferior and the comparison is
complete; 1 when any metric regressed beyond the margin; else 3. Multiplicity, chosen:

- **pass**: intersection-union. "Non-inferior on all k metrics" is rejected-null only when each
  of the k one-sided tests rejects at alpha; the chance of passing a candidate that is truly
  worse by the margin on any one metric is at most alpha, with no correction (Berger 1982).
- **fail**: a union claim ("at least one metric regressed"), so its k p-values are Holm-adjusted:
  the chance of failing a candidate that is within the margin on every metric is at most alpha.

Further rules: a candidate repeat that served no successful request is a regression on
throughput/goodput (as compare's verdict says "worse"); on a latency metric (which describes
successful requests only) a candidate that failed a larger share of requests than the baseline
is at best inconclusive; fewer than 3 repeats a side is inconclusive (a 2+2 gate can only say
so); a comparison that is not ``complete`` cannot pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..runs.reader import Run
from . import stats
from .compare import MIN_VERDICT_REPEATS, PRIMARY, base_cell, compared_cells, paired_cells, repeat_table
from .equivalence import (LogRatioTest, band, log_ratio_test, lower_is_better, more_repeats, pct,
                          MAX_REPEATS)
from .requests import join_run
from .summary import measured
from .token_slo import LABELS, e2e_bound_ms, request_timings, slo_bounds
from .window import QUANTILES, min_requests, window_requests

EXIT = {"non-inferior": 0, "regression": 1, "inconclusive": 3}  # 2: usage and input errors (the CLI's)
FAILURE_FREE = ("throughput", "goodput", "max_sustainable_rate")  # count successful requests: failures lower them


def token_metric_name(metric: str, q: float) -> str:
    """``ttft_ms`` at 0.99 -> ``ttft_p99`` (analysis.equivalence.TOKEN_METRIC_RE)."""
    return f"{metric.removesuffix('_ms')}_p{q * 100:g}"


def token_repeats(runs: Sequence[Run], side: str, slo) -> pd.DataFrame:
    """Long table, one row per (side, run, cell, token metric): ``value`` at the SLO's percentile
    over the window's successful requests (NaN below analysis.window.min_requests), ``n`` requests
    with a value, and ``measured`` (any measured request of the cell has the metric). Cells as
    compare.repeat_table takes them; ``-r<n>`` cells of a run folded by geometric mean."""
    bounds = slo_bounds(slo)
    rows = []
    for run in runs:
        if run.manifest.kind == "capacity":
            continue
        req = measured(run)
        if req.empty:
            continue
        joined = join_run(run)  # spans first, else the stream clock
        for cell, _ in compared_cells(run, count_never_ran=False):
            g = joined[joined["cell_id"] == cell.cell_id]
            every = request_timings(g)  # the cell's measured requests: does the run have the metric at all?
            # the window's rows of the same table (request_timings is per row and keeps the index)
            timings = every.loc[window_requests(g, cell.executor, cell.vus).index] if len(g) else every
            for b in bounds:
                x = timings.loc[timings["ok"], b.metric].dropna().to_numpy(float)
                rows.append({"side": side, "run_id": run.run_id, "cell": base_cell(cell.cell_id),
                             "metric": token_metric_name(b.metric, b.q), "label": f"{LABELS[b.metric]} p{b.q * 100:g}",
                             "value": float(np.quantile(x, b.q)) if len(x) >= min_requests(b.q) else np.nan,
                             "n": len(x), "need": min_requests(b.q), "measured": bool(every[b.metric].notna().any())})
    cols = ["side", "run_id", "cell", "metric", "label", "value", "n", "need", "measured"]
    out = pd.DataFrame(rows, columns=cols)
    if out.empty:
        return out
    return (out.groupby(["side", "run_id", "cell", "metric", "label"], sort=False)
            .agg(value=("value", lambda v: stats.geometric_mean(v) if v.notna().all() else np.nan),
                 n=("n", "min"), need=("need", "first"), measured=("measured", "any")).reset_index())


@dataclass
class GateLine:
    """One gated (or listed, not gated) cell x metric."""

    cell: str
    metric: str
    label: str
    role: str  # primary | token SLO
    lower_is_better: bool
    outcome: str  # non-inferior | regression | inconclusive | not gated
    reason: str
    test: LogRatioTest | None = None
    q_regression: float = float("nan")
    family: int = 1  # metrics Holm's regression adjustment ran over (settle)
    extra: int | None = None  # inconclusive: repeats to add a side (why(); None: no count decides it)

    def why(self) -> str:
        """The reason; for an inconclusive metric computed on first use (the power search costs)."""
        if not self.reason and self.test is not None:
            self.reason, self.extra = _inconclusive_reason(self.test, self.lower_is_better, self.test.alpha,
                                                           self.family)
        return self.reason

    def text(self) -> str:
        """One line: outcome, cell and metric, direction, ratio with its interval against the margin, why."""
        head = f"{self.outcome.upper():<13} {self.cell} {self.label} ({self.role}, "
        head += "higher is worse)" if self.lower_is_better else "lower is worse)"
        t = self.test
        if t is None or not np.isfinite(t.ratio):
            return f"{head}: {self.why()}"
        limit = band(t.margin)[1] if self.lower_is_better else band(t.margin)[0]
        iv = (f" {(1 - 2 * t.alpha) * 100:g}% CI [{t.low:.3f}, {t.high:.3f}]" if np.isfinite(t.low) else "")
        return (f"{head}: {t.ratio:.3f}x{iv}, margin {'+' if self.lower_is_better else '-'}{pct(t.margin)} "
                f"(worse than {limit:.3f}x is a regression), {t.n_baseline}+{t.n_tuned} repeats: {self.why()}")


@dataclass
class GateResult:
    """The gate's lines, its exit status and the sentence that says why."""

    lines: list[GateLine]
    margin: float
    alpha: float
    status: str = "complete"
    header: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def gated(self) -> list[GateLine]:
        return [x for x in self.lines if x.outcome != "not gated"]

    @property
    def outcome(self) -> str:
        gated = self.gated
        if any(x.outcome == "regression" for x in gated):
            return "regression"
        if gated and all(x.outcome == "non-inferior" for x in gated) and self.status == "complete":
            return "non-inferior"
        return "inconclusive"

    @property
    def exit_code(self) -> int:
        return EXIT[self.outcome]

    def summary(self) -> str:
        gated, n = self.gated, len(self.gated)
        count = {o: sum(x.outcome == o for x in gated) for o in EXIT}
        if self.outcome == "regression":
            why = f"{count['regression']} of {n} gated metrics regressed beyond ±{pct(self.margin)}"
        elif self.outcome == "non-inferior":
            why = f"all {n} gated metrics are within ±{pct(self.margin)} of the baseline or better"
        elif not n:
            why = "no metric could be gated"
        elif self.status != "complete" and count["inconclusive"] == 0:
            why = f"the comparison is {self.status}, not complete: it cannot pass"
        else:
            why = f"{count['inconclusive']} of {n} gated metrics could not be shown within ±{pct(self.margin)}"
            open_ = [x for x in gated if x.outcome == "inconclusive"]
            for x in open_:
                x.why()
            if open_ and all(x.extra is not None and x.extra <= MAX_REPEATS for x in open_):
                why += (f"; {max(x.extra for x in open_)} more repeats a side would decide all of them at the "
                        "measured noise")
        return f"gate: {self.outcome} (exit {self.exit_code}): {why}"

    def report(self) -> list[str]:
        """What ``inferlab gate`` prints: the header, how it decides, one line per metric, the summary."""
        lo, hi = band(self.margin)
        k, tested = len(self.gated), sum(x.test is not None and np.isfinite(x.test.p_regression) for x in self.gated)
        how = (f"margin ±{pct(self.margin)} (ratio band [{lo:.3f}, {hi:.3f}]), alpha {self.alpha:g}: each metric's "
               f"one-sided Welch test on the per-repeat logs in its worse direction; pass needs all {k} gated metrics "
               f"non-inferior (intersection-union, no correction); a regression is Holm-adjusted over the {tested} "
               "with an interval")
        return [x for x in (self.header, how, *self.notes) if x] + [x.text() for x in self.lines] + [self.summary()]


def gate_sides(baseline: Sequence[Run], candidate: Sequence[Run], margin: float, alpha: float = 0.05,
               primary: str = PRIMARY, slo_e2e_ms: float | None = None, status: str = "complete",
               header: str = "", token_slo: bool = True) -> GateResult:
    """Gate ``candidate`` against ``baseline`` (module docstring). ``token_slo=False``: the primary
    metric only; the token-level percentiles are listed as not gated, saying so."""
    base_runs, cand_runs = list(baseline), list(candidate)
    spec = cand_runs[0].manifest.spec if cand_runs else {}
    slo = slo_e2e_ms or e2e_bound_ms(spec.get("slo"), 10000.0)
    reps = pd.concat([repeat_table(base_runs, "baseline", slo), repeat_table(cand_runs, "tuned", slo)],
                     ignore_index=True)
    if primary not in reps.columns and "max_sustainable_rate" in reps.columns:
        primary = "max_sustainable_rate"
    tokens = pd.concat([token_repeats(base_runs, "baseline", spec.get("slo") or {}),
                        token_repeats(cand_runs, "tuned", spec.get("slo") or {})], ignore_index=True)
    return gate_repeats(reps, tokens, margin, alpha, primary, status, header, token_slo)


def gate_repeats(reps: pd.DataFrame, tokens: pd.DataFrame, margin: float, alpha: float = 0.05,
                 primary: str = PRIMARY, status: str = "complete", header: str = "", token_slo: bool = True
                 ) -> GateResult:
    """The gate from compare's repeat table (``reps``: side, cell, the primary metric, requests,
    errors) and :func:`token_repeats`' long table."""
    lines: list[GateLine] = []
    for cell in paired_cells(reps):
        here = reps[reps["cell"] == cell]
        a, b = here[here["side"] == "baseline"], here[here["side"] == "tuned"]
        err_a = float(a["errors"].sum() / max(a["requests"].sum(), 1))
        err_b = float(b["errors"].sum() / max(b["requests"].sum(), 1))
        missing = int(a[primary].isna().sum() + b[primary].isna().sum()) if primary in reps.columns else 0
        invalid = here[here["validity"] == "INVALID"] if "validity" in here.columns else here.iloc[:0]
        if len(invalid):  # refused, not judged: docs/verdicts.md "Validity"; no metric of the cell is gated
            why = "; ".join(dict.fromkeys(invalid.get("validity_reasons", pd.Series(dtype=str)).astype(str)))
            lines.append(GateLine(cell, primary, primary, "primary", lower_is_better(primary), "inconclusive",
                                  f"INVALID data in {len(invalid)} repeat(s): {why or 'see the validity column'}"))
            continue
        if missing:  # never dropped silently: a repeat without a value is a repeat the gate cannot judge
            lines.append(GateLine(cell, primary, primary, "primary", lower_is_better(primary), "inconclusive",
                                  f"{missing} repeat(s) without a value (an empty steady-state window, or too few "
                                  "window requests for the quantile)"))
        elif primary in reps.columns:
            lines.append(gate_metric(cell, primary, primary, "primary", a[primary], b[primary], margin, alpha,
                                     err_a, err_b))
        else:
            lines.append(GateLine(cell, primary, primary, "primary", lower_is_better(primary), "inconclusive",
                                  f"the comparison has no {primary} values"))
        tk = tokens[tokens["cell"] == cell] if not tokens.empty else tokens
        for metric in ([] if tk.empty else dict.fromkeys(tk["metric"])):
            g = tk[tk["metric"] == metric]
            label = str(g["label"].iloc[0])
            if _same_as(metric, primary):
                continue
            if not token_slo:
                lines.append(GateLine(cell, metric, label, "token SLO percentile", True, "not gated",
                                      "left out by --primary-only (bisect: without --token-slo)"))
                continue
            if not g["measured"].any():
                src = "server spans or a stream clock" if not metric.startswith("e2e") else "k6 durations"
                lines.append(GateLine(cell, metric, label, "token SLO percentile", True, "not gated",
                                      f"not measured in these runs (it needs {src})"))
                continue
            va, vb = g.loc[g["side"] == "baseline", "value"], g.loc[g["side"] == "tuned", "value"]
            if va.isna().any() or vb.isna().any():
                short = g[g["value"].isna()]
                lines.append(GateLine(cell, metric, label, "token SLO percentile", True, "inconclusive",
                                      f"{len(short)} repeat(s) without a value (fewest window requests with one: "
                                      f"{int(g['n'].min())}; the percentile needs {int(g['need'].iloc[0])})"))
                continue
            lines.append(gate_metric(cell, metric, label, "token SLO percentile", va, vb, margin, alpha, err_a, err_b))
    settle(lines, alpha)
    return GateResult(lines, margin, alpha, status, header)


def _same_as(metric: str, primary: str) -> bool:
    """e2e at p50/p95/p99 is compare's latency_p50/p95/p99 (the same window, requests and
    quantile): not gated twice when it is the primary metric."""
    return metric.startswith("e2e_p") and primary == "latency_" + metric.removeprefix("e2e_") and primary in QUANTILES


def gate_metric(cell: str, metric: str, label: str, role: str, va, vb, margin: float, alpha: float,
                err_a: float = 0.0, err_b: float = 0.0) -> GateLine:
    """One metric's test (per-repeat values ``va`` baseline, ``vb`` candidate; ``err_*`` the sides'
    failed-request shares) and its provisional outcome: non-inferior or inconclusive, or a
    regression when a candidate repeat served nothing; :func:`settle` decides the regressions."""
    lib = lower_is_better(metric)
    va, vb = np.asarray(va, float), np.asarray(vb, float)
    t = log_ratio_test(va, vb, margin, alpha, lower_is_better=lib)
    line = GateLine(cell, metric, label, role, lib, "inconclusive", "", t)
    if metric in FAILURE_FREE and (vb[np.isfinite(vb)] <= 0).any() and not (va[np.isfinite(va)] <= 0).any():
        line.outcome, line.q_regression = "regression", 0.0
        line.reason = "a candidate repeat served no successful request"
        return line
    few = min(t.n_baseline, t.n_tuned) < MIN_VERDICT_REPEATS
    if np.isfinite(t.p_noninferior) and t.p_noninferior < alpha and not few:
        if lib and err_b > err_a:
            line.reason = (f"within the margin, but the candidate failed more requests ({err_b:.1%} vs {err_a:.1%}) "
                           "and this latency describes successful ones only")
        else:
            line.outcome = "non-inferior"
            line.reason = f"non-inferior (p = {t.p_noninferior:.2g})"
    return line


def settle(lines: list[GateLine], alpha: float) -> None:
    """Holm over the gated metrics' regression p-values (those with an interval): a metric whose
    adjusted q is below ``alpha`` (with >= 3 repeats a side) becomes a regression."""
    tested = [x for x in lines if x.test is not None and x.outcome != "regression"]
    q = stats.holm([x.test.p_regression for x in tested], alpha)
    k = max(int(np.isfinite(q).sum()), 1)
    for x, qx in zip(tested, q):
        x.q_regression = float(qx)
        t = x.test
        few = min(t.n_baseline, t.n_tuned) < MIN_VERDICT_REPEATS
        x.family = k
        if np.isfinite(qx) and qx < alpha and not few:
            x.outcome, x.reason = "regression", f"worse beyond the margin (Holm q = {qx:.2g} over {k})"


def _inconclusive_reason(t: LogRatioTest, lib: bool, alpha: float, k: int) -> tuple[str, int | None]:
    """Why the interval decides nothing, and how many more repeats a side would (None: no count)."""
    few = min(t.n_baseline, t.n_tuned) < MIN_VERDICT_REPEATS
    if t.note:
        return f"{t.note}; at least {MIN_VERDICT_REPEATS} repeats a side with varying values are needed", None
    # the deciding test: non-inferiority at alpha on the better side of the margin, regression at
    # Holm's strictest step (alpha / k) past it
    worse = np.log(t.ratio) if lib else -np.log(t.ratio)
    level = alpha if worse < np.log1p(t.margin) else alpha / k
    extra = more_repeats(t, "noninferiority", level, lower_is_better=lib)
    prefix = f"{min(t.n_baseline, t.n_tuned)} repeats on a side (a decision needs {MIN_VERDICT_REPEATS}); " * few
    if extra is None:
        return prefix + "the estimate sits on the margin: no repeat count decides it", None
    if extra > MAX_REPEATS - max(t.n_baseline, t.n_tuned):
        return (prefix + f"more than {MAX_REPEATS} repeats a side would be needed at the measured noise "
                f"(±{t.sd * 100:.1f}%)"), None
    return (prefix + f"{extra} more repeat{'s' if extra != 1 else ''} a side would decide at the measured noise "
            f"(±{t.sd * 100:.1f}% between repeats, assuming the measured ratio is the truth; 80% power)"), extra


def gate_comparison(comparison: str, margin: float, alpha: float = 0.05, primary: str | None = None,
                    token_slo: bool = True) -> GateResult:
    """Gate a recorded comparison (an id, unique prefix, or path: runs/records.py), baseline
    against tuned (the candidate)."""
    from ..runs.comparison import load_comparison
    from ..runs.reader import load_run

    c = load_comparison(comparison)
    base = [load_run(r) for r in c.run_ids("baseline")]
    cand = [load_run(r) for r in c.run_ids("tuned")]
    if not base or not cand:
        raise ValueError(f"comparison {c.comparison_id} has {len(base)} baseline and {len(cand)} candidate repeats "
                         "that ran: nothing to gate")
    order = " ".join("A" if r.side == "baseline" else "B" for r in c.repeats)
    header = (f"comparison {c.comparison_id}: baseline (A) vs candidate (B), {len(c.repeats)} repeats in the order "
              f"{order} ({c.order}), status {c.status}" + "".join(f"; {n}" for n in c.notes))
    res = gate_sides(base, cand, margin, alpha, primary=primary or c.primary, status=c.status, header=header,
                     token_slo=token_slo)
    if not res.lines:
        raise ValueError(f"comparison {c.comparison_id}: the two sides share no cell: nothing to gate")
    return res
