"""The compare report's attribution section: where the change in mean latency went.

``section(baseline, tuned)`` returns a :class:`~inferlab.report.sections.Section` (the contract
of report/sections.py: it returns what it shows and displays nothing). It leads with one
sentence per cell (analysis.attribution.sentences) and says that this is accounting, not
cause; then the stacked bars of both sides' mean parts, the table of part deltas with their
intervals and Holm q-values, each part's share of e2e per side, the parts' percentiles beside
(not summed), every repeat's part means, and the engine's prefix-cache counters when the engine
counted any lookups. A comparison
whose repeats lack spans gets a sentence naming the side and repeats instead. Everything shown
is a column of analysis.attribution's frames: nothing is computed here.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown

from ..analysis import attribution as at
from ..analysis.compare import as_runs
from ..runs.reader import Run
from .plots import COMPONENT_COLORS, _done, use_theme
from .sections import Section, show

TITLE = "## Where the change in mean latency went"


def missing_md(att: at.Attribution) -> str:
    """Which side's repeats (and cells) were left out, and why; "" when none was."""
    m = att.missing
    if m.empty:
        return ""
    lines = []
    for (side, reason), g in m.groupby(["side", "reason"], sort=False):
        reps = ", ".join(f"`{r}`" for r in dict.fromkeys(g["run_id"]))
        # a run without spans lacks them in every cell: the cells would only repeat the run's list
        cells = "" if reason == at.NO_SPANS else " (" + ", ".join(dict.fromkeys(g["cell"])) + ")"
        lines.append(f"- {side}: {reps}{cells}: {reason}")
    return "Left out of the attribution:\n\n" + "\n".join(lines)


def lead_md(att: at.Attribution) -> Markdown:
    """The section's lead: its title, one sentence per cell, accounting-not-cause, and what was
    left out; or, without spans, which side and repeats lack them."""
    if att.empty:
        why = missing_md(att) or "no cell has repeats with spans on both sides."
        return Markdown(f"{TITLE}\n\nNo attribution: it needs the engine's per-request spans (`observe.traces`, "
                        f"the local engine) on both sides.\n\n{why}")
    lines = [f"- {s}" for s in at.sentences(att)]
    text = (f"{TITLE}\n\n" + "\n".join(lines) + f"\n\n{at.ACCOUNTING}\n\n"
            f"Method: per repeat, the mean of each part over its successful steady-state window requests "
            f"joined to a server span (the parts add up to the mean e2e exactly); per part, the delta of the "
            f"side means (tuned - baseline, so the parts' deltas add up to the e2e delta) with a "
            f"{att.level:.0%} Welch t-interval over repeats; an effect is named when q < {att.alpha} after "
            f"Holm's correction across every part of every cell and each side has at least "
            f"{at.MIN_VERDICT_REPEATS} repeats. Percentiles of the parts are shown beside, never summed.")
    for note in att.notes:
        text += f"\n\nNote: {note}."
    if not att.missing.empty:
        text += "\n\n" + missing_md(att)
    return Markdown(text)


def bars(att: at.Attribution):
    """Per cell, both sides' mean request as a stacked bar of its parts (ms), the delta of each
    named part written beside the tuned bar."""
    if att.empty:
        return "no attribution: no repeats with spans on both sides"
    use_theme()
    cells = list(att.totals["cell"])
    fig, ax = plt.subplots(figsize=(10, 1.1 * len(cells) + 2.2))
    labels, y = [], []
    for i, cell in enumerate(cells):
        for j, side in enumerate(("baseline", "tuned")):
            labels.append(f"{cell}  {side}")
            y.append(i * 2.6 + j)
    y = np.array(y, float)
    left = np.zeros(len(y))
    parts = att.parts
    for part in [p for p in at.PARTS if p in set(parts["part"])]:
        p = parts[parts["part"] == part].set_index("cell").reindex(cells)
        width = np.column_stack([p["baseline_ms"], p["tuned_ms"]]).ravel().clip(min=0)
        ax.barh(y, width, left=left, color=COMPONENT_COLORS[part], label=at.PARTS[part], edgecolor="white", height=0.8)
        left += width
    for i, cell in enumerate(cells):
        called = parts[(parts["cell"] == cell) & parts["called"]]
        called = called.loc[called["delta_ms"].abs().sort_values(ascending=False).index]
        text = ", ".join(f"{r.part} {at._ms(r.delta_ms)} ms" for r in called.itertuples()) or "no part beyond noise"
        ax.text(left[2 * i + 1], y[2 * i + 1], f"  {text}", va="center", fontsize=8)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlim(0, left.max() * 1.6)  # room for the deltas written beside the tuned bars
    ax.set(xlabel="mean time per request (ms; side mean of the repeats' means)", ylabel="")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=len(at.PARTS), frameon=False)
    return _done(fig, "Both sides' mean request by part (named: deltas beyond noise after Holm)")


def parts_table(att: at.Attribution):
    """Per cell and part (the total first): both side means, the delta [interval], q, named or
    not, and each side's p50/p95 of the part beside."""
    if att.empty:
        return "no attribution"
    rows = pd.concat([att.totals.assign(label="mean e2e (total)"), att.parts], ignore_index=True)
    rows["cell_order"] = rows["cell"].map({c: i for i, c in enumerate(att.totals["cell"])})
    rows["part_order"] = rows["part"].map({p: i for i, p in enumerate(["total", *at.PARTS])})
    rows = rows.sort_values(["cell_order", "part_order"], kind="stable")
    pct = att.percentiles.pivot_table(index=["cell", "part"], columns=["side", "percentile"], values="value")
    pct.columns = [f"{side} {q}" for side, q in pct.columns]
    rows = rows.merge(pct.reset_index(), on=["cell", "part"], how="left")
    lvl = f"{att.level:.0%}"
    out = pd.DataFrame({
        "cell": rows["cell"], "part": rows["label"],
        "repeats": rows["n_baseline"].astype(str) + "+" + rows["n_tuned"].astype(str),
        "baseline (ms)": rows["baseline_ms"], "tuned (ms)": rows["tuned_ms"],
        f"delta ms [{lvl} CI]": [f"{at._ms(d)} [{at._bound(lo)}, {at._bound(hi)}]" if np.isfinite(lo) else at._ms(d)
                                 for d, lo, hi in zip(rows["delta_ms"], rows["ci_low"], rows["ci_high"])],
        "q (Holm)": rows["q_value"].map(lambda q: f"{q:.2g}" if np.isfinite(q) else ""),
        "share of e2e": ["" if part == "total" else f"{a:.0%} -> {b:.0%}"
                         for part, a, b in zip(rows["part"], rows["baseline_share"], rows["tuned_share"])],
        "named": rows["called"].map({True: "yes", False: ""}),
        **{f"{c} (ms)": rows[c] for c in ("baseline p50", "baseline p95", "tuned p50", "tuned p95")
           if c in rows.columns},
    })
    return show(out, precision=1)


def repeats_table(att: at.Attribution):
    """Every repeat's requests and mean parts: the values the intervals are built from."""
    if att.repeats.empty:
        return "no repeats with spans"
    cols = ["side", "run_id", "cell", "requests", "total", *[p for p in at.PARTS if p in att.repeats.columns]]
    return show(att.repeats[cols].rename(columns={"total": "mean e2e"}), precision=1)


def cache_table(baseline: Sequence[Run], tuned: Sequence[Run]):
    """The engine's prefix-cache counters per repeat (tokens looked up, found, hit share): the
    witness beside a prefill delta; None when no repeat's engine counted a lookup."""
    c = pd.concat([at.prefix_cache(baseline, "baseline"), at.prefix_cache(tuned, "tuned")], ignore_index=True)
    if c.empty or not (c["queries"].fillna(0) > 0).any():
        return None
    share = c["hit_share"].map(lambda s: f"{s:.1%}" if np.isfinite(s) else "no lookups")
    c = c.assign(hit_share=share).rename_axis(columns=None)
    return show(c, precision=0)


def section(baseline: Run | Sequence[Run], tuned: Run | Sequence[Run], alpha: float = 0.05) -> Section:
    """The whole attribution section of the compare report (see the module docstring)."""
    base, tun = as_runs(baseline), as_runs(tuned)
    att = at.attribute(base, tun, alpha=alpha)
    sec = Section(lead_md(att))
    if att.empty:
        return sec
    sec.add(bars(att), parts_table(att), Markdown("Every repeat's mean parts (ms):"), repeats_table(att))
    cache = cache_table(base, tun)
    if cache is not None:
        sec.add(Markdown("The engine's prefix-cache counters over each cell (`/metrics` after - before, tokens): "
                         "an independent witness for a prefill delta."), cache)
    return sec
