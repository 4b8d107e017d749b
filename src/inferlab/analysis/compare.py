"""Tuned vs baseline, with statistics a reader can defend.

Per matching cell (same payload and concurrency; ``-r<n>`` repeats pooled) and metric:
- ratio tuned/baseline of throughput (RPS) and of latency p50/p95/p99, each with a bootstrap
  95 % CI. Latency: resample requests within each run. Throughput: with repeats, resample the
  per-repeat RPS values; without, closed-loop RPS = VUs / mean latency (Little's law), so the
  CI comes from resampling requests;
- Mann-Whitney U (two-sided) on request latencies and the rank-biserial effect size
  (-1..1; negative = tuned faster);
- a verdict: ``better`` / ``worse`` only when the CI excludes 1 *and* p < alpha, else
  ``no significant difference``;
- goodput: requests/s that succeeded within the SLO's e2e bound.
- a tail percentile needs enough requests to exist at all: with n (1 - q) < 1 the "p99" of n
  requests is just their maximum and its bootstrap CI collapses, so below ``min_requests(q)``
  the ratio is shown without a CI and the verdict says there are too few requests.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu

from ..runs.load import Run
from .summary import measured, ok_rps

LOWER_IS_BETTER = {"latency_p50": True, "latency_p95": True, "latency_p99": True, "rps": False, "goodput_rps": False}
QUANTS = {"latency_p50": 0.5, "latency_p95": 0.95, "latency_p99": 0.99}


def min_requests(q: float) -> int:
    """Fewest requests per side for a q-quantile to be more than the sample maximum: n (1-q) >= 1
    (p50: 2, p95: 20, p99: 100)."""
    return max(2, int(np.ceil(1 / (1 - q) - 1e-9)))


def base_cell(cell_id: str) -> str:
    return re.sub(r"-r\d+$", "", cell_id)


def bootstrap_ratio(a: np.ndarray, b: np.ndarray, stat, n_boot: int, rng: np.random.Generator) -> tuple[float, float, float]:
    """stat(b)/stat(a) and its percentile 95 % CI, resampling a and b independently."""
    point = stat(b) / stat(a)
    ia = rng.integers(0, len(a), size=(n_boot, len(a)))
    ib = rng.integers(0, len(b), size=(n_boot, len(b)))
    boots = np.apply_along_axis(stat, 1, b[ib]) / np.apply_along_axis(stat, 1, a[ia])
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return float(point), float(lo), float(hi)


def rank_biserial(u: float, n1: int, n2: int) -> float:
    """Effect size from U (U of the tuned sample): 2U/(n1 n2) - 1; negative means tuned smaller."""
    return 2.0 * u / (n1 * n2) - 1.0


def verdict(ratio_lo: float, ratio_hi: float, p: float, lower_is_better: bool, alpha: float = 0.05) -> str:
    if p >= alpha or ratio_lo <= 1.0 <= ratio_hi:
        return "no significant difference"
    faster = ratio_hi < 1.0
    return "better" if faster == lower_is_better else "worse"


def _per_repeat_rps(df: pd.DataFrame) -> np.ndarray:
    """Observed RPS of each repeat of a cell (one value when the spec does not repeat)."""
    return np.asarray([ok_rps(g) for _, g in df.groupby("cell_id")])


def _rps_samples(df: pd.DataFrame) -> tuple[np.ndarray, str]:
    per = _per_repeat_rps(df)
    if len(per) >= 2:
        return per, "repeats"
    return df.loc[df["ok"], "duration_ms"].to_numpy(float), "requests (Little's law)"


def compare_cells(base: pd.DataFrame, tuned: pd.DataFrame, slo_e2e_ms: float,
                  n_boot: int, rng: np.random.Generator, alpha: float = 0.05) -> list[dict]:
    a = base.loc[base["ok"], "duration_ms"].to_numpy(float)
    b = tuned.loc[tuned["ok"], "duration_ms"].to_numpy(float)
    if len(a) < 2 or len(b) < 2:
        return []
    u, p = mannwhitneyu(b, a, alternative="two-sided")
    effect = rank_biserial(u, len(b), len(a))
    rows = []
    for metric, q in QUANTS.items():
        r, lo, hi = bootstrap_ratio(a, b, lambda x, q=q: np.quantile(x, q), n_boot, rng)
        need = min_requests(q)
        if min(len(a), len(b)) < need:
            lo = hi = np.nan
            call = f"too few requests ({min(len(a), len(b))} < {need} for p{round(q * 100)})"
        else:
            call = verdict(lo, hi, p, True, alpha)
        rows.append(dict(metric=metric, baseline=np.quantile(a, q), tuned=np.quantile(b, q), ratio=r, ci_low=lo,
                         ci_high=hi, p_value=p, effect_size=effect, resampled="requests", verdict=call))
    sa, how = _rps_samples(base)
    sb, _ = _rps_samples(tuned)
    base_rps, tuned_rps = _per_repeat_rps(base).mean(), _per_repeat_rps(tuned).mean()
    if how == "repeats":
        r, lo, hi = bootstrap_ratio(sa, sb, np.mean, n_boot, rng)
    else:  # RPS ~ VUs / mean latency: the ratio of RPS is the inverse ratio of mean latency
        r_lat, lo_lat, hi_lat = bootstrap_ratio(sa, sb, np.mean, n_boot, rng)
        r, lo, hi = 1 / r_lat, 1 / hi_lat, 1 / lo_lat
    rows.append(dict(metric="rps", baseline=base_rps, tuned=tuned_rps, ratio=r, ci_low=lo, ci_high=hi, p_value=p,
                     effect_size=-effect, resampled=how, verdict=verdict(lo, hi, p, False, alpha)))
    good_a = base_rps * float((a <= slo_e2e_ms).mean())
    good_b = tuned_rps * float((b <= slo_e2e_ms).mean())
    rows.append(dict(metric="goodput_rps", baseline=good_a, tuned=good_b, ratio=good_b / good_a if good_a else np.nan,
                     ci_low=np.nan, ci_high=np.nan, p_value=np.nan, effect_size=np.nan, resampled="",
                     verdict=f"SLO e2e <= {slo_e2e_ms:.0f} ms"))
    return rows


def compare_runs(baseline: Run, tuned: Run, slo_e2e_ms: float | None = None, n_boot: int = 2000,
                 seed: int = 0, alpha: float = 0.05) -> pd.DataFrame:
    """Long table: one row per matching cell x metric (ratio = tuned / baseline)."""
    rng = np.random.default_rng(seed)
    slo = slo_e2e_ms or float(tuned.manifest.spec.get("slo", {}).get("e2e_p95_ms", 10000))
    ra, rb = measured(baseline), measured(tuned)
    ra, rb = ra.assign(base_cell=ra["cell_id"].map(base_cell)), rb.assign(base_cell=rb["cell_id"].map(base_cell))
    rows = []
    for cell in [c for c in dict.fromkeys(ra["base_cell"]) if c in set(rb["base_cell"])]:
        a, b = ra[ra["base_cell"] == cell], rb[rb["base_cell"] == cell]
        for r in compare_cells(a, b, slo, n_boot, rng, alpha):
            rows.append({"cell": cell, "payload": a["payload"].iloc[0], "vus": a["vus"].iloc[0],
                         "n_baseline": len(a), "n_tuned": len(b), **r})
    out = pd.DataFrame(rows)
    out.attrs.update(baseline=baseline.run_id, tuned=tuned.run_id, slo_e2e_ms=slo, n_boot=n_boot, alpha=alpha)
    return out


def verdict_table(res: pd.DataFrame) -> pd.DataFrame:
    """Readable: one line per cell x metric with ratio [CI] and verdict."""
    if res.empty:
        return pd.DataFrame(columns=["cell", "metric", "ratio [95% CI]", "p", "verdict"])
    t = res.copy()
    t["ratio [95% CI]"] = [f"{r:.2f}x [{lo:.2f}, {hi:.2f}]" if not np.isnan(lo) else f"{r:.2f}x"
                           for r, lo, hi in zip(t["ratio"], t["ci_low"], t["ci_high"])]
    t["p"] = t["p_value"].map(lambda p: "" if np.isnan(p) else f"{p:.1e}")
    return t[["cell", "metric", "baseline", "tuned", "ratio [95% CI]", "p", "effect_size", "verdict"]].round(3)


def headline(res: pd.DataFrame) -> str:
    """One sentence per payload: the biggest RPS change and how sure we are."""
    if res.empty:
        return "No matching cells between the two runs."
    lines = []
    for payload, g in res[res["metric"] == "rps"].groupby("payload", sort=False):
        top = g.loc[g["vus"].idxmax()]
        sig = g[g["verdict"].isin(["better", "worse"])]
        line = (f"{payload}: at {top['vus']} VUs tuned/baseline RPS = {top['ratio']:.2f}x "
                f"(95% CI {top['ci_low']:.2f}-{top['ci_high']:.2f}, {top['verdict']}); "
                f"{len(sig)} of {len(g)} concurrency levels differ significantly")
        if len(sig) and not (sig.index == top.name).all():
            big = sig.loc[(np.log(sig["ratio"])).abs().idxmax()]
            line += (f", the largest at {big['vus']} VU{'s' if big['vus'] != 1 else ''}: {big['ratio']:.2f}x "
                     f"(95% CI {big['ci_low']:.2f}-{big['ci_high']:.2f}, {big['verdict']})")
        lines.append(line + ".")
    return "\n".join(lines)
