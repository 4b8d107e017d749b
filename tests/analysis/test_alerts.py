"""Alert timeline from ALERTS series: the recorded overload (real Prometheus, test profile) and
small tables built here for gaps, resolution and open intervals."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from inferlab.analysis.alerts import TIMELINE_COLUMNS, alert_timeline, alerts_seen
from inferlab.ingest.series import read_series

REC = Path(__file__).resolve().parents[1] / "fixtures" / "prometheus-query"
T0 = pd.Timestamp("2026-11-27T10:00:00", tz="UTC")


def _alerts(name: str, state: str, seconds: list[int]) -> pd.DataFrame:
    labels = json.dumps({"alertname": name, "alertstate": state, "severity": "warning"}, sort_keys=True)
    return pd.DataFrame({"ts": [T0 + pd.Timedelta(seconds=s) for s in seconds], "family": "ALERTS",
                         "labels": labels, "value": 1.0, "kind": "gauge"})


def _gauge(seconds: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"ts": [T0 + pd.Timedelta(seconds=s) for s in seconds], "family": "vllm:num_requests_waiting",
                         "labels": "{}", "value": 0.0, "kind": "gauge"})


def test_recorded_overload_goes_pending_then_firing():
    t = alert_timeline(read_series([REC / "alerts-000.json.gz", REC / "vllm-000.json.gz"]))
    assert list(t.columns) == TIMELINE_COLUMNS
    for name in ("VllmTTFTHigh", "VllmE2ELatencyHigh", "VllmQueueBuilding"):
        a = t[t["alertname"] == name]
        pending, firing = a[a["state"] == "pending"].iloc[0], a[a["state"] == "firing"].iloc[0]
        # the test profile's `for:` is 10 s: firing starts about when pending ends
        assert pending["start"] < firing["start"] and abs((firing["start"] - pending["end"]).total_seconds()) <= 2
        assert 8 <= pending["duration_s"] <= 11
    assert t["labels"].map(lambda j: json.loads(j)["rule_profile"]).eq("test").all()
    assert not {"VllmErrors", "GpuNotUtilized"} & (alerts_seen(t) | alerts_seen(t, "pending"))


def test_gaps_split_intervals_and_resolution_is_told_from_open():
    series = pd.concat([_alerts("A", "firing", [0, 1, 2, 3, 10, 11, 12]), _gauge(list(range(0, 13)))])
    t = alert_timeline(series)
    assert t[["state", "duration_s", "resolved", "open"]].values.tolist() == [["firing", 3.0, True, False],
                                                                             ["firing", 2.0, False, True]]
    # the window's end given explicitly: the second interval ended before it, so it resolved too
    t2 = alert_timeline(series, window_end=T0 + pd.Timedelta(seconds=30))
    assert t2["resolved"].tolist() == [True, True]
    assert json.loads(t["labels"].iloc[0]) == {"severity": "warning"}


def test_no_alerts_is_an_empty_timeline():
    t = alert_timeline(_gauge([0, 1, 2]))
    assert t.empty and list(t.columns) == TIMELINE_COLUMNS and alerts_seen(t) == set()


def test_alerts_firing_at_the_end_of_the_recorded_window_are_open_not_resolved():
    # the recording ends with the overload still on: rate/quantile rows are stamped at the end of
    # their 5 s window, after the last ALERTS sample, and must not make the alerts look resolved
    t = alert_timeline(read_series([REC / "alerts-000.json.gz", REC / "vllm-000.json.gz"]))
    firing = t[t.state == "firing"]
    assert len(firing) and firing.open.all() and not firing.resolved.any(), firing


SHIPPED = Path(__file__).resolve().parents[2] / "data" / "sample"


def test_shipped_stress_runs_show_the_alerts_firing_at_overload_and_quiet_when_light():
    """`inferlab stress alerts-overload-local` / `alerts-light-local` (real engine, real Prometheus
    evaluating the platform's rules under the test profile), read back from their run records."""
    import inferlab

    over = inferlab.load_run(next(SHIPPED.glob("*-local-alerts-overload")))
    t = alert_timeline(over.series)
    assert {"VllmTTFTHigh", "VllmE2ELatencyHigh", "VllmQueueBuilding"} <= alerts_seen(t)
    assert over.prometheus_meta and over.prometheus_meta[0]["rule_profile"]["name"] == "test"
    light = inferlab.load_run(next(SHIPPED.glob("*-local-alerts-light")))
    assert not light.series.empty and not alerts_seen(alert_timeline(light.series), "firing")
