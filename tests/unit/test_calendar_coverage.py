"""A calendar that does not silently expire: public holidays checked against the
`holidays` package to 2040, zone C school holidays past the hand-kept table from
vacances-scolaires-france, and a warning on predictions past what is published."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import holidays
import pytest

from velocast.core import advisories
from velocast.core import paris_calendar as cal

D = dt.date


@pytest.mark.parametrize("year", range(2008, 2041))
def test_public_holidays_match_the_holidays_package(year):
    # From 2008: in 2005-2007 Whit Monday was a working day ("journée de solidarité"),
    # which the package knows and the computation does not (the data starts in 2020).
    assert cal.public_holidays(year) == frozenset(holidays.France(years=year))


def test_school_holidays_past_the_table_come_from_the_published_calendar():
    assert cal.school_calendar_until() >= D(2028, 8, 31)
    # Toussaint 2026 and winter 2027 in zone C (Education ministry calendar 2026-2027).
    assert cal.is_school_holiday(D(2026, 10, 20)) and not cal.is_school_holiday(D(2026, 11, 10))
    assert cal.is_school_holiday(D(2027, 7, 10)) and not cal.is_school_holiday(D(2027, 9, 10))


def epoch(day: D, hour: int = 8) -> float:
    return dt.datetime(day.year, day.month, day.day, hour, tzinfo=dt.timezone.utc).timestamp()


def test_a_date_past_the_published_calendar_gets_a_warning():
    table = SimpleNamespace(outages={})
    late = cal.school_calendar_until() + dt.timedelta(days=3)
    warnings = advisories.for_batch(["a", "b"], [epoch(D(2027, 5, 3)), epoch(late)], table)
    assert [(w["record"], w["field"]) for w in warnings] == [(1, "date_et_heure_de_comptage")]
    assert "guessed" in warnings[0]["message"]


def test_a_counter_whose_newest_day_was_all_zeros_gets_a_warning():
    table = SimpleNamespace(outages={"Quai d'Orsay E-O": "2021-07-13"})
    warnings = advisories.for_batch(["quai d'orsay  e-o", "Quai d'Orsay O-E"],
                                    [epoch(D(2025, 5, 3))] * 2, table)
    assert [(w["record"], w["field"]) for w in warnings] == [(0, "nom_du_compteur")]
    assert "2021-07-13" in warnings[0]["message"] and "outage" in warnings[0]["message"]
