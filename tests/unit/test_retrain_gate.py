"""The reference-panel gate (velocast.train.gate) and the retrain's whole-day rule:
what stops a model fitted on poisoned days from being promoted (N1, D2)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from velocast.core.features import CounterTable
from velocast.core.local_time import PARIS
from velocast.train import gate
from velocast.train.retrain import whole_days

COUNTERS = {f"counter {i}": (48.85 + i / 100, 2.35 + i / 100, 50.0 * (i + 1)) for i in range(10)}


def history(days: int = 60, scale: float = 1.0) -> pd.DataFrame:
    """Hourly counts with a daily peak of the counter's level at 18:00."""
    rows = []
    start = dt.datetime(2021, 6, 1, tzinfo=PARIS)
    for name, (lat, lon, level) in COUNTERS.items():
        for h in range(24 * days):
            moment = start + dt.timedelta(hours=h)
            rows.append((name, int(moment.timestamp()), scale * level * (0.2 + (moment.hour == 18)),
                         lat, lon))
    return pd.DataFrame(rows, columns=["counter", "epoch", "count", "latitude", "longitude"])


@pytest.fixture(scope="module")
def table() -> CounterTable:
    frame = history()
    return CounterTable.fit(frame["counter"].to_numpy(), frame["epoch"].to_numpy(),
                            frame["latitude"].to_numpy(), frame["longitude"].to_numpy(),
                            frame["count"].to_numpy())


def level_model(factor: float):
    """Predicts each counter's level x factor at every hour (log1p scale)."""
    def run(records):
        return np.log1p(np.array([COUNTERS[n][2] * factor for n in records.names]))
    return run


def test_the_panel_is_every_counter_at_every_hour_of_the_next_week(table):
    records = gate.panel(table, "2021-07-30")
    assert len(records) == len(COUNTERS) * 24 * 7
    first = dt.datetime.fromtimestamp(int(records.epoch_seconds.min()), PARIS)
    assert first == dt.datetime(2021, 7, 31, tzinfo=PARIS)


def test_a_model_answering_a_thousand_times_the_champion_is_refused(table):
    verdict = gate.check("regress", gate.panel(table, "2021-07-30"), level_model(1000),
                         level_model(1), history())
    assert not verdict.ok and "typical daily peak" in verdict.reason


def test_a_model_within_history_but_five_times_the_champion_is_refused(table):
    verdict = gate.check("regress", gate.panel(table, "2021-07-30"), level_model(1.0),
                         level_model(0.2), history())
    assert not verdict.ok and "champion" in verdict.reason


def test_a_model_close_to_the_champion_passes(table):
    verdict = gate.check("regress", gate.panel(table, "2021-07-30"), level_model(1.1),
                         level_model(1.0), history())
    assert verdict.ok, verdict.reason


def test_a_poisoned_week_in_the_window_does_not_raise_the_history_bound(table):
    frame = history()
    poisoned = frame["epoch"] >= frame["epoch"].max() - 7 * 86400
    frame.loc[poisoned, "count"] *= 1000
    verdict = gate.check("regress", gate.panel(table, "2021-07-30"), level_model(1000), None, frame)
    assert not verdict.ok


def test_a_first_model_is_only_bound_by_history(table):
    assert gate.check("regress", gate.panel(table, "2021-07-30"), level_model(1), None, history()).ok


def test_a_classifier_calling_many_more_hours_busy_is_refused(table):
    records = gate.panel(table, "2021-07-30")
    hours = np.array([dt.datetime.fromtimestamp(int(e), PARIS).hour for e in records.epoch_seconds])

    def champion(_):
        return np.where((hours >= 7) & (hours <= 20), 0.9, 0.1)

    def nothing_busy(_):   # the thresholds a x1000 week gives
        return np.full(len(hours), 0.05)

    assert gate.check("classify", records, champion, champion, history()).ok
    verdict = gate.check("classify", records, nothing_busy, champion, history())
    assert not verdict.ok and "busy share" in verdict.reason


def test_a_partial_newest_day_is_left_for_the_next_run():
    frame = history(days=3)
    cut = int(dt.datetime(2021, 6, 3, 2, tzinfo=PARIS).timestamp())
    partial = frame[frame["epoch"] <= cut]
    kept = whole_days(partial)
    assert kept["epoch"].max() == int(dt.datetime(2021, 6, 2, 23, tzinfo=PARIS).timestamp())
    assert len(whole_days(frame)) == len(frame)
