"""The affluence classifier trained on rows that end in the Christmas holidays forecasts
the January return as a term month, not as more holidays (issue 22).

With less than a year of rows, a tree reads the days of year after the data from the
training's last weeks; after Christmas those are the year's deepest dip, and January's
working hours were forecast 12 % busy where 31 % were (F1 0.46 on the transition
backtest). The served classifier averages a member that sees the day of year with one
that does not; on this planted term the single classifier forecasts 32 % busy for 47 %
(F1 0.81), the blend 42 % (F1 0.94). The planted term: eight counters with a commute
profile, following daylight over the year (40 % lower at the winter solstice than at
the summer one), 55 % lower in the Christmas holidays, 40 % lower in the other school
holidays and on weekends, Poisson noise; training ends on 6 January 2024, two days
before school resumes."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from velocast.core import paris_calendar
from velocast.core.local_time import PARIS
from velocast.train import export, pipeline

from tests.conftest import one_openmp_thread
from tests.planted_counts import COMMUTE, hours

START, TRAIN_END = dt.date(2023, 9, 4), dt.date(2024, 1, 7)     # training: [START, TRAIN_END)
RETURN = (dt.date(2024, 1, 8), dt.date(2024, 2, 3))             # four school weeks
CHRISTMAS = (dt.date(2023, 12, 23), dt.date(2024, 1, 8))


def season(day: dt.date) -> float:
    """Traffic follows daylight: 40 % lower at the winter solstice than at the summer one."""
    winter = (1 + np.cos(2 * np.pi * (day - dt.date(day.year - 1, 12, 21)).days / 365.25)) / 2
    return 1.0 - 0.4 * winter


def expected_counts(epoch: np.ndarray, level: float) -> np.ndarray:
    factors = []
    for t in (dt.datetime.fromtimestamp(e, tz=PARIS) for e in epoch):
        day = t.date()
        holiday = 0.45 if CHRISTMAS[0] <= day < CHRISTMAS[1] else \
            0.6 if paris_calendar.is_school_holiday(day) else 1.0
        factors.append(season(day) * holiday * (0.6 if t.weekday() >= 5 else 1.0)
                       * COMMUTE[t.hour])
    return level * np.array(factors)


def frame_of(epoch: np.ndarray, counts_of) -> pd.DataFrame:
    return pd.concat([pd.DataFrame({"counter": f"planted {k}", "epoch": epoch,
                                    "latitude": 48.85 + 0.01 * k, "longitude": 2.35,
                                    "count": counts_of(k)}) for k in range(8)],
                     ignore_index=True)


def test_the_january_return_is_forecast_as_busy_as_a_term_month():
    rng = np.random.default_rng(0)
    train_epoch = hours(START, TRAIN_END)
    rows = pipeline.drop_outages(frame_of(train_epoch, lambda k: rng.poisson(
        expected_counts(train_epoch, 40.0 + 25 * k)).astype(np.float64)))
    table = pipeline.fit_table(rows)
    with one_openmp_thread():
        model = pipeline.fit(pipeline.MODELS["affluence"], pipeline.prepare(rows, table))
    epoch = hours(*RETURN)
    future = pipeline.prepare(frame_of(epoch, lambda k: expected_counts(epoch, 40.0 + 25 * k)),
                              table)
    busy = export.sklearn_output(model, future.matrix, "classify") >= 0.5
    share, forecast = future.busy.mean(), busy.mean()
    assert forecast >= 0.8 * share, f"forecast {forecast:.0%} busy where {share:.0%} are"
    assert f1_score(future.busy, busy) >= 0.85
