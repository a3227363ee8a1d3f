"""The feature module: the single source of truth for what the models see.

Training (`velocast.train`) and serving (the two functions) both call
`build_matrix`; nothing else computes a feature. Runtime code: standard library and
numpy only.

Input is one `Records` object: counter names, UTC instants (epoch seconds) and
coordinates (NaN when absent). Calendar features are computed in Europe/Paris local time, so an
instant given with any UTC offset lands on the right local hour across DST changes.
"""

from __future__ import annotations

import datetime as dt
import math
import unicodedata
from dataclasses import dataclass, field

import numpy as np

from velocast.core.errors import RecordError
from velocast.core.local_time import local_calendar
from velocast.core.recent_level import RECENT_DAYS, recent_shift

# Bump when a feature's meaning, order or the counter table changes: a function
# refuses a model trained with another version.
# 3: counter_recent is the long-run level plus a like-for-like recent shift (issue 22).
FEATURE_SPEC_VERSION = "3"

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
    "counter_recent",      # counter's mean log1p(count) + its recent shift (velocast.core.recent_level)
)
N_FEATURES = len(FEATURE_NAMES)
# Offset regressors learn log1p(count) - counter_recent; 3 backtest folds: 0.772 -> 0.685.
DAY_ZERO = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc).timestamp()
# The name of the one ONNX input, a float32 (rows, N_FEATURES) matrix: the exporter
# writes it, the functions check it before serving a model.
ONNX_INPUT_NAME = "features"
# The request fields the features read (snake_case; velocast.core.schema also takes the
# export's French headers).
COUNTER = "nom_du_compteur"
DATE = "date_et_heure_de_comptage"
COORDINATES = "coordonnees_geographiques"
DAY_TYPES = 3

# How many known counters an unknown one borrows its statistics from.
NEIGHBOURS = 4
# ... and how far away the nearest of them may be. The models learnt the Paris
# counters: far from them they extrapolate wildly (the nn regressor's log count
# overflowed to infinity for a counter at (0, 0)), so such a counter is refused
# (OutOfAreaError) rather than guessed.
MAX_NEIGHBOUR_KM = 20.0
KM_PER_DEGREE = 111.195
# A known counter given coordinates farther than this from its known place is predicted
# at its known place, with a warning: counters do not move, so the client's coordinates
# are probably wrong (0, 0 is a common placeholder).
MAX_KNOWN_OFFSET_KM = 0.5


def days_since_zero(epoch_seconds) -> np.ndarray:
    return (np.asarray(epoch_seconds, dtype=np.float64) - DAY_ZERO) / 86400.0


def counter_key(name: str) -> str:
    """Counter names match regardless of case, Unicode form and spacing."""
    return " ".join(unicodedata.normalize("NFC", name).casefold().split())


@dataclass
class CounterTable:
    """What the features know of each counter seen in training. It travels in the
    model card, so a function needs nothing but the card to build features."""

    names: list[str]
    latitude: np.ndarray
    longitude: np.ndarray
    mean_count: np.ndarray       # the affluence threshold of the old system
    profile: np.ndarray          # (counters, DAY_TYPES, 24) mean log1p(count)
    recent_log_mean: np.ndarray  # mean log1p(count) + its like-for-like recent shift (recent_level)
    days_range: tuple[float, float]   # "days" of the first and last training rows
    # Counter -> its newest training day when that day counted no bike at all (a likely
    # sensor outage the answer warns about: velocast.core.advisories); the retrain
    # records them in the card's counter_table.
    outages: dict[str, str] = field(default_factory=dict)

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
        epoch = np.asarray(epoch_seconds, dtype=np.float64)
        recent_log_mean = counter_log_mean + recent_shift(
            counter_idx, n, log_counts, profile[counter_idx, day_type, hour], calendar.day,
            calendar.school_holiday)
        days = days_since_zero(epoch)
        return cls(names=[str(x) for x in unique_names], latitude=latitude[first_row],
                   longitude=longitude[first_row], mean_count=mean_count, profile=profile,
                   recent_log_mean=recent_log_mean, days_range=(float(days.min()), float(days.max())))

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
        """The table a card carries; ValueError unless its shapes and values are usable."""
        counters = data["counters"]
        names = list(counters)
        table = cls(
            names=names,
            latitude=np.array([counters[n]["latitude"] for n in names], dtype=np.float64),
            longitude=np.array([counters[n]["longitude"] for n in names], dtype=np.float64),
            mean_count=np.array([counters[n]["mean_count"] for n in names], dtype=np.float64),
            profile=np.array([counters[n]["profile"] for n in names], dtype=np.float64),
            recent_log_mean=np.array([counters[n]["recent_log_mean"] for n in names], np.float64),
            days_range=(float(data["days_range"][0]), float(data["days_range"][1])),
            outages={str(k): str(v) for k, v in (data.get("outages") or {}).items()},
        )
        table.validate()
        return table

    def validate(self) -> None:
        """Raise ValueError unless every array has the shape build_matrix indexes and
        only finite values: a (n, 2, 24) profile answered 500 on Sundays only, a NaN
        table 200 with wrong numbers."""
        n = len(self.names)
        if n == 0:
            raise ValueError("counter table has no counter")
        expected = {"latitude": (n,), "longitude": (n,), "mean_count": (n,),
                    "recent_log_mean": (n,), "profile": (n, DAY_TYPES, 24)}
        for name, shape in expected.items():
            values = getattr(self, name)
            if values.shape != shape:
                raise ValueError(f"counter table {name} has shape {values.shape}, expected {shape}")
            if not np.isfinite(values).all():
                bad = self.names[int(np.flatnonzero(~np.isfinite(values).reshape(n, -1).all(1))[0])]
                raise ValueError(f"counter table {name} is not finite (counter {bad!r})")
        if (self.mean_count < 0).any():
            raise ValueError("counter table mean_count has negative values")
        if (np.abs(self.latitude) > 90).any() or (np.abs(self.longitude) > 180).any():
            raise ValueError("counter table has coordinates outside the globe")

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


class UnknownCounterError(RecordError):
    """A counter the models never saw, given without coordinates."""

    def __init__(self, row: int, name: str):
        super().__init__(row, COUNTER, f"counter {name!r} is not known and no coordinates were given",
                         f"unknown counter {name!r}; add '{COORDINATES}' so it can be predicted "
                         "from its neighbours")
        self.name = name


class OutOfAreaError(RecordError):
    """An unknown counter farther than MAX_NEIGHBOUR_KM from every known one."""

    def __init__(self, row: int, name: str, km: float):
        message = (f"counter {name!r} is {km:,.0f} km from the nearest known counter; the models "
                   f"cover counters within {MAX_NEIGHBOUR_KM:g} km of the ones they were trained on")
        super().__init__(row, COORDINATES, message, message)
        self.name = name
        self.km = km


@dataclass
class Records:
    """What the features read from a batch of records, training rows or request records
    alike: a new request field is added here and in `velocast.core.schema` only."""

    names: list[str] = field(default_factory=list)
    epoch_seconds: np.ndarray = field(default_factory=lambda: np.empty(0))   # UTC instants
    latitude: np.ndarray = field(default_factory=lambda: np.empty(0))        # NaN when absent
    longitude: np.ndarray = field(default_factory=lambda: np.empty(0))
    # Things a client should know about its records ({"record", "field", "message"}).
    warnings: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class FeatureBatch:
    matrix: np.ndarray                  # float32, (rows, N_FEATURES)
    unknown_counters: tuple[int, ...]   # rows predicted from their coordinates
    moved_counters: tuple[int, ...]     # known counters given coordinates far from their place
    mean_count: np.ndarray              # each row's counter mean (affluence threshold)


def build_matrix(records: Records, table: CounterTable) -> FeatureBatch:
    """The float32 matrix every model takes.

    A known counter uses its training statistics and coordinates; an unknown one
    borrows its neighbours' statistics through its coordinates; an unknown one
    without coordinates raises UnknownCounterError naming the row, one farther than
    MAX_NEIGHBOUR_KM from every known counter OutOfAreaError.
    """
    names = list(records.names)
    latitude = np.asarray(records.latitude, dtype=np.float64).reshape(-1)
    longitude = np.asarray(records.longitude, dtype=np.float64).reshape(-1)
    calendar = local_calendar(records.epoch_seconds)
    hour, day_type = calendar.hour, calendar.day_type

    # Looked up once per distinct name (a row-by-row loop was half of this function).
    index_by_name = {name: table.index_of(name) for name in set(names)}
    index_by_name = {name: -1 if i is None else i for name, i in index_by_name.items()}
    counter_index = np.fromiter(map(index_by_name.__getitem__, names), np.int64, len(names))
    known = counter_index >= 0
    known_index = counter_index[known]
    log_mean = np.empty(len(names))
    recent = np.empty(len(names))
    profile = np.empty(len(names))
    log_mean[known] = table.log_mean[known_index]
    recent[known] = table.recent_log_mean[known_index]
    profile[known] = table.profile[known_index, day_type[known], hour[known]]
    lat_out, lon_out = latitude.copy(), longitude.copy()
    lat_out[known] = table.latitude[known_index]
    lon_out[known] = table.longitude[known_index]
    with np.errstate(invalid="ignore"):
        offset_km = KM_PER_DEGREE * np.hypot(
            latitude - lat_out, (longitude - lon_out) * np.cos(np.radians(lat_out)))
    moved = np.flatnonzero(known & (offset_km > MAX_KNOWN_OFFSET_KM))

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
        # Clipped: the nn would extrapolate a date years away linearly.
        np.clip(days_since_zero(records.epoch_seconds), *table.days_range),
        recent,
    ]).astype(np.float32)
    return FeatureBatch(matrix=matrix, unknown_counters=tuple(unknown.tolist()),
                        moved_counters=tuple(moved.tolist()), mean_count=np.expm1(log_mean))
