"""The three baselines the backtest keeps every model honest against.

- seasonal naive: the same counter at the same local weekday and hour in the last
  week of the training rows (the newest value the model could have known);
- plain HGB: a HistGradientBoosting on plain calendar parts and a numeric counter
  code, no feature engineering at all (a regressor on log1p(count) and a classifier
  on the affluence label);
- the "20-line model": a HistGradientBoosting on the calendar flags of the feature
  module (hour, weekday, day type, public and school holidays, bridge day, lockdown,
  curfew) and a numeric counter code: no date parts, no trend, no recent level, no
  recency weight. The kind of model an afternoon gives; on the month after the data
  it scored 0.412 RMSE log1p where the served models scored 0.45-0.50 (issue 22).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from velocast.core import tasks
from velocast.core.local_time import PARIS, local_calendar

WEEK_SECONDS = 7 * 86400.0


@dataclass
class SeasonalNaive:
    """Last training week's log1p(count) per (counter, weekday, hour)."""

    lookup: dict
    fallback: dict           # counter -> mean log1p(count), for a missing cell
    overall: float

    @classmethod
    def fit(cls, frame: pd.DataFrame) -> "SeasonalNaive":
        last_week = frame[frame["epoch"] > frame["epoch"].max() - WEEK_SECONDS]
        cal = local_calendar(last_week["epoch"].to_numpy())
        logs = np.log1p(last_week["count"].to_numpy(dtype=np.float64))
        lookup = dict(zip(zip(last_week["counter"], cal.weekday.tolist(), cal.hour.tolist()),
                          logs.tolist()))
        fallback = (np.log1p(frame["count"]).groupby(frame["counter"]).mean()).to_dict()
        return cls(lookup, fallback, float(np.log1p(frame["count"]).mean()))

    def predict_log(self, frame: pd.DataFrame) -> np.ndarray:
        cal = local_calendar(frame["epoch"].to_numpy())
        return np.array([
            self.lookup.get((c, w, h), self.fallback.get(c, self.overall))
            for c, w, h in zip(frame["counter"], cal.weekday.tolist(), cal.hour.tolist())])


def plain_matrix(frame: pd.DataFrame, codes: dict) -> np.ndarray:
    """hour, weekday, day of month, month, year, day of year, public and school
    holidays, counter code (its rank among the training counters; -1 if unseen)."""
    local = pd.to_datetime(frame["epoch"], unit="s", utc=True).dt.tz_convert(PARIS)
    cal = local_calendar(frame["epoch"].to_numpy())
    code = frame["counter"].map(codes).fillna(-1).to_numpy(dtype=np.float64)
    return np.column_stack([cal.hour, cal.weekday, local.dt.day, local.dt.month,
                            local.dt.year, cal.day_of_year, cal.public_holiday,
                            cal.school_holiday, code]).astype(np.float64)


def calendar_matrix(frame: pd.DataFrame, codes: dict) -> np.ndarray:
    """The 20-line model's columns: calendar flags and the counter code, nothing that
    says which week or month it is."""
    cal = local_calendar(frame["epoch"].to_numpy())
    code = frame["counter"].map(codes).fillna(-1).to_numpy(dtype=np.float64)
    return np.column_stack([cal.hour, cal.weekday, cal.day_type, cal.public_holiday,
                            cal.bridge_day, cal.school_holiday, cal.lockdown, cal.curfew,
                            code]).astype(np.float64)


@dataclass
class PlainHGB:
    codes: dict
    estimator: object
    kind: tasks.Kind
    columns = staticmethod(plain_matrix)

    @classmethod
    def fit(cls, frame: pd.DataFrame, target: np.ndarray, kind: tasks.Kind) -> "PlainHGB":
        codes = {name: i for i, name in enumerate(sorted(frame["counter"].unique()))}
        model = HistGradientBoostingClassifier if kind.classifier else HistGradientBoostingRegressor
        estimator = model(random_state=0).fit(cls.columns(frame, codes), target)
        return cls(codes, estimator, kind)

    def output(self, frame: pd.DataFrame) -> np.ndarray:
        matrix = self.columns(frame, self.codes)
        if self.kind.classifier:
            return self.estimator.predict_proba(matrix)[:, 1]
        return self.estimator.predict(matrix)


class TwentyLine(PlainHGB):
    """The 20-line model: PlainHGB's estimator on calendar_matrix."""
    columns = staticmethod(calendar_matrix)
