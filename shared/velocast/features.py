"""The feature module: the single source of truth for what the models see.

Training (`velocast.train`) and serving (the two functions) both call
`build_matrix`; nothing else computes a feature. Runtime code: standard library and
numpy only.

Inputs are arrays of counter names, UTC instants (epoch seconds), and coordinates
(NaN when absent). Calendar features are computed in Europe/Paris local time, so an
instant given with any UTC offset lands on the right local hour across DST changes.
"""

from __future__ import annotations

import datetime as dt
import math
import unicodedata
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np

from velocast import paris_calendar as cal

# Bump when a feature's meaning, order or the counter table changes: a function
# refuses a model trained with another version.
FEATURE_SPEC_VERSION = "2"

FEATURE_NAMES: tuple[str, ...] = (
    "hour",
    "hour_sin",
    "hour_cos",
    "weekday",
    "day_type",            # 0 working day, 1 Saturday, 2 Sunday or public holiday
    "doy_sin",
    "doy_cos",
    "public_holiday",
    "bridge_day",
    "school_holiday",
    "lockdown",
    "curfew",
    "counter_log_mean",    # log1p of the counter's mean hourly count in training
    "counter_profile",     # counter's mean log1p(count) for this day type and hour
    "profile_vs_mean",     # counter_profile - counter_log_mean: busy hour or not
    "days",                # days since 2020-01-01, clipped to the training range
    "counter_recent",      # counter's mean log1p(count) over its last RECENT_DAYS of training
)
N_FEATURES = len(FEATURE_NAMES)
# The regressors predict log1p(count) - counter_recent (the ONNX graph adds it back),
# so they learn each counter's shape around its latest level. Chosen on the backtest
# mean (velocast.train.backtest, 3 folds): 0.772 -> 0.697 RMSE log1p with "days";
# 14 days of level beat 28 (0.710) and 56.
RECENT_DAYS = 56
DAY_ZERO = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc).timestamp()
DAY_TYPES = 3
PARIS = ZoneInfo("Europe/Paris")

# How many known counters an unknown one borrows its statistics from.
NEIGHBOURS = 4
# ... and how far away the nearest of them may be. The models learnt the Paris
# counters: far from them they extrapolate wildly (the nn regressor's log count
# overflowed to infinity for a counter at (0, 0)), so such a counter is refused
# (OutOfAreaError) rather than guessed.
MAX_NEIGHBOUR_KM = 20.0
KM_PER_DEGREE = 111.195


def days_since_zero(epoch_seconds) -> np.ndarray:
    return (np.asarray(epoch_seconds, dtype=np.float64) - DAY_ZERO) / 86400.0


def counter_key(name: str) -> str:
    """Counter names match regardless of case, Unicode form and spacing."""
    return " ".join(unicodedata.normalize("NFC", name).casefold().split())


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

    @property
    def day_type(self) -> np.ndarray:
        return np.where((self.weekday == 6) | (self.public_holiday == 1), 2,
                        np.where(self.weekday == 5, 1, 0)).astype(np.int64)


def local_calendar(epoch_seconds: np.ndarray) -> LocalCalendar:
    """Calendar columns for UTC instants, computed once per distinct hour: a year of
    hourly rows holds fewer than 9,000 distinct hours, so the Python loop is cheap."""
    epoch = np.asarray(epoch_seconds, dtype=np.float64)
    hours_utc = np.floor(epoch / 3600.0).astype(np.int64)
    unique_hours, inverse = np.unique(hours_utc, return_inverse=True)
    columns = np.empty((len(unique_hours), 9), dtype=np.int64)
    for i, hour_utc in enumerate(unique_hours.tolist()):
        local = dt.datetime.fromtimestamp(hour_utc * 3600, tz=PARIS)
        day = local.date()
        leap = day.year % 4 == 0 and (day.year % 100 != 0 or day.year % 400 == 0)
        columns[i] = (
            local.hour,
            day.weekday(),
            day.timetuple().tm_yday,
            366 if leap else 365,
            cal.is_public_holiday(day),
            cal.is_bridge_day(day),
            cal.is_school_holiday(day),
            cal.is_lockdown(day),
            cal.is_curfew(day, local.hour),
        )
    per_row = columns[inverse.reshape(-1)]
    return LocalCalendar(*(per_row[:, j] for j in range(9)))


@dataclass
class CounterTable:
    """What the features know of each counter seen in training. It travels in the
    model card, so a function needs nothing but the card to build features."""

    names: list[str]
    latitude: np.ndarray
    longitude: np.ndarray
    mean_count: np.ndarray       # the affluence threshold of the old system
    profile: np.ndarray          # (counters, DAY_TYPES, 24) mean log1p(count)
    recent_log_mean: np.ndarray  # mean log1p(count) over the counter's last RECENT_DAYS
    days_range: tuple[float, float]   # "days" of the first and last training rows

    def __post_init__(self) -> None:
        self._index = {counter_key(n): i for i, n in enumerate(self.names)}

    @property
    def log_mean(self) -> np.ndarray:
        return np.log1p(self.mean_count)

    def __contains__(self, name: str) -> bool:
        return counter_key(name) in self._index

    def index_of(self, name: str) -> int | None:
        return self._index.get(counter_key(name))

    @classmethod
    def fit(cls, names, epoch_seconds, latitude, longitude, counts) -> "CounterTable":
        names = np.asarray(names, dtype=object)
        counts = np.asarray(counts, dtype=np.float64)
        latitude = np.asarray(latitude, dtype=np.float64)
        longitude = np.asarray(longitude, dtype=np.float64)
        calendar = local_calendar(epoch_seconds)
        day_type, hour = calendar.day_type, calendar.hour
        unique_names, counter_idx = np.unique(names, return_inverse=True)
        n = len(unique_names)
        log_counts = np.log1p(counts)
        mean_count = np.bincount(counter_idx, weights=counts, minlength=n) / \
            np.maximum(np.bincount(counter_idx, minlength=n), 1)
        cell = (counter_idx * DAY_TYPES + day_type) * 24 + hour
        sums = np.bincount(cell, weights=log_counts, minlength=n * DAY_TYPES * 24)
        seen = np.bincount(cell, minlength=n * DAY_TYPES * 24)
        profile = np.divide(sums, seen, out=np.full(sums.shape, np.nan), where=seen > 0)
        profile = profile.reshape(n, DAY_TYPES, 24)
        # A counter installed late may lack a (day type, hour) cell: borrow the mean
        # of its log counts rather than leave a hole.
        counter_log_mean = np.bincount(counter_idx, weights=log_counts, minlength=n) / \
            np.maximum(np.bincount(counter_idx, minlength=n), 1)
        holes = np.isnan(profile)
        profile[holes] = np.broadcast_to(counter_log_mean[:, None, None], profile.shape)[holes]
        first_row = np.unique(counter_idx, return_index=True)[1]
        # Each counter's own last days: a counter that stopped early keeps the level it
        # had when it last counted rather than none.
        epoch = np.asarray(epoch_seconds, dtype=np.float64)
        last_seen = np.full(n, -np.inf)
        np.maximum.at(last_seen, counter_idx, epoch)
        recent = epoch > last_seen[counter_idx] - RECENT_DAYS * 86400.0
        recent_log_mean = np.bincount(counter_idx[recent], weights=log_counts[recent],
                                      minlength=n) / \
            np.maximum(np.bincount(counter_idx[recent], minlength=n), 1)
        days = days_since_zero(epoch)
        return cls(
            names=[str(x) for x in unique_names],
            latitude=latitude[first_row],
            longitude=longitude[first_row],
            mean_count=mean_count,
            profile=profile,
            recent_log_mean=recent_log_mean,
            days_range=(float(days.min()), float(days.max())),
        )

    def to_dict(self) -> dict:
        # Full precision, never rounded: tree thresholds can sit exactly on a profile
        # value, so a one-ulp change flips splits and the served model would no longer
        # be the one whose parity was checked. JSON floats round-trip exactly.
        return {
            "day_types": ["working day", "saturday", "sunday or public holiday"],
            "days_range": list(self.days_range),
            "recent_days": RECENT_DAYS,
            "counters": {
                name: {
                    "latitude": float(self.latitude[i]),
                    "longitude": float(self.longitude[i]),
                    "mean_count": float(self.mean_count[i]),
                    "recent_log_mean": float(self.recent_log_mean[i]),
                    "profile": self.profile[i].tolist(),
                }
                for i, name in enumerate(self.names)
            },
        }

    @classmethod
    def from_dict(cls, data: dict) -> "CounterTable":
        counters = data["counters"]
        names = list(counters)
        return cls(
            names=names,
            latitude=np.array([counters[n]["latitude"] for n in names], dtype=np.float64),
            longitude=np.array([counters[n]["longitude"] for n in names], dtype=np.float64),
            mean_count=np.array([counters[n]["mean_count"] for n in names], dtype=np.float64),
            profile=np.array([counters[n]["profile"] for n in names], dtype=np.float64),
            recent_log_mean=np.array([counters[n]["recent_log_mean"] for n in names],
                                     dtype=np.float64),
            days_range=(float(data["days_range"][0]), float(data["days_range"][1])),
        )

    def neighbour_weights(self, latitude: float, longitude: float) -> np.ndarray:
        """Inverse-distance weights over the nearest known counters, for a counter
        the models never saw."""
        # Equirectangular distance is exact enough across one city.
        dx = (self.longitude - longitude) * math.cos(math.radians(latitude))
        dy = self.latitude - latitude
        distance = np.hypot(dx, dy)
        nearest = np.argsort(distance, kind="stable")[:NEIGHBOURS]
        weights = np.zeros(len(self.names))
        weights[nearest] = 1.0 / np.maximum(distance[nearest], 1e-4)
        return weights / weights.sum()

    def nearest_km(self, latitude: float, longitude: float) -> float:
        """Distance to the nearest known counter, in km (same approximation)."""
        dx = (self.longitude - longitude) * math.cos(math.radians(latitude))
        dy = self.latitude - latitude
        return float(np.hypot(dx, dy).min()) * KM_PER_DEGREE


class UnknownCounterError(ValueError):
    """A counter the models never saw, given without coordinates."""

    def __init__(self, row: int, name: str):
        super().__init__(f"counter {name!r} is not known and no coordinates were given")
        self.row = row
        self.name = name


class OutOfAreaError(ValueError):
    """An unknown counter farther than MAX_NEIGHBOUR_KM from every known one."""

    def __init__(self, row: int, name: str, km: float):
        super().__init__(f"counter {name!r} is {km:,.0f} km from the nearest known counter; "
                         f"the models cover counters within {MAX_NEIGHBOUR_KM:g} km of the "
                         "ones they were trained on")
        self.row = row
        self.name = name
        self.km = km


@dataclass(frozen=True)
class FeatureBatch:
    matrix: np.ndarray                  # float32, (rows, N_FEATURES)
    unknown_counters: tuple[int, ...]   # rows predicted from their coordinates
    mean_count: np.ndarray              # each row's counter mean (affluence threshold)


def build_matrix(names, epoch_seconds, latitude, longitude, table: CounterTable) -> FeatureBatch:
    """The float32 matrix every model takes.

    A known counter uses its training statistics and coordinates; an unknown one
    borrows its neighbours' statistics through its coordinates; an unknown one
    without coordinates raises UnknownCounterError naming the row, one farther than
    MAX_NEIGHBOUR_KM from every known counter OutOfAreaError.
    """
    names = list(names)
    latitude = np.asarray(latitude, dtype=np.float64).reshape(-1)
    longitude = np.asarray(longitude, dtype=np.float64).reshape(-1)
    calendar = local_calendar(epoch_seconds)
    hour, day_type = calendar.hour, calendar.day_type

    index_by_name: dict[str, int | None] = {}
    counter_index = np.empty(len(names), dtype=np.int64)
    for row, name in enumerate(names):
        if name not in index_by_name:
            index_by_name[name] = table.index_of(name)
        index = index_by_name[name]
        counter_index[row] = -1 if index is None else index
    known = counter_index >= 0
    known_index = counter_index[known]
    log_mean = np.empty(len(names))
    recent = np.empty(len(names))
    profile = np.empty(len(names))
    log_mean[known] = table.log_mean[known_index]
    recent[known] = table.recent_log_mean[known_index]
    profile[known] = table.profile[known_index, day_type[known], hour[known]]

    unknown = np.flatnonzero(~known)
    borrowed: dict[tuple[float, float], np.ndarray] = {}
    for row in unknown.tolist():
        lat, lon = latitude[row], longitude[row]
        if not (math.isfinite(lat) and math.isfinite(lon)):
            raise UnknownCounterError(row, names[row])
        key = (float(lat), float(lon))
        if key not in borrowed:
            km = table.nearest_km(lat, lon)
            if km > MAX_NEIGHBOUR_KM:
                raise OutOfAreaError(row, names[row], km)
            borrowed[key] = table.neighbour_weights(lat, lon)
        weights = borrowed[key]
        # Statistics are averaged in log space, like the profiles themselves.
        log_mean[row] = weights @ table.log_mean
        recent[row] = weights @ table.recent_log_mean
        profile[row] = weights @ table.profile[:, day_type[row], hour[row]]

    day_angle = 2 * np.pi * (calendar.day_of_year - 1) / calendar.days_in_year
    hour_angle = 2 * np.pi * hour / 24
    matrix = np.column_stack([
        hour,
        np.sin(hour_angle),
        np.cos(hour_angle),
        calendar.weekday,
        day_type,
        np.sin(day_angle),
        np.cos(day_angle),
        calendar.public_holiday,
        calendar.bridge_day,
        calendar.school_holiday,
        calendar.lockdown,
        calendar.curfew,
        log_mean,
        profile,
        profile - log_mean,
        # Clipped: a tree sees the same thing beyond its last split, but the nn would
        # extrapolate a date years away linearly.
        np.clip(days_since_zero(epoch_seconds), *table.days_range),
        recent,
    ]).astype(np.float32)
    return FeatureBatch(matrix=matrix, unknown_counters=tuple(unknown.tolist()),
                        mean_count=np.expm1(log_mean))
