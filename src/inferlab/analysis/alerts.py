"""Alert timeline from Prometheus' ``ALERTS`` series (rows of the tidy server series table).

Prometheus keeps ``ALERTS{alertname, alertstate="pending"|"firing", <rule labels>} = 1`` while an
alert is in that state and drops the series when it leaves it. So an interval is a run of
consecutive samples of one series; a gap longer than ``max_gap_s`` (default 1.5 query steps)
ends it. An alert that was firing and stopped before the window's end was *resolved*; one still
there at the end is *open*.

``alert_timeline(series)`` -> one row per interval: alertname, state (pending|firing), start,
end, duration_s, resolved (firing intervals that ended inside the window), open, labels (JSON
of the other labels, e.g. severity and ``rule_profile`` = test when the test profile shortened
``for:`` and range windows).
"""

from __future__ import annotations

import json

import pandas as pd

TIMELINE_COLUMNS = ["alertname", "state", "start", "end", "duration_s", "resolved", "open", "labels"]


def alert_timeline(series: pd.DataFrame, window_end: pd.Timestamp | None = None,
                   max_gap_s: float | None = None) -> pd.DataFrame:
    """Intervals per alert and state from the ``ALERTS`` rows of ``series`` (ts, family, labels, value).
    ``window_end``: the end of the observed window (default: the last gauge sample's ts, ALERTS
    included). An interval that reaches it is ``open`` (still in that state), not resolved."""
    alerts = series[(series["family"] == "ALERTS") & (series["value"] > 0)]
    if alerts.empty:
        return pd.DataFrame(columns=TIMELINE_COLUMNS)
    # the last *sample* time: rate and quantile rows are stamped at the end of their 5 s window,
    # up to 5 s after the last scrape, which would read an alert firing to the end as resolved
    gauges = series[series["kind"] == "gauge"] if "kind" in series.columns else series
    end_of_window = pd.Timestamp(window_end) if window_end is not None else gauges["ts"].max()
    if max_gap_s is None:
        steps = alerts.sort_values("ts").groupby("labels")["ts"].diff().dt.total_seconds().dropna()
        max_gap_s = 1.5 * (float(steps[steps > 0].min()) if (steps > 0).any() else 1.0)
    rows = []
    for lab, s in alerts.groupby("labels"):
        labels = json.loads(lab)
        name, state = labels.pop("alertname", "?"), labels.pop("alertstate", "?")
        labels.pop("job", None)
        ts = s["ts"].sort_values().reset_index(drop=True)
        run = (ts.diff().dt.total_seconds() > max_gap_s).cumsum()
        for _, t in ts.groupby(run):
            start, end = t.iloc[0], t.iloc[-1]
            still = (end_of_window - end).total_seconds() <= max_gap_s
            rows.append((name, state, start, end, (end - start).total_seconds(), state == "firing" and not still,
                         still, json.dumps(labels, sort_keys=True)))
    return pd.DataFrame(rows, columns=TIMELINE_COLUMNS).sort_values(["start", "alertname", "state"], ignore_index=True)


def alerts_seen(timeline: pd.DataFrame, state: str = "firing") -> set[str]:
    """Names of the alerts that were in ``state`` at some point."""
    return set(timeline.loc[timeline["state"] == state, "alertname"])
