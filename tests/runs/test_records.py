"""The one record store: runs, comparisons and tunes resolve ids by one rule."""

from datetime import UTC, datetime
from pathlib import Path

import pytest

from inferlab.runs.comparison import Comparison, find_comparison, load_comparison, save_comparison
from inferlab.runs.records import COMPARISONS, RUNS, TUNES, AmbiguousRecordError, RecordNotFoundError
from inferlab.runs.tune_record import TuneRecord, find_tune, load_tune, save_tune


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A workspace with two runs in data/runs, one in data/sample (also an id in data/runs)."""
    monkeypatch.setenv("INFERLAB_HOME", str(tmp_path))
    for rel in ("data/runs/20260101T000000Z-a", "data/runs/20260101T000100Z-b",
                "data/sample/20260101T000000Z-a", "data/sample/20250101T000000Z-old"):
        (tmp_path / rel).mkdir(parents=True)
        (tmp_path / rel / "run.json").write_text("{}")
    return tmp_path


@pytest.mark.parametrize("store", [RUNS, COMPARISONS, TUNES], ids=lambda s: s.kind)
def test_one_rule_for_every_kind(home, store):
    first = store.home
    for name in ("20270101T000000Z-x", "20270101T000100Z-y"):
        (first / name).mkdir(parents=True, exist_ok=True)
        (first / name / store.filename).write_text("{}")
    assert store.find("20270101T000000Z-x") == first / "20270101T000000Z-x"  # exact
    assert store.find("20270101T0001") == first / "20270101T000100Z-y"  # unique prefix
    assert store.find(first / "20270101T000000Z-x") == first / "20270101T000000Z-x"  # a path
    assert store.find(first / "20270101T000000Z-x" / store.filename) == first / "20270101T000000Z-x"
    with pytest.raises(AmbiguousRecordError, match="20270101T000000Z-x, 20270101T000100Z-y") as e:
        store.find("20270101T")
    assert e.value.candidates == ["20270101T000000Z-x", "20270101T000100Z-y"]
    with pytest.raises(RecordNotFoundError, match=f"no {store.kind} 'nope'.* in {first}.*known: .*20270101T000100Z-y"):
        store.find("nope")
    assert store.exists("20270101T0001") and not store.exists("20270101T") and not store.exists("nope")


def test_runs_search_data_runs_then_the_sample(home):
    assert RUNS.find("20260101T000000Z-a") == home / "data/runs/20260101T000000Z-a"  # data/runs wins
    assert RUNS.find("2025") == home / "data/sample/20250101T000000Z-old"
    assert RUNS.find("20260101T0000") == home / "data/runs/20260101T000000Z-a"  # one id in two places
    with pytest.raises(RecordNotFoundError, match=f"in {home / 'data/runs'} or {home / 'data/sample'}"):
        RUNS.find("2024")


def test_comparisons_and_tunes_save_load_by_prefix(home):
    now = datetime(2026, 1, 1, tzinfo=UTC)
    c = Comparison(comparison_id="20260101T000000Z-local-ab-x", created_at=now, target="local", order="alternate",
                   seed=1, baseline={}, tuned={})
    d = COMPARISONS.home / c.comparison_id
    d.mkdir(parents=True)
    save_comparison(c, d)
    assert load_comparison("20260101T00") == c
    assert find_comparison("20260101T00") == d / "comparison.json"
    t = TuneRecord(tune_id="20260101T000000Z-local-tune-x", created_at=now, target="local", spec={}, capacity_spec={})
    d = TUNES.home / t.tune_id
    d.mkdir(parents=True)
    save_tune(t, d)
    assert load_tune("20260101T") == t and find_tune("20260101T") == d
    assert sorted(p.name for p in d.iterdir()) == ["tune.json"]  # the temp file was renamed
