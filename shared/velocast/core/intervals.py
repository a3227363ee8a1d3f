"""Prediction intervals of a regress model, carried in its card.

card["interval"] = {"level": 0.8, "lower_log": a, "upper_log": b, "horizons": [...]}:
the bounds are prediction + a and prediction + b in log1p space, a <= 0 <= b
(conformal offsets: quantiles of truth - prediction over the backtest folds,
velocast.train.calibration). "horizons", when present, holds one (a, b) per horizon
bucket (day 1, days 2-7, days 8-31 after the card's `trained_to`): errors grow with
the distance from the training data's end, so one pair for every horizon was too wide
the next day and too narrow a month later. A record past the last bucket gets the
last bucket's pair, one before the training end the first's; without the records'
instants (or a card without "horizons") the pooled (a, b) is used.
Standard library and numpy only: this ships in the regress bundle.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np

from velocast.core.local_time import PARIS


@dataclass(frozen=True)
class Horizon:
    name: str
    last_day: int      # day 1 = the first local day after the training rows


HORIZONS = (Horizon("day 1", 1), Horizon("days 2-7", 7), Horizon("days 8-31", 31))


def local_day_index(epoch_seconds, first_day: dt.date) -> np.ndarray:
    """1 for instants on `first_day` (Paris local), 2 the day after, 0 the day before..."""
    epoch = np.asarray(epoch_seconds, dtype=np.float64).reshape(-1)
    hours, inverse = np.unique(np.floor(epoch / 3600.0).astype(np.int64), return_inverse=True)
    ordinal = first_day.toordinal()
    per_hour = np.array([dt.datetime.fromtimestamp(h * 3600, tz=PARIS).date().toordinal() - ordinal
                         for h in hours.tolist()], dtype=np.int64)
    return per_hour[inverse.reshape(-1)] + 1


def horizon_bucket(epoch_seconds, first_day: dt.date) -> np.ndarray:
    """Index into HORIZONS of each instant, counted from `first_day` (day 1)."""
    days = local_day_index(epoch_seconds, first_day)
    edges = np.array([h.last_day for h in HORIZONS[:-1]])
    return np.searchsorted(edges, days, side="left")


@dataclass(frozen=True)
class Interval:
    level: float
    lower_log: float
    upper_log: float
    # Per HORIZONS bucket (lower, upper) and the first local day after the training rows;
    # None: one pair for every horizon.
    horizons: tuple[tuple[float, float], ...] | None = None
    first_day: dt.date | None = None

    def offsets(self, epoch_seconds=None) -> tuple[np.ndarray | float, np.ndarray | float]:
        if self.horizons is None or self.first_day is None or epoch_seconds is None:
            return self.lower_log, self.upper_log
        bucket = horizon_bucket(epoch_seconds, self.first_day)
        pairs = np.array(self.horizons, dtype=np.float64)
        return pairs[bucket, 0], pairs[bucket, 1]

    def bounds(self, log_prediction: np.ndarray,
               epoch_seconds=None) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper counts (never negative) around log1p predictions, per
        record's horizon when its instant is given."""
        log_prediction = np.asarray(log_prediction, dtype=np.float64)
        low, high = self.offsets(epoch_seconds)
        return (np.clip(np.expm1(log_prediction + low), 0.0, None),
                np.clip(np.expm1(log_prediction + high), 0.0, None))


def _number(spec: dict, name: str) -> float:
    value = spec.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"card interval {name} must be a finite number, got {value!r}")
    return float(value)


def _pair(spec: dict) -> tuple[float, float]:
    lower, upper = _number(spec, "lower_log"), _number(spec, "upper_log")
    if not lower <= 0 <= upper:
        raise ValueError(f"card interval needs lower_log <= 0 <= upper_log, got {lower}, {upper}")
    return lower, upper


def _horizons(card: dict, spec: dict) -> tuple[tuple | None, dt.date | None]:
    buckets = spec.get("horizons")
    if buckets is None:
        return None, None
    if not isinstance(buckets, list) or len(buckets) != len(HORIZONS) or \
            not all(isinstance(b, dict) for b in buckets):
        raise ValueError(f"card interval horizons must be {len(HORIZONS)} objects")
    for bucket, horizon in zip(buckets, HORIZONS):
        if bucket.get("last_day") != horizon.last_day:
            raise ValueError(f"card interval horizons must end on days "
                             f"{[h.last_day for h in HORIZONS]}")
    try:
        first_day = dt.date.fromisoformat(str(card.get("trained_to"))) + dt.timedelta(days=1)
    except ValueError:
        raise ValueError("card interval horizons need the card's trained_to date") from None
    return tuple(_pair(b) for b in buckets), first_day


def from_card(card: dict) -> Interval | None:
    """The card's interval, None for a card without one (models published before
    intervals existed); ValueError for a malformed one, so such a model is refused."""
    spec = card.get("interval")
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise ValueError("card interval must be an object")
    level = _number(spec, "level")
    if not 0 < level < 1:
        raise ValueError(f"card interval level must be in (0, 1), got {level!r}")
    lower, upper = _pair(spec)
    horizons, first_day = _horizons(card, spec)
    return Interval(level, lower, upper, horizons, first_day)
