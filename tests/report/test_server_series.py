"""Server series figure: the recorded overload (real Prometheus) beside a k6 requests table on
one time axis, and the alert timeline; a light run's empty timeline says so."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from inferlab.analysis.alerts import alert_timeline
from inferlab.ingest import read_k6
from inferlab.ingest.series import read_series
from inferlab.report.server_series import PANEL_COLUMNS, server_panels, server_series_figure

FIX = Path(__file__).resolve().parents[1] / "fixtures"
REC = FIX / "prometheus-query"


def _k6_in_window(series: pd.DataFrame) -> pd.DataFrame:
    """The recorded k6 requests moved onto the recorded series' window (different runs: only the
    time axis is under test here)."""
    req = read_k6(FIX / "k6-1.1.0" / "short_c1.ndjson.gz")
    shift = series["ts"].min() - req["start_ts"].min()
    req = req.assign(start_ts=req["start_ts"] + shift, end_ts=req["end_ts"] + shift)
    return req[req["end_ts"] <= series["ts"].max()]


def test_panels_put_k6_and_the_server_on_one_axis():
    series = read_series([REC / "vllm-000.json.gz", REC / "alerts-000.json.gz"])
    panels = server_panels(series, _k6_in_window(series))
    assert list(panels.columns) == PANEL_COLUMNS
    measures = set(panels["measure"])
    assert {"completed (k6)", "k6 e2e p95", "running", "waiting", "KV cache", "prompt", "generation",
            "server e2e p95", "server TTFT p95", "finished (server)"} <= measures
    assert panels.loc[panels["measure"] == "waiting", "value"].max() > 50
    assert str(panels["ts"].dtype).startswith("datetime64") and panels["ts"].dt.tz is not None
    fig = server_series_figure(panels, alert_timeline(series))
    assert len(fig.axes) == panels["panel"].nunique() + 1
    assert [t.get_text() for t in fig.axes[-1].get_yticklabels()] == ["VllmE2ELatencyHigh", "VllmQueueBuilding",
                                                                       "VllmTTFTHigh"]


def test_a_quiet_run_says_no_alert():
    series = read_series(REC / "vllm-000.json.gz")
    fig = server_series_figure(server_panels(series), alert_timeline(series))
    assert "no alert pending or firing" in [t.get_text() for t in fig.axes[-1].texts]


def test_no_data_gives_an_empty_table():
    assert server_panels(pd.DataFrame(columns=["ts", "family", "labels", "value", "kind"])).empty


def test_alerts_md_names_the_test_profile_and_what_fired():
    import json

    from inferlab.report.server_series import alerts_md

    series = read_series([REC / "vllm-000.json.gz", REC / "alerts-000.json.gz"])
    meta = {**json.loads((REC / "meta.json").read_text()), "source": "local",
            "rule_profile": {"name": "test", "for_s": 10, "range_s": 20}}
    text = alerts_md(alert_timeline(series), [meta]).data
    assert "test profile" in text and "capped at 10 s" in text and "thresholds are the platform's" in text
    assert "Firing: VllmE2ELatencyHigh, VllmQueueBuilding, VllmTTFTHigh." in text
    assert "alert rules not evaluated" in alerts_md(alert_timeline(series.iloc[0:0]), []).data


def test_sections_return_what_they_show_and_display_nothing(monkeypatch):
    """The report-section contract (:class:`inferlab.report.sections.Section`): a section returns
    its parts in order; shown as a cell's last value, each part is one output, in that order."""
    import matplotlib.figure
    from IPython.display import Markdown

    import inferlab
    from inferlab.analysis import summary
    from inferlab.report import edge, sections, server_series

    shown = []
    monkeypatch.setattr(sections, "display", lambda *objs: shown.extend(objs))
    run = inferlab.load_run("20261127T110659Z-local-edge-ratelimit")
    sec = server_series.section(run, summary.measured(run))
    assert isinstance(sec, sections.Section) and not shown  # computing a section displays nothing
    assert [type(p) for p in sec] == [Markdown, matplotlib.figure.Figure]
    sec._ipython_display_()
    assert shown == sec.parts
    parts = list(edge.section(run))
    assert len(parts) == 5 and isinstance(parts[0], Markdown) and isinstance(parts[-1], matplotlib.figure.Figure)
    assert len(edge.section(inferlab.load_run("20261127T121016Z-local-trace-timing-quiet"))) == 1  # no edge: one line
