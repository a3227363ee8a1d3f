"""Paris calendar facts the features need: public holidays, zone C school holidays,
and the 2020-2021 COVID restrictions that shaped the training data.

Standard library only: this module ships in every function bundle.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

D = dt.date

# Zone C (Paris) school holidays as [first day off, day classes resume), from the
# Education ministry's published calendars. Holidays start after class on the
# Saturday, so the Saturday is the first day off.
_SCHOOL_HOLIDAYS_ZONE_C: tuple[tuple[dt.date, dt.date], ...] = (
    (D(2017, 10, 21), D(2017, 11, 6)), (D(2017, 12, 23), D(2018, 1, 8)),
    (D(2018, 2, 17), D(2018, 3, 5)), (D(2018, 4, 14), D(2018, 4, 30)),
    (D(2018, 7, 7), D(2018, 9, 3)),
    (D(2018, 10, 20), D(2018, 11, 5)), (D(2018, 12, 22), D(2019, 1, 7)),
    (D(2019, 2, 23), D(2019, 3, 11)), (D(2019, 4, 20), D(2019, 5, 6)),
    (D(2019, 7, 6), D(2019, 9, 2)),
    (D(2019, 10, 19), D(2019, 11, 4)), (D(2019, 12, 21), D(2020, 1, 6)),
    (D(2020, 2, 8), D(2020, 2, 24)), (D(2020, 4, 4), D(2020, 4, 20)),
    (D(2020, 7, 4), D(2020, 9, 1)),
    (D(2020, 10, 17), D(2020, 11, 2)), (D(2020, 12, 19), D(2021, 1, 4)),
    (D(2021, 2, 13), D(2021, 3, 1)), (D(2021, 4, 10), D(2021, 4, 26)),
    (D(2021, 7, 6), D(2021, 9, 2)),
    (D(2021, 10, 23), D(2021, 11, 8)), (D(2021, 12, 18), D(2022, 1, 3)),
    (D(2022, 2, 19), D(2022, 3, 7)), (D(2022, 4, 23), D(2022, 5, 9)),
    (D(2022, 7, 7), D(2022, 9, 1)),
    (D(2022, 10, 22), D(2022, 11, 7)), (D(2022, 12, 17), D(2023, 1, 3)),
    (D(2023, 2, 18), D(2023, 3, 6)), (D(2023, 4, 22), D(2023, 5, 9)),
    (D(2023, 7, 8), D(2023, 9, 4)),
    (D(2023, 10, 21), D(2023, 11, 6)), (D(2023, 12, 23), D(2024, 1, 8)),
    (D(2024, 2, 10), D(2024, 2, 26)), (D(2024, 4, 6), D(2024, 4, 22)),
    (D(2024, 7, 6), D(2024, 9, 2)),
    (D(2024, 10, 19), D(2024, 11, 4)), (D(2024, 12, 21), D(2025, 1, 6)),
    (D(2025, 2, 15), D(2025, 3, 3)), (D(2025, 4, 12), D(2025, 4, 28)),
    (D(2025, 7, 5), D(2025, 9, 1)),
    (D(2025, 10, 18), D(2025, 11, 3)), (D(2025, 12, 20), D(2026, 1, 5)),
    (D(2026, 2, 21), D(2026, 3, 9)), (D(2026, 4, 18), D(2026, 5, 4)),
    (D(2026, 7, 4), D(2026, 9, 1)),
)
_TABLE_START = D(2017, 9, 1)
# First day the table above does not cover (later days: the published calendar, else a
# rule; advisories warn from here on).
TABLE_END = D(2026, 9, 1)

# Lockdowns in Paris: [first day, day lifted).
_LOCKDOWNS = (
    (D(2020, 3, 17), D(2020, 5, 11)),
    (D(2020, 10, 30), D(2020, 12, 15)),
    (D(2021, 4, 3), D(2021, 5, 3)),
)
# Evening curfews in Paris: [first day, day lifted, curfew start hour); each ran to 06:00.
_CURFEWS = (
    (D(2020, 10, 17), D(2020, 10, 30), 21),
    (D(2020, 12, 15), D(2021, 1, 16), 20),
    (D(2021, 1, 16), D(2021, 3, 20), 18),
    (D(2021, 3, 20), D(2021, 5, 19), 19),
    (D(2021, 5, 19), D(2021, 6, 9), 21),
    (D(2021, 6, 9), D(2021, 6, 20), 23),
)


def easter_sunday(year: int) -> dt.date:
    """Gregorian Easter (anonymous Gregorian algorithm)."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    l_ = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * l_) // 451
    month, day = divmod(h + l_ - 7 * m + 114, 31)
    return D(year, month, day + 1)


@lru_cache(maxsize=256)
def public_holidays(year: int) -> frozenset[dt.date]:
    easter = easter_sunday(year)
    return frozenset({
        D(year, 1, 1), D(year, 5, 1), D(year, 5, 8), D(year, 7, 14),
        D(year, 8, 15), D(year, 11, 1), D(year, 11, 11), D(year, 12, 25),
        easter + dt.timedelta(days=1),   # Easter Monday
        easter + dt.timedelta(days=39),  # Ascension
        easter + dt.timedelta(days=50),  # Whit Monday
    })


def is_public_holiday(day: dt.date) -> bool:
    return day in public_holidays(day.year)


def is_bridge_day(day: dt.date) -> bool:
    """A Monday before a Tuesday holiday or a Friday after a Thursday holiday ("pont"):
    many people take it off, so traffic looks like a holiday's."""
    weekday = day.weekday()
    if weekday == 0:
        return is_public_holiday(day + dt.timedelta(days=1))
    if weekday == 4:
        return is_public_holiday(day - dt.timedelta(days=1))
    return False


@lru_cache(maxsize=1)
def _published_zone_c() -> tuple[dt.date, frozenset[dt.date]]:
    """Zone C holidays after the table, from the vacances-scolaires-france package's CSV
    (it ships in the wheel: no network), read on the first date past the table only.
    Read directly rather than through its SchoolHolidayDates class, which parses every
    row since 1990 with strptime: 0.67 s against 0.02 s here, both measured on a loaded
    2-core machine (load average 10), once per instance."""
    import importlib.util
    import os

    # find_spec locates the package without running it: importing it (csv, re) and
    # importlib.resources cost 0.14 s of the first request on a loaded machine.
    spec = importlib.util.find_spec("vacances_scolaires_france")
    try:
        with open(os.path.join(os.path.dirname(spec.origin), "data", "data.csv"),
                  encoding="utf-8") as f:
            text = f.read()
    except (AttributeError, TypeError, OSError):  # pragma: no cover - pinned dependency
        return TABLE_END, frozenset()
    first, last, days = TABLE_END.isoformat(), "", set()
    # Rows: date,vacances_zone_a,vacances_zone_b,vacances_zone_c,nom_vacances, sorted by
    # date: only the ~800 rows past the table are split, not the 14,000 since 1990.
    start = text.find("\n" + first)
    for line in text[start + 1:].splitlines() if start >= 0 else ():
        day, zone_a, zone_b, zone_c = line.split(",", 4)[:4]
        if "True" in (zone_a, zone_b, zone_c):
            last = day
            if zone_c == "True" and day >= first:
                days.add(dt.date.fromisoformat(day))
    # Unpublished dates are rows of False: the calendar is known up to the end of the
    # last holidays it lists (the summer of its last school year).
    until = dt.date.fromisoformat(last) + dt.timedelta(days=1) if last else TABLE_END
    return max(TABLE_END, until), frozenset(days)


def school_calendar_until() -> dt.date:
    """First day for which zone C school holidays are not published (guessed by rule)."""
    return _published_zone_c()[0]


def is_school_holiday(day: dt.date) -> bool:
    if _TABLE_START <= day < TABLE_END:
        return any(start <= day < end for start, end in _SCHOOL_HOLIDAYS_ZONE_C)
    if TABLE_END <= day:
        until, published = _published_zone_c()
        if day < until:
            return day in published
    # Outside the published calendars, the two periods that never move much: summer
    # (early July to the end of August) and Christmas.
    return (day.month == 7 and day.day >= 5) or day.month == 8 or \
        (day.month == 12 and day.day >= 20) or (day.month == 1 and day.day <= 3)


def is_lockdown(day: dt.date) -> bool:
    return any(start <= day < end for start, end in _LOCKDOWNS)


def curfew_start_hour(day: dt.date) -> int | None:
    for start, end, hour in _CURFEWS:
        if start <= day < end:
            return hour
    return None


def is_curfew(day: dt.date, hour: int) -> bool:
    """True when a curfew was in force at that local hour (evening to 06:00; the early
    hours belong to the curfew that began the evening before)."""
    if hour < 6:
        return curfew_start_hour(day - dt.timedelta(days=1)) is not None
    start = curfew_start_hour(day)
    return start is not None and hour >= start
