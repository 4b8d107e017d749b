"""report.attribution on the shipped comparisons: the section leads with the sentences and the
accounting-not-cause text, draws both sides, tabulates the parts with percentiles beside and the
engine's prefix-cache counters; a comparison recorded without spans gets one paragraph that names
the side and repeats lacking them."""

from __future__ import annotations

import pandas as pd
import pytest
from IPython.display import Markdown
from matplotlib.figure import Figure

from inferlab.analysis import compare
from inferlab.report import attribution as ra
from inferlab.report.sections import Section

PREFIX_CACHE = "20261127T104409Z-local-ab-prefix-cache"
NO_SPANS = "20261127T074746Z-local-ab-ab-maxseqs1"


@pytest.fixture(scope="module")
def prefix_cache_section() -> Section:
    base, tuned, _ = compare.sides(comparison=PREFIX_CACHE)
    return ra.section(base, tuned)


def test_section_leads_with_the_sentences(prefix_cache_section):
    sec = prefix_cache_section
    lead = sec.parts[0]
    assert isinstance(lead, Markdown) and lead.data.startswith(ra.TITLE)
    first = lead.data.split("\n\n")[1]
    assert first.startswith("- shared-system-prompt-c2: mean e2e 3.") and "prefill +" in first
    assert first.index("prefill") < first.index("decode")  # largest named part first
    assert "accounting, not cause" in lead.data and "queue time follows service time" in lead.data
    assert isinstance(sec.parts[1], Figure)
    html = sec.parts[2].to_html()
    for text in ("mean e2e (total)", "prefill", "API server (remainder)", "baseline p95 (ms)", "q (Holm)", "yes"):
        assert text in html, text
    cache = sec.parts[-1].to_html()
    assert "81.6%" in cache and "no lookups" in cache


def test_section_without_spans_names_the_repeats():
    base, tuned, _ = compare.sides(comparison=NO_SPANS)
    sec = ra.section(base, tuned)
    assert len(sec) == 1
    text = sec.parts[0].data
    assert "No attribution" in text and "recorded without traces" in text
    for run in base + tuned:
        assert run.run_id in text
    assert "- baseline:" in text and "- tuned:" in text


def test_nothing_to_draw_is_said(prefix_cache_section):
    from inferlab.analysis.attribution import Attribution

    empty = Attribution(*(pd.DataFrame() for _ in range(5)))
    assert isinstance(ra.bars(empty), str) and isinstance(ra.parts_table(empty), str)
    assert "no cell has repeats with spans" in ra.lead_md(empty).data
