"""A counter whose last training weeks are a holiday dip or a broken sensor: its
forecast for the following month stays at its normal level (issue 22).

The planted year: eight counters with a commute profile, 40 % lower in school
holidays and on weekends, Poisson noise; training ends on 9 August 2024, five weeks
into the summer holidays (as the shared file ends), and the forecast is the school
month after it. "Normal level" is the counter's mean count over the same month's
hours in the last school term before the dip (June 2024, same weekday mix)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from velocast.core import paris_calendar
from velocast.core.local_time import PARIS
from velocast.train import pipeline

from tests.conftest import one_openmp_thread
from tests.planted_counts import COMMUTE, hours

START, TRAIN_END = dt.date(2023, 9, 4), dt.date(2024, 8, 10)   # training: [START, TRAIN_END)
FORECAST = (dt.date(2024, 9, 9), dt.date(2024, 10, 7))           # four school weeks
NORMAL = (dt.date(2024, 5, 27), dt.date(2024, 6, 24))            # four school weeks


def expected_counts(epoch: np.ndarray, level: float) -> np.ndarray:
    local = [dt.datetime.fromtimestamp(e, tz=PARIS) for e in epoch]
    factor = np.array([(0.6 if paris_calendar.is_school_holiday(t.date()) else 1.0)
                       * (0.6 if t.weekday() >= 5 else 1.0) * COMMUTE[t.hour] for t in local])
    return level * factor


def planted_year(tail) -> pd.DataFrame:
    """Eight counters; the first one's last weeks are rewritten by `tail(epoch, counts)`."""
    rng = np.random.default_rng(0)
    epoch = hours(START, TRAIN_END)
    frames = []
    for k in range(8):
        counts = rng.poisson(expected_counts(epoch, 40.0 + 25 * k)).astype(np.float64)
        if k == 0:
            counts = tail(epoch, counts)
        frames.append(pd.DataFrame({"counter": f"planted {k}", "epoch": epoch,
                                    "latitude": 48.85 + 0.01 * k, "longitude": 2.35,
                                    "count": counts}))
    return pd.concat(frames, ignore_index=True)


def since(day: dt.date, epoch: np.ndarray) -> np.ndarray:
    return epoch >= dt.datetime.combine(day, dt.time(), tzinfo=PARIS).timestamp()


def holiday_dip(epoch, counts):
    """The planted counter loses 85 % of its traffic from the start of the holidays."""
    return np.where(since(dt.date(2024, 7, 6), epoch), np.floor(counts * 0.15), counts)


def outage(epoch, counts):
    """A sensor going wrong: a quarter of the counts for two weeks, then zeros for three."""
    counts = np.where(since(dt.date(2024, 7, 6), epoch), np.floor(counts / 4), counts)
    return np.where(since(dt.date(2024, 7, 20), epoch), 0.0, counts)


def forecast_ratio(frame: pd.DataFrame, model_type: str) -> float:
    """The planted counter's mean forecast over FORECAST / its normal level."""
    rows = pipeline.drop_outages(frame)
    table = pipeline.fit_table(rows)
    with one_openmp_thread():
        model = pipeline.fit(pipeline.MODELS[model_type], pipeline.prepare(rows, table))
    epoch = hours(*FORECAST)
    future = pd.DataFrame({"counter": "planted 0", "epoch": epoch, "latitude": 48.85,
                           "longitude": 2.35, "count": 0.0})
    predicted = np.clip(np.expm1(model.predict(pipeline.prepare(future, table).matrix)), 0, None)
    normal = expected_counts(hours(*NORMAL), 40.0)
    return float(predicted.mean() / normal.mean())


@pytest.mark.parametrize("tail", [holiday_dip, outage])
@pytest.mark.parametrize("model_type", ["gbdt", "rf", "nn"])
def test_the_month_after_a_dip_is_forecast_at_the_counters_normal_level(tail, model_type):
    ratio = forecast_ratio(planted_year(tail), model_type)
    assert 0.85 <= ratio <= 1.15, f"{tail.__name__}: forecast at {ratio:.2f} of the normal level"


def test_a_counter_without_a_dip_is_forecast_at_its_normal_level_too():
    assert 0.85 <= forecast_ratio(planted_year(lambda epoch, counts: counts), "gbdt") <= 1.15
