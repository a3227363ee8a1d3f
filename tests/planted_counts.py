"""What the planted-counter tests share: a commuter's hourly profile and Paris-local
hours, from which each test writes its own year (holiday dips, outages, seasons)."""

from __future__ import annotations

import datetime as dt

import numpy as np

from velocast.core.local_time import PARIS

# A weekday's hourly shape on a commuting route: peaks at 8:00 and 17:00, night near 0.
COMMUTE = np.array([1, 1, 1, 1, 2, 6, 20, 60, 90, 50, 30, 30, 35, 30, 30, 35, 55, 90, 70,
                    40, 25, 15, 8, 3], dtype=np.float64) / 30


def hours(first: dt.date, stop: dt.date) -> np.ndarray:
    """Every hour from local midnight of `first` to before local midnight of `stop`."""
    start = dt.datetime.combine(first, dt.time(), tzinfo=PARIS).timestamp()
    end = dt.datetime.combine(stop, dt.time(), tzinfo=PARIS).timestamp()
    return np.arange(start, end, 3600.0)
