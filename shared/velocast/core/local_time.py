"""Calendar columns of UTC instants in Europe/Paris local time: what the features,
the recent level and the per-horizon intervals count days and hours in. An instant
given with any UTC offset lands on the right local hour across DST changes."""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np

from velocast.core import paris_calendar as cal

PARIS = ZoneInfo("Europe/Paris")


@dataclass(frozen=True)
class LocalCalendar:
    """Per-row calendar columns in Paris local time."""

    hour: np.ndarray
    weekday: np.ndarray
    day_of_year: np.ndarray
    days_in_year: np.ndarray
    public_holiday: np.ndarray
    bridge_day: np.ndarray
    school_holiday: np.ndarray
    lockdown: np.ndarray
    curfew: np.ndarray
    day: np.ndarray              # local date as a proleptic ordinal (date.toordinal())

    @property
    def day_type(self) -> np.ndarray:
        return np.where((self.weekday == 6) | (self.public_holiday == 1), 2,
                        np.where(self.weekday == 5, 1, 0)).astype(np.int64)


# Serving asks for the same hours again and again (a BigQuery query's batches, a
# forecast page): 16,384 hours (~2 years, ~2 MB) of columns are kept. Computing them
# was ~70 % of build_matrix on a 5,000-row batch (bench/README.md).
@functools.lru_cache(maxsize=16_384)
def _hour_columns(hour_utc: int) -> tuple[int, ...]:
    local = dt.datetime.fromtimestamp(hour_utc * 3600, tz=PARIS)
    day = local.date()
    leap = day.year % 4 == 0 and (day.year % 100 != 0 or day.year % 400 == 0)
    return (
        local.hour,
        day.weekday(),
        day.timetuple().tm_yday,
        366 if leap else 365,
        cal.is_public_holiday(day),
        cal.is_bridge_day(day),
        cal.is_school_holiday(day),
        cal.is_lockdown(day),
        cal.is_curfew(day, local.hour),
        day.toordinal(),
    )


def local_calendar(epoch_seconds: np.ndarray) -> LocalCalendar:
    """Calendar columns for UTC instants, computed once per distinct hour: a year of
    hourly rows holds fewer than 9,000 distinct hours, so the Python loop is cheap."""
    epoch = np.asarray(epoch_seconds, dtype=np.float64)
    hours_utc = np.floor(epoch / 3600.0).astype(np.int64)
    unique_hours, inverse = np.unique(hours_utc, return_inverse=True)
    columns = np.array([_hour_columns(h) for h in unique_hours.tolist()],
                       dtype=np.int64).reshape(-1, 10)
    per_row = columns[inverse.reshape(-1)]
    return LocalCalendar(*(per_row[:, j] for j in range(10)))
