"""A counter's recent level, measured so that it cannot mislead (issue 22).

The offset regressors predict log1p(count) - counter_recent, and the table freezes
counter_recent at the end of the training rows. Feature spec 2 took the plain mean of
log1p(count) over the counter's last 56 days of rows: weeks ending in the summer
holidays, or the quarter counts of a half-broken sensor, were read as the counter's
level and applied to a return to work. Here the level is the counter's long-run mean
plus a *shift*:

- measured on each counter-day's deviation from the counter's own profile (day type,
  hour), so a window rich in Sundays is not read as a drop;
- over the RECENT_DAYS that end on the counter's last usable *school-term* day: a
  holiday tail (and the days after it, which every forecast is) does not move it;
- outage days (no count at all: dropped before, or a daily mean more than
  OUTAGE_LOG below the profile: under 30 % of the usual traffic) are left out;
- relative to the mean deviation over all the counter's usable days, shrunk toward 0
  (the long-run level) by PRIOR_DAYS pseudo-days and clipped to +-MAX_SHIFT, so a
  counter with few recent days, or odd ones, keeps about its long-run level.

Transition backtest (6 folds, gbdt, RMSE log1p): spec 2's mean 0.592, this 0.578;
per-group medians (working day / weekend x term / holidays, holidays compared with
holidays) 0.582 to 0.589 (docs/forecast-quality.md).
Standard library and numpy only (features.py calls it when it fits a table).
"""

from __future__ import annotations

import numpy as np

from velocast.core.local_time import local_calendar

RECENT_DAYS = 56
PRIOR_DAYS = 3.0           # pseudo-days of "no change" the window's days are weighed against
MAX_SHIFT = 1.0            # log1p units: a factor of 2.7 either way
OUTAGE_LOG = -1.2          # a day this far below the profile is a partial outage


def recent_shift(counter_idx: np.ndarray, n: int, log_counts: np.ndarray, expected: np.ndarray,
                 local_day: np.ndarray, school_holiday: np.ndarray) -> np.ndarray:
    """Per counter, recent minus long-run level in log1p units (see the module doc).

    `expected`: each row's profile value (the counter's mean log1p for that day type
    and hour); `local_day`: each row's local date ordinal; `school_holiday`: 0/1."""
    if not len(local_day):
        return np.zeros(n)
    # Counter-days: mean deviation from the profile, and whether school was on.
    first_day = int(local_day.min())
    span = int(local_day.max()) - first_day + 1
    cells, inverse = np.unique(counter_idx.astype(np.int64) * span + (local_day - first_day),
                               return_inverse=True)
    inverse = inverse.reshape(-1)
    deviation = np.bincount(inverse, weights=log_counts - expected) / np.bincount(inverse)
    counter, day = cells // span, cells % span
    holiday = np.zeros(len(cells), dtype=bool)
    holiday[inverse] = school_holiday.astype(bool)
    usable = deviation > OUTAGE_LOG
    # The window ends on the counter's last usable term day (its last usable day if none).
    anchor = np.full(n, -1)
    np.maximum.at(anchor, counter[usable & ~holiday], day[usable & ~holiday])
    last = np.full(n, -1)
    np.maximum.at(last, counter[usable], day[usable])
    anchor = np.where(anchor >= 0, anchor, last)
    window = usable & (day > anchor[counter] - RECENT_DAYS) & (day <= anchor[counter])
    count = np.bincount(counter[window], minlength=n)
    recent = np.bincount(counter[window], weights=deviation[window], minlength=n) / np.maximum(count, 1)
    overall = np.bincount(counter[usable], weights=deviation[usable], minlength=n) / \
        np.maximum(np.bincount(counter[usable], minlength=n), 1)
    shift = np.clip(recent - overall, -MAX_SHIFT, MAX_SHIFT)
    return shift * count / (count + PRIOR_DAYS)


def partial_outage_rows(names: np.ndarray, epoch: np.ndarray, counts: np.ndarray,
                        usable: np.ndarray) -> np.ndarray:
    """True for the rows of counter-days whose mean log1p(count) is more than
    OUTAGE_LOG below the counter's profile (mean log1p per day type and hour over the
    `usable` rows): a half-broken sensor, or a dip no other day of the counter had."""
    calendar = local_calendar(epoch)
    _, counter = np.unique(names, return_inverse=True)
    counter = counter.reshape(-1)
    log_counts = np.log1p(np.asarray(counts, dtype=np.float64))
    cell = (counter * 3 + calendar.day_type) * 24 + calendar.hour
    size = (counter.max() + 1) * 72
    profile = np.bincount(cell[usable], weights=log_counts[usable], minlength=size) / \
        np.maximum(np.bincount(cell[usable], minlength=size), 1)
    first_day = int(calendar.day.min())
    span = int(calendar.day.max()) - first_day + 1
    days, inverse = np.unique(counter * span + calendar.day - first_day, return_inverse=True)
    inverse = inverse.reshape(-1)
    deviation = np.bincount(inverse[usable], weights=(log_counts - profile[cell])[usable],
                            minlength=len(days)) / np.maximum(np.bincount(inverse[usable],
                                                                          minlength=len(days)), 1)
    return usable & (deviation[inverse] < OUTAGE_LOG)
