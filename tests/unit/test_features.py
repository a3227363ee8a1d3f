"""The feature module, the Paris calendar and the request schema (the runtime side)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import unicodedata

import numpy as np
import pytest

from velocast.core import paris_calendar as cal
from velocast.core.features import (FEATURE_NAMES, FEATURE_SPEC_VERSION, CounterTable,
                                    UnknownCounterError, build_matrix, counter_key)
from velocast.core.local_time import PARIS, local_calendar
from velocast.core.errors import InvalidRecords, InvalidRequest, as_http
from velocast.core.schema import parse_records

COL = {name: i for i, name in enumerate(FEATURE_NAMES)}

# name, latitude, longitude, level
COUNTERS = (
    ("Quai d'Orsay E-O", 48.86288, 2.31179, 1.4),
    ("28 boulevard Diderot E-O", 48.846028, 2.375429, 1.0),
    ("20 Avenue de Clichy NO-SE", 48.88529, 2.32666, 0.6),
    ("6 rue Julia Bartet NE-SO", 48.82636, 2.30303, 0.15),
    ("Totem 64 Rue de Rivoli E-O", 48.85735, 2.35211, 2.4),
)


def epoch(iso: str) -> float:
    return dt.datetime.fromisoformat(iso).timestamp()


def local_hour(iso: str) -> int:
    return int(local_calendar(np.array([epoch(iso)])).hour[0])


@pytest.fixture(scope="module")
def table() -> CounterTable:
    """Five counters, three weeks of hourly counts with a commute shape."""
    start = epoch("2021-05-31T00:00:00+02:00")
    hours = np.arange(21 * 24)
    instants = start + 3600.0 * hours
    local = local_calendar(instants)
    shape = np.where(local.day_type == 0,
                     10 + 200 * np.exp(-0.5 * ((local.hour - 8.5) / 1.2) ** 2)
                     + 160 * np.exp(-0.5 * ((local.hour - 18) / 1.5) ** 2),
                     5 + 60 * np.exp(-0.5 * ((local.hour - 15) / 3) ** 2))
    rng = np.random.default_rng(1)
    names, epochs, lats, lons, counts = [], [], [], [], []
    for name, lat, lon, level in COUNTERS:
        names += [name] * len(instants)
        epochs.append(instants)
        lats += [lat] * len(instants)
        lons += [lon] * len(instants)
        counts.append(rng.poisson(shape * level))
    return CounterTable.fit(names, np.concatenate(epochs), lats, lons, np.concatenate(counts))


def records(style: str = "snake") -> list[dict]:
    keys = {"snake": ("nom_du_compteur", "date_et_heure_de_comptage", "coordonnées_géographiques"),
            "export": ("Nom du compteur", "Date et heure de comptage", "Coordonnées géographiques")}[style]
    rows = [
        ("Quai d'Orsay E-O", "2021-06-15T08:00:00+02:00", "48.86288,2.31179"),
        ("28 boulevard Diderot E-O", "2021-06-19 15:00:00+02:00", "48.846028, 2.375429"),
        ("Totem 64 Rue de Rivoli E-O", "2021-06-20T06:00:00Z", ""),
        ("20 Avenue de Clichy NO-SE", "2021-05-13 18:00:00", None),   # naive: Paris time
        ("Un compteur nouveau N-S", "2021-06-16T09:00:00+02:00", "48.8600, 2.3400"),
    ]
    out = []
    for name, date, coordinates in rows:
        record = {keys[0]: name, keys[1]: date, "mois_annee_comptage": "juin 2021"}
        if coordinates is not None:
            record[keys[2]] = coordinates
        out.append(record)
    return out


def matrix_of(recs, table):
    parsed = parse_records(recs)
    return build_matrix(parsed, table)


# --- local time across DST ------------------------------------------------------------

def test_local_hour_is_right_on_the_spring_dst_change():
    assert local_hour("2021-03-28T03:00:00+02:00") == 3
    assert local_hour("2021-03-28T01:00:00+01:00") == 1
    # 01:00Z is the first instant after 02:00 vanished: local 03:00.
    assert local_hour("2021-03-28T01:00:00+00:00") == 3


def test_both_repeated_hours_of_the_autumn_dst_change_are_local_hour_2():
    first, second = "2020-10-25T02:00:00+02:00", "2020-10-25T02:00:00+01:00"
    assert local_hour(first) == 2
    assert local_hour(second) == 2
    assert epoch(second) - epoch(first) == 3600
    assert local_hour("2020-10-25T03:00:00+01:00") == 3


def test_an_instant_gets_the_same_local_hour_whatever_offset_it_is_written_with():
    assert local_hour("2021-07-01T06:00:00Z") == local_hour("2021-07-01T08:00:00+02:00") == 8
    assert local_hour("2021-01-15T23:30:00-05:00") == 5     # 04:30Z = 05:30 in Paris


def test_calendar_columns_follow_the_local_day_not_the_utc_day():
    # 23:30Z on 30 April is 01:30 on 1 May (Labour Day) in Paris.
    cal_row = local_calendar(np.array([epoch("2021-04-30T23:30:00+00:00")]))
    assert (cal_row.hour[0], cal_row.public_holiday[0], cal_row.weekday[0]) == (1, 1, 5)
    assert cal_row.day_type[0] == 2


# --- the Paris calendar ---------------------------------------------------------------

@pytest.mark.parametrize("year, easter", [
    (2008, dt.date(2008, 3, 23)), (2011, dt.date(2011, 4, 24)), (2019, dt.date(2019, 4, 21)),
    (2020, dt.date(2020, 4, 12)), (2021, dt.date(2021, 4, 4)), (2024, dt.date(2024, 3, 31)),
    (2025, dt.date(2025, 4, 20)), (2038, dt.date(2038, 4, 25)), (2285, dt.date(2285, 3, 22)),
])
def test_easter_sunday(year, easter):
    assert cal.easter_sunday(year) == easter


def test_ascension_2021_is_a_public_holiday_and_the_friday_after_a_bridge_day():
    assert cal.is_public_holiday(dt.date(2021, 5, 13))
    assert cal.is_bridge_day(dt.date(2021, 5, 14))
    assert not cal.is_public_holiday(dt.date(2021, 5, 14))
    assert not cal.is_bridge_day(dt.date(2021, 5, 12))
    row = local_calendar(np.array([epoch("2021-05-14T09:00:00+02:00")]))
    assert (row.bridge_day[0], row.public_holiday[0], row.day_type[0]) == (1, 0, 0)


def test_french_public_holidays_of_2021():
    assert cal.public_holidays(2021) == {
        dt.date(2021, 1, 1), dt.date(2021, 4, 5), dt.date(2021, 5, 1), dt.date(2021, 5, 8),
        dt.date(2021, 5, 13), dt.date(2021, 5, 24), dt.date(2021, 7, 14), dt.date(2021, 8, 15),
        dt.date(2021, 11, 1), dt.date(2021, 11, 11), dt.date(2021, 12, 25)}


def test_monday_before_a_tuesday_holiday_is_a_bridge_day():
    assert cal.is_bridge_day(dt.date(2018, 4, 30))    # before Tue 1 May 2018
    assert not cal.is_bridge_day(dt.date(2021, 5, 10))


def test_paris_winter_school_holidays_2021():
    assert cal.is_school_holiday(dt.date(2021, 2, 20))
    assert cal.is_school_holiday(dt.date(2021, 2, 13))
    assert cal.is_school_holiday(dt.date(2021, 2, 28))
    assert not cal.is_school_holiday(dt.date(2021, 3, 1))   # classes resume
    assert not cal.is_school_holiday(dt.date(2021, 3, 2))
    assert not cal.is_school_holiday(dt.date(2021, 2, 12))


def test_covid_restrictions():
    assert cal.is_lockdown(dt.date(2020, 11, 10))
    assert not cal.is_lockdown(dt.date(2020, 12, 15))
    assert cal.is_curfew(dt.date(2021, 2, 1), 18)
    assert not cal.is_curfew(dt.date(2021, 2, 1), 17)
    assert cal.is_curfew(dt.date(2021, 2, 2), 5)    # the curfew begun the evening before
    assert not cal.is_curfew(dt.date(2021, 7, 1), 23)


# --- the matrix -----------------------------------------------------------------------

def test_matrix_is_float32_with_one_column_per_feature(table):
    batch = matrix_of(records(), table)
    assert batch.matrix.dtype == np.float32
    assert batch.matrix.shape == (5, len(FEATURE_NAMES))
    assert np.isfinite(batch.matrix).all()
    assert FEATURE_SPEC_VERSION and isinstance(FEATURE_SPEC_VERSION, str)
    m = batch.matrix
    assert m[0, COL["hour"]] == 8 and m[0, COL["day_type"]] == 0
    assert m[1, COL["day_type"]] == 1                  # a Saturday
    assert m[2, COL["hour"]] == 8 and m[2, COL["day_type"]] == 2   # 06:00Z on a Sunday
    assert m[3, COL["public_holiday"]] == 1 and m[3, COL["hour"]] == 18


def test_snake_case_keys_and_export_headers_give_the_same_matrix(table):
    snake = matrix_of(records("snake"), table)
    export = matrix_of(records("export"), table)
    assert np.array_equal(snake.matrix, export.matrix)
    assert snake.unknown_counters == export.unknown_counters == (4,)


def test_a_known_counter_uses_its_training_statistics(table):
    batch = matrix_of(records(), table)
    i = table.index_of("Quai d'Orsay E-O")
    row = batch.matrix[0]
    assert row[COL["counter_log_mean"]] == np.float32(table.log_mean[i])
    assert row[COL["counter_profile"]] == np.float32(table.profile[i, 0, 8])
    assert row[COL["counter_recent"]] == np.float32(table.recent_log_mean[i])
    assert batch.mean_count[0] == pytest.approx(table.mean_count[i])


def test_an_unknown_counter_with_coordinates_borrows_its_neighbours_statistics(table):
    batch = matrix_of(records(), table)
    assert batch.unknown_counters == (4,)
    row = batch.matrix[4]
    day_type, hour = int(row[COL["day_type"]]), int(row[COL["hour"]])
    cell = table.profile[:, day_type, hour]
    assert table.log_mean.min() < row[COL["counter_log_mean"]] < table.log_mean.max()
    assert cell.min() < row[COL["counter_profile"]] < cell.max()
    recent = table.recent_log_mean
    assert recent.min() < row[COL["counter_recent"]] < recent.max()
    assert batch.mean_count[4] == pytest.approx(np.expm1(row[COL["counter_log_mean"]]), rel=1e-5)


def test_an_unknown_counter_at_a_known_counters_spot_looks_like_that_counter(table):
    recs = [{"nom_du_compteur": "Rivoli, new sensor", "date_et_heure_de_comptage":
             "2021-06-15T08:00:00+02:00", "coordonnées_géographiques": "48.85735, 2.35211"}]
    row = matrix_of(recs, table).matrix[0]
    j = table.index_of("Totem 64 Rue de Rivoli E-O")
    others = np.delete(table.log_mean, j)
    nearest_other = others[np.argmin(np.abs(others - table.log_mean[j]))]
    assert abs(row[COL["counter_log_mean"]] - table.log_mean[j]) < \
        abs(row[COL["counter_log_mean"]] - nearest_other)


def test_an_unknown_counter_without_coordinates_raises_naming_the_row(table):
    recs = records()[:2] + [{"nom_du_compteur": "Nowhere street", "date_et_heure_de_comptage":
                             "2021-06-15T08:00:00+02:00"}]
    with pytest.raises(UnknownCounterError) as err:
        matrix_of(recs, table)
    assert err.value.row == 2
    assert err.value.name == "Nowhere street"
    assert "Nowhere street" in str(err.value)


def test_counter_names_match_ignoring_case_spacing_and_unicode_form(table):
    variants = ["  totem 64 RUE DE   rivoli e-o ", "Totem\t64 Rue de Rivoli E-O",
                "QUAI D'ORSAY e-o"]
    for name in variants:
        assert name in table
    nfd = unicodedata.normalize("NFD", "6 rue Julia Bartet NE-SO é")
    assert counter_key(nfd) == counter_key(unicodedata.normalize("NFC", nfd))
    exact = matrix_of([{"nom_du_compteur": "Totem 64 Rue de Rivoli E-O",
                        "date_et_heure_de_comptage": "2021-06-15T08:00:00+02:00"}], table)
    sloppy = matrix_of([{"nom_du_compteur": variants[0],
                         "date_et_heure_de_comptage": "2021-06-15T08:00:00+02:00"}], table)
    assert sloppy.unknown_counters == ()
    assert np.array_equal(exact.matrix, sloppy.matrix)


def test_counter_table_survives_a_json_round_trip(table):
    data = json.loads(json.dumps(table.to_dict()))
    restored = CounterTable.from_dict(data)
    assert restored.names == table.names
    assert restored.profile.shape == table.profile.shape == (5, 3, 24)
    before, after = matrix_of(records(), table), matrix_of(records(), restored)
    # Exactly equal: tree thresholds can sit on a profile value, so even a one-ulp
    # difference would change what the served model predicts.
    assert np.array_equal(after.matrix, before.matrix)
    assert np.array_equal(restored.profile, table.profile)
    assert np.array_equal(restored.mean_count, table.mean_count)
    assert after.unknown_counters == before.unknown_counters
    # A second round trip is exact: nothing drifts card after card.
    assert CounterTable.from_dict(restored.to_dict()).to_dict() == restored.to_dict()


def test_recent_level_rises_with_each_counters_own_last_days():
    # Spec 3 (velocast.core.recent_level): long-run level + a shrunk, clipped recent shift;
    # the planted holiday-dip and outage cases are in test_recent_level.py.
    from velocast.core.recent_level import MAX_SHIFT, RECENT_DAYS

    start = epoch("2021-01-04T00:00:00+01:00")
    days = RECENT_DAYS + 30
    instants = start + 3600.0 * np.arange(days * 24)
    # Doubled traffic (a tenfold step would make the old days read as outages).
    old, new = np.full(30 * 24, 50.0), np.full(RECENT_DAYS * 24, 100.0)
    # "B" stopped counting 10 days before "A": its level is that of its own last days.
    names = np.array(["A"] * len(instants) + ["B"] * (len(instants) - 240))
    times = np.concatenate([instants, instants[:-240]])
    counts = np.concatenate([old, new, old, new[:-240]])
    table = CounterTable.fit(names, times, [48.85] * len(names), [2.35] * len(names), counts)
    for counter in ("A", "B"):
        long_run = np.log1p(counts[names == counter]).mean()
        recent = table.recent_log_mean[table.index_of(counter)]
        assert long_run + 0.05 < recent <= min(long_run + MAX_SHIFT, np.log1p(100.0))


def test_days_feature_is_clipped_to_the_training_range(table):
    low, high = table.days_range
    assert low < high
    recs = [{"nom_du_compteur": "Quai d'Orsay E-O", "date_et_heure_de_comptage": d}
            for d in ("2019-06-15T08:00:00+02:00", "2021-06-10T08:00:00+02:00",
                      "2035-06-15T08:00:00+02:00")]
    days = matrix_of(recs, table).matrix[:, COL["days"]]
    assert days[0] == np.float32(low) and days[2] == np.float32(high)
    assert low < days[1] < high


def test_counter_table_profile_holes_are_filled_with_the_counter_mean():
    # One working day only: no Saturday or Sunday cells.
    start = epoch("2021-06-15T00:00:00+02:00")
    instants = start + 3600.0 * np.arange(24)
    table = CounterTable.fit(["A"] * 24, instants, [48.85] * 24, [2.35] * 24, np.arange(24.0))
    assert np.isfinite(table.profile).all()
    assert table.profile[0, 1, 5] == pytest.approx(np.log1p(np.arange(24.0)).mean())
    assert table.mean_count[0] == pytest.approx(11.5)


# --- request schema -------------------------------------------------------------------

def test_schema_reports_every_bad_field_with_its_record_and_field():
    recs = [
        {"nom_du_compteur": "Quai d'Orsay E-O", "date_et_heure_de_comptage": "yesterday"},
        {"nom_du_compteur": "Quai d'Orsay E-O", "date_et_heure_de_comptage": "1850-06-01T08:00:00+00:00"},
        {"nom_du_compteur": "Quai d'Orsay E-O", "date_et_heure_de_comptage": "2021-06-15T08:00:00+02:00",
         "coordonnées_géographiques": "north, east"},
        {"date_et_heure_de_comptage": "2021-06-15T08:00:00+02:00"},
        "Quai d'Orsay E-O;2021-06-15",
        {"Nom du compteur": "Quai d'Orsay E-O", "Date et heure de comptage": "2021-06-15T08:00:00+02:00",
         "Coordonnées géographiques": "95.0, 2.3"},
        {"nom_du_compteur": "Quai d'Orsay E-O"},
    ]
    with pytest.raises(InvalidRecords) as err:
        parse_records(recs)
    assert (as_http(err.value).status, as_http(err.value).code) == (422, "invalid_records")
    found = {(d["record"], d["field"]): d["reason"] for d in err.value.details}
    assert set(found) == {
        (0, "date_et_heure_de_comptage"), (1, "date_et_heure_de_comptage"),
        (2, "coordonnees_geographiques"), (3, "nom_du_compteur"), (4, ""),
        (5, "coordonnees_geographiques"), (6, "date_et_heure_de_comptage")}
    assert "yesterday" in found[(0, "date_et_heure_de_comptage")]
    assert "1850" in found[(1, "date_et_heure_de_comptage")]
    assert "object" in found[(4, "")]
    assert "record 0" in err.value.message and "date_et_heure_de_comptage" in err.value.message


@pytest.mark.parametrize("bad", [None, {}, "records", 3])
def test_records_that_are_not_a_non_empty_list_are_rejected(bad):
    with pytest.raises(InvalidRequest) as err:
        parse_records(bad)
    assert (as_http(err.value).status, as_http(err.value).code) == (422, "invalid_request")
    assert err.value.details[0]["field"] == "records"


def test_schema_parses_a_valid_batch_into_arrays():
    parsed = parse_records(records("export"))
    assert len(parsed) == 5
    assert parsed.names[0] == "Quai d'Orsay E-O"
    assert parsed.epoch_seconds[0] == epoch("2021-06-15T08:00:00+02:00")
    # A timestamp without an offset is Paris local time.
    assert parsed.epoch_seconds[3] == dt.datetime(2021, 5, 13, 18, tzinfo=PARIS).timestamp()
    assert parsed.latitude[1] == 48.846028 and parsed.longitude[1] == 2.375429
    assert np.isnan(parsed.latitude[2]) and np.isnan(parsed.latitude[3])


# --- runtime imports ------------------------------------------------------------------

def test_runtime_modules_import_without_pandas_sklearn_or_skl2onnx():
    code = (
        "import sys, json\n"
        "import velocast.core.features, velocast.core.schema, velocast.core.paris_calendar, "
        "velocast.catalog.store, velocast.catalog.registry\n"
        "heavy = sorted(m for m in sys.modules\n"
        "               if m.split('.')[0] in ('pandas', 'sklearn', 'skl2onnx'))\n"
        "print(json.dumps(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
