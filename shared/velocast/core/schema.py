"""Request records: the old system's snake_case keys and the export's French headers,
validated into the `velocast.core.features.Records` that `build_matrix` takes.

Every problem names its record, its field and why, so a client can fix its batch.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import re
import unicodedata
from dataclasses import dataclass

import numpy as np

from velocast.core.errors import InvalidRecords, InvalidRequest
from velocast.core.features import COORDINATES, COUNTER, DATE, Records
from velocast.core.local_time import PARIS

MAX_NAME_LENGTH = 200
MAX_FIELD_LENGTH = 200
# The service predicts traffic, not history or the far future; this also keeps
# datetime arithmetic away from its limits.
EARLIEST_YEAR, LATEST_YEAR = 2000, 2100
MAX_ERRORS_REPORTED = 50


@dataclass(frozen=True)
class FieldError:
    record: int
    field: str
    reason: str

    def to_dict(self) -> dict:
        return {"record": self.record, "field": self.field, "reason": self.reason}


def _normalize_key(key: str) -> str:
    decomposed = unicodedata.normalize("NFKD", key)
    ascii_only = "".join(c for c in decomposed if not unicodedata.combining(c))
    return re.sub(r"[^a-z0-9]+", "_", ascii_only.casefold()).strip("_")


# Clients send the same handful of keys in every record: without the cache, normalizing
# them was ~75% of parse_records on a 1,000-record batch (bench/README.md). Only short
# keys are cached, so odd keys cannot make the cache hold much memory.
_normalize_key_cached = functools.lru_cache(maxsize=1024)(_normalize_key)
_CACHED_KEY_LENGTH = 100


def normalize_key(key: str) -> str:
    """'Coordonnées géographiques' and 'coordonnées_géographiques' both become
    'coordonnees_geographiques'."""
    if len(key) <= _CACHED_KEY_LENGTH:
        return _normalize_key_cached(key)
    return _normalize_key(key)


def _missing_value(name: str) -> None:
    # json.dumps writes empty pandas cells as the bare tokens NaN/Infinity: clients of the
    # old system send them, so they read as missing values (null), never as numbers.
    return None


def _unique_keys(pairs: list) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):  # the check costs a len(); the search only when it fails
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"key {key[:100]!r} is given twice in one JSON object; "
                                 "give each key once")
            seen.add(key)
    return obj


def parse_json(raw: bytes):
    """A request body: JSON (RFC 8259) in UTF-8, a leading BOM ignored, each object's keys
    distinct (which of two values JSON parsers keep differs: the last one here, before,
    silently). ValueError names the problem."""
    if b"\x00" in raw[:4]:
        raise ValueError("body is UTF-16 or UTF-32; send it in UTF-8 (RFC 8259)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"body is not UTF-8: byte {exc.start} ({raw[exc.start:exc.start + 1]!r}); "
                         "send it in UTF-8 (RFC 8259)") from None
    try:
        return json.loads(text, parse_constant=_missing_value, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise ValueError("body is not valid JSON: nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"body is not valid JSON: {exc}") from None


# ASCII only: fromisoformat and float() also take other scripts' digits, '_' and a
# trailing NUL, which no client means.
_TIMESTAMP_CHARS = re.compile(r"[0-9:.,+\- TtZz]+")
_DATE_ONLY = re.compile(r"[0-9]{4}-?[0-9]{2}-?[0-9]{2}")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def parse_timestamp(value) -> tuple[float, str | None]:
    """UTC epoch seconds of an ISO 8601 timestamp, and a note when a local time was
    ambiguous. One without an offset is read as Paris local time, which is what the
    export and the old clients mean; a local time that does not exist (the spring DST
    gap) is an error."""
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO 8601 string, got {type(value).__name__}")
    text = value.strip()
    if not text or len(text) > 40:
        raise ValueError("expected an ISO 8601 timestamp such as 2025-05-17 18:00:00+02:00")
    if not _TIMESTAMP_CHARS.fullmatch(text):
        raise ValueError(f"{text[:40]!r} holds characters an ISO 8601 timestamp does not "
                         "(e.g. 2025-05-17 18:00:00+02:00)")
    if _DATE_ONLY.fullmatch(text):
        # fromisoformat reads a bare date as midnight; the service predicts an hour, so
        # a date alone is a mistake to name, not midnight to guess (issue 25).
        raise ValueError(f"{text!r} is a date without a time: give the hour, e.g. "
                         f"{text}T08:00:00+02:00")
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 timestamp "
                         "(e.g. 2025-05-17 18:00:00+02:00)") from None
    if not EARLIEST_YEAR <= moment.year <= LATEST_YEAR:
        raise ValueError(f"year {moment.year} is outside {EARLIEST_YEAR}-{LATEST_YEAR}")
    if moment.tzinfo is not None:
        return moment.timestamp(), None
    first, second = moment.replace(tzinfo=PARIS, fold=0), moment.replace(tzinfo=PARIS, fold=1)
    if first.utcoffset() == second.utcoffset():
        return first.timestamp(), None
    if first.astimezone(dt.timezone.utc).astimezone(PARIS).replace(tzinfo=None) != moment:
        raise ValueError(f"{text} does not exist in Paris (the clocks skip that hour); "
                         "give the UTC offset")
    return first.timestamp(), (f"{text} happens twice in Paris (the clocks go back); read "
                               f"as {first.isoformat()}, the first one: give the UTC offset "
                               "to choose")


def _coordinate(value) -> float:
    if isinstance(value, bool):
        raise ValueError("a coordinate must be a number")
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str) and len(value) <= 40 and _DECIMAL.fullmatch(value.strip()):
        number = float(value)
    else:
        raise ValueError("a coordinate must be a number")
    if not math.isfinite(number):
        raise ValueError("a coordinate must be finite")
    return number


# An object names its two members one way or the other, nothing else (openapi.yaml).
_COORDINATE_KEYS = ({"lat", "lon"}, {"latitude", "longitude"})


def parse_coordinates(value) -> tuple[float, float]:
    """'48.8672, 2.3501', [48.8672, 2.3501], {"lat": .., "lon": ..} or
    {"latitude": .., "longitude": ..}: latitude first, degrees (WGS 84)."""
    try:
        if isinstance(value, str):
            parts = value.split(",")
            if len(parts) != 2:
                raise ValueError
            lat, lon = (_coordinate(p.strip()) for p in parts)
        elif isinstance(value, (list, tuple)) and len(value) == 2:
            lat, lon = (_coordinate(v) for v in value)
        elif isinstance(value, dict) and set(value) in _COORDINATE_KEYS:
            lat = _coordinate(value.get("lat", value.get("latitude")))
            lon = _coordinate(value.get("lon", value.get("longitude")))
        else:
            raise ValueError
    except (ValueError, TypeError, OverflowError):
        # OverflowError: float() of a JSON integer beyond 1e308 (JSON integers have
        # any length), e.g. [1e400 written out as digits, 2.35]; was a 500.
        raise ValueError("expected 'latitude, longitude' in degrees, e.g. '48.8672, 2.3501', "
                         "[48.8672, 2.3501] or {\"lat\": 48.8672, \"lon\": 2.3501}") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValueError(f"({lat}, {lon}) is not a latitude, longitude pair")
    return lat, lon


def _conflicts(index: int, record: dict) -> list[FieldError]:
    seen: dict[str, object] = {}
    out = []
    for key, value in record.items():
        name = normalize_key(key)
        if name in seen and seen[name] != value and name in (COUNTER, DATE, COORDINATES):
            out.append(FieldError(index, name, "given twice (snake_case and export header) "
                                               "with different values"))
        seen[name] = value
    return out


def parse_records(records) -> Records:
    """Validate a list of request records; raises InvalidRecords listing every bad
    field, so one round trip shows the client all of its mistakes."""
    if not isinstance(records, list):
        raise InvalidRequest("'records' must be a list of objects",
                             [{"field": "records", "reason": f"got {type(records).__name__}"}])
    if not records:
        raise InvalidRequest("'records' is empty",
                             [{"field": "records", "reason": "send at least one record"}])
    parsed = Records()
    epochs, lats, lons = [], [], []
    errors: list[FieldError] = []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            errors.append(FieldError(index, "", f"expected an object, got {type(record).__name__}"))
            continue
        fields = {normalize_key(k): v for k, v in record.items() if isinstance(k, str)}
        if len(fields) < len(record):  # two keys name one field: fine if they agree
            errors.extend(_conflicts(index, record))
        name = fields.get(COUNTER)
        if not isinstance(name, str) or not name.strip():
            errors.append(FieldError(index, COUNTER, "required: the counter's name as a non-empty string"))
        elif len(name) > MAX_NAME_LENGTH:
            errors.append(FieldError(index, COUNTER, f"longer than {MAX_NAME_LENGTH} characters"))
        if DATE not in fields:
            errors.append(FieldError(index, DATE, "required: e.g. 2025-05-17 18:00:00+02:00"))
            epoch = math.nan
        else:
            try:
                epoch, note = parse_timestamp(fields[DATE])
            except ValueError as exc:
                errors.append(FieldError(index, DATE, str(exc)))
                epoch, note = math.nan, None
            if note:
                parsed.warnings.append({"record": index, "field": DATE, "message": note})
        lat = lon = math.nan
        if fields.get(COORDINATES) not in (None, ""):
            try:
                lat, lon = parse_coordinates(fields[COORDINATES])
            except ValueError as exc:
                errors.append(FieldError(index, COORDINATES, str(exc)))
        parsed.names.append(name.strip() if isinstance(name, str) else "")
        epochs.append(epoch)
        lats.append(lat)
        lons.append(lon)
    if errors:
        shown = errors[:MAX_ERRORS_REPORTED]
        more = f" (first {len(shown)} shown)" if len(errors) > len(shown) else ""
        first = shown[0]
        raise InvalidRecords(
            f"{len(errors)} invalid field(s){more}; first: record {first.record}, "
            f"field {first.field or '(record)'}: {first.reason}",
            [e.to_dict() for e in shown])
    parsed.epoch_seconds = np.array(epochs, dtype=np.float64)
    parsed.latitude = np.array(lats, dtype=np.float64)
    parsed.longitude = np.array(lons, dtype=np.float64)
    return parsed
