"""The export loader: real files, format variants, dropped rows, duplicates."""

from __future__ import annotations

import datetime as dt
import gzip
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from velocast.core.local_time import PARIS
from velocast.train import sample
from velocast.train.data import DataFormatError, load_counts

COLUMNS = ["counter", "epoch", "latitude", "longitude", "count"]


# `shared_data` (tests/conftest.py) is ../shared/data or $VELOCAST_SHARED_DATA, and skips
# the test on a fresh machine that does not have the real files.
@pytest.fixture
def real_counts_file(shared_data) -> Path:
    return shared_data / "paris-bike-counts-2020-09-01_2021-08-09.csv.gz"


@pytest.fixture
def export_sample_file(shared_data) -> Path:
    path = shared_data / "paris-export-sample-2021-09.csv"
    if not path.is_file():
        pytest.skip(f"{path} is not on this machine")
    return path
HEADER = sample.HEADER  # the 10 columns of the reduced real file


def line(name="Quai d'Orsay E-O", count="5.0", date="2021-03-01T08:00:00+01:00",
         coordinates="48.86288,2.31179", month="2021-03") -> str:
    """One data line in the export's 10-column layout."""
    return (f"100003098-353242251;{name};100003098;{name.rsplit(' ', 1)[0]};{count};{date};"
            f"2019-01-01;{coordinates};Y2H100003098;{month}")


def write(path: Path, lines: list[str], header: str = HEADER, newline: str = "\r\n",
          bom: bool = False) -> Path:
    text = ("\ufeff" if bom else "") + newline.join([header, *lines]) + newline
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(text.encode("utf-8"))
    else:
        path.write_bytes(text.encode("utf-8"))
    return path


def epoch(iso: str) -> float:
    return dt.datetime.fromisoformat(iso).timestamp()


def local_day(seconds: float) -> dt.date:
    return dt.datetime.fromtimestamp(seconds, tz=PARIS).date()


GOOD = [
    line(count="5.0", date="2021-03-01T08:00:00+01:00"),
    line(count="12.0", date="2021-03-01T09:00:00+01:00"),
    line(name="20 Avenue de Clichy NO-SE", count="0.0", date="2021-03-01T08:00:00+01:00",
         coordinates="48.88529,2.32666"),
]


# --- the real files -------------------------------------------------------------------

def test_real_file_loads_all_rows_and_counters(real_counts_file):
    frame, report = load_counts(real_counts_file, report_to=None)
    assert list(frame.columns) == COLUMNS
    assert len(frame) == 422_143
    assert frame["counter"].nunique() == 52
    assert (report.rows_read, report.rows_kept) == (422_143, 422_143)
    assert report.bad_date == report.bad_count == report.bad_coordinates == report.duplicates == 0
    assert local_day(frame["epoch"].min()) == dt.date(2020, 9, 1)
    assert local_day(frame["epoch"].max()) == dt.date(2021, 8, 9)
    assert all(frame[c].dtype == np.float64 for c in COLUMNS[1:])
    assert frame["latitude"].between(48.8, 48.95).all()
    assert frame["longitude"].between(2.2, 2.5).all()
    assert (frame["count"] >= 0).all()


def test_live_export_sample_with_16_columns_and_crlf_loads(export_sample_file):
    raw = export_sample_file.read_bytes()
    header = raw.split(b"\r\n", 1)[0].decode("utf-8")
    # Guard the fixture itself: this test is about the live layout.
    assert len(header.split(";")) == 16
    assert raw.count(b"\r\n") == 22 and raw.count(b"\n") == 22

    frame, report = load_counts(export_sample_file, report_to=None)
    assert len(frame) == 21 and report.rows_kept == 21
    first = frame.iloc[0]
    assert first["counter"] == "97 avenue Denfert Rochereau SO-NE"
    assert first["epoch"] == epoch("2021-09-01T03:00:00+02:00")
    assert (first["latitude"], first["longitude"], first["count"]) == (48.83504, 2.33314, 3.0)
    # No carriage return may leak into the last column's neighbours or the names.
    assert not frame["counter"].str.contains("\r").any()


def test_synthetic_sample_round_trips_through_the_loader(tmp_path):
    path = tmp_path / "sample.csv"
    written = sample.write_sample(path, dt.date(2024, 10, 26), dt.date(2024, 10, 29))
    # 26-28 October 2024 hold the 25-hour DST day: 73 hours per counter.
    assert written == len(sample.COUNTERS) * 73
    assert b"\r\n" in path.read_bytes()[:2000]

    frame, report = load_counts(path, report_to=None)
    assert len(frame) == written == report.rows_kept
    assert set(frame["counter"]) == {c[0] for c in sample.COUNTERS}
    assert report.duplicates == 0
    assert local_day(frame["epoch"].min()) == dt.date(2024, 10, 26)
    assert local_day(frame["epoch"].max()) == dt.date(2024, 10, 28)


# --- format variants ------------------------------------------------------------------

def test_missing_count_column_is_a_format_error_naming_it(tmp_path):
    header = HEADER.replace("Comptage horaire", "Comptage journalier")
    path = write(tmp_path / "no-count.csv", [line()], header=header)
    with pytest.raises(DataFormatError) as err:
        load_counts(path, report_to=None)
    message = str(err.value)
    assert "'Comptage horaire'" in message
    # Only the missing column is reported as missing.
    assert "'Nom du compteur'" not in message.split("; found")[0]


def test_bom_and_lf_file_loads_like_the_crlf_one(tmp_path):
    crlf = write(tmp_path / "crlf.csv", GOOD)
    bom_lf = write(tmp_path / "bom-lf.csv", GOOD, newline="\n", bom=True)
    assert bom_lf.read_bytes().startswith(b"\xef\xbb\xbf")
    expected, _ = load_counts(crlf, report_to=None)
    actual, report = load_counts(bom_lf, report_to=None)
    assert report.rows_kept == 3
    pd.testing.assert_frame_equal(actual, expected)


def test_gzipped_file_loads_like_the_plain_one(tmp_path):
    plain = write(tmp_path / "counts.csv", GOOD)
    packed = write(tmp_path / "counts.csv.gz", GOOD)
    assert packed.read_bytes()[:2] == b"\x1f\x8b"
    pd.testing.assert_frame_equal(load_counts(packed, report_to=None)[0],
                                  load_counts(plain, report_to=None)[0])


def test_extra_and_reordered_columns_are_ignored(tmp_path):
    baseline = write(tmp_path / "baseline.csv", GOOD)
    header = ("Coordonnées géographiques;Lien vers photo du site de comptage;Comptage horaire;"
              "Nom du compteur;url_sites;Date et heure de comptage;type_dimage")
    rows = []
    for text in GOOD:
        f = text.split(";")
        rows.append(f"{f[7]};https://example.org/a.jpg;{f[4]};{f[1]};https://example.org;{f[5]};jpg")
    extra = write(tmp_path / "extra.csv", rows, header=header)
    pd.testing.assert_frame_equal(load_counts(extra, report_to=None)[0],
                                  load_counts(baseline, report_to=None)[0])


def test_snake_case_headers_are_accepted(tmp_path):
    header = ";".join(["identifiant_du_compteur", "nom_du_compteur", "id_site", "nom_site",
                       "comptage_horaire", "date_et_heure_de_comptage", "date_installation",
                       "coordonnees_geographiques", "id_technique", "mois_annee_comptage"])
    snake = write(tmp_path / "snake.csv", GOOD, header=header)
    french = write(tmp_path / "french.csv", GOOD)
    pd.testing.assert_frame_equal(load_counts(snake, report_to=None)[0],
                                  load_counts(french, report_to=None)[0])


# --- unusable rows --------------------------------------------------------------------

def test_unusable_rows_are_dropped_counted_and_reported_on_stderr(tmp_path, capsys):
    bad = [
        line(date="not a date"),
        line(date="2021-02-30T08:00:00+01:00"),
        line(date="", count="abc"),              # counted once, under its first problem
        line(count="abc", date="2021-03-02T08:00:00+01:00"),
        line(count="-3", date="2021-03-02T09:00:00+01:00"),
        line(count="", date="2021-03-02T10:00:00+01:00"),
        line(count="inf", date="2021-03-02T11:00:00+01:00"),
        line(coordinates="abc", date="2021-03-03T08:00:00+01:00"),
        line(coordinates="48.86288", date="2021-03-03T09:00:00+01:00"),
        line(coordinates="95.0,2.31179", date="2021-03-03T10:00:00+01:00"),
        line(coordinates="", date="2021-03-03T11:00:00+01:00"),
    ]
    path = write(tmp_path / "dirty.csv", GOOD[:2] + bad + GOOD[2:])
    frame, report = load_counts(path)

    assert report.rows_read == 14
    assert (report.bad_date, report.bad_count, report.bad_coordinates) == (3, 4, 4)
    assert report.duplicates == 0
    assert report.rows_kept == len(frame) == 3
    assert sorted(frame["count"]) == [0.0, 5.0, 12.0]

    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if "dirty.csv" in x]
    assert len(lines) == 1, err
    assert lines[0] == report.line()
    assert "read 14 rows, kept 3" in lines[0]
    assert "3 with an unparseable date" in lines[0]
    assert "4 with a bad count" in lines[0]
    assert "4 with bad coordinates" in lines[0]


def test_report_can_be_silenced(tmp_path, capsys):
    load_counts(write(tmp_path / "counts.csv", GOOD), report_to=None)
    assert capsys.readouterr().err == ""


def test_row_without_counter_name_is_dropped(tmp_path):
    frame, report = load_counts(write(tmp_path / "c.csv", GOOD + [line(name="  ")]),
                                report_to=None)
    assert report.rows_read == 4 and report.rows_kept == 3
    assert (frame["counter"].str.strip() != "").all()


# --- duplicates -----------------------------------------------------------------------

DUPLICATED = GOOD + [
    line(count="9.0", date="2021-03-01T08:00:00+01:00"),          # dup of a 5.0
    line(count="7.0", date="2021-03-01T08:00:00+01:00"),          # and another
    line(count="12.0", date="2021-03-01T09:00:00+01:00", coordinates="48.86300,2.31200"),
    line(count="12.0", date="2021-03-01T09:00:00+01:00", coordinates="48.86250,2.31150"),
    line(name="20 Avenue de Clichy NO-SE", count="3.0", date="2021-03-01T07:00:00Z",
         coordinates="48.88529,2.32666"),                          # same instant, UTC offset
]


def test_duplicate_counter_hours_keep_the_highest_count(tmp_path):
    frame, report = load_counts(write(tmp_path / "dups.csv", DUPLICATED), report_to=None)
    assert report.rows_read == 8
    assert report.duplicates == 5
    assert len(frame) == report.rows_kept == 3
    by_key = {(r.counter, r.epoch): r.count for r in frame.itertuples()}
    assert by_key[("Quai d'Orsay E-O", epoch("2021-03-01T08:00:00+01:00"))] == 9.0
    assert by_key[("Quai d'Orsay E-O", epoch("2021-03-01T09:00:00+01:00"))] == 12.0
    # 07:00Z is 08:00+01:00: the same counter-hour written with another offset.
    assert by_key[("20 Avenue de Clichy NO-SE", epoch("2021-03-01T08:00:00+01:00"))] == 3.0


def test_duplicate_resolution_does_not_depend_on_row_order(tmp_path):
    expected, _ = load_counts(write(tmp_path / "dups.csv", DUPLICATED), report_to=None)
    rng = random.Random(7)
    for attempt in range(12):
        lines = DUPLICATED[:]
        rng.shuffle(lines)
        shuffled, report = load_counts(write(tmp_path / f"shuffled-{attempt}.csv", lines),
                                       report_to=None)
        assert report.duplicates == 5
        pd.testing.assert_frame_equal(shuffled, expected)


def test_the_repeated_hour_of_the_autumn_dst_change_is_not_a_duplicate(tmp_path):
    lines = [line(count="4.0", date="2020-10-25T02:00:00+02:00"),
             line(count="6.0", date="2020-10-25T02:00:00+01:00")]
    frame, report = load_counts(write(tmp_path / "dst.csv", lines), report_to=None)
    assert report.duplicates == 0
    assert len(frame) == 2
    assert sorted(frame["epoch"].diff().dropna()) == [3600.0]
    assert list(frame.sort_values("epoch")["count"]) == [4.0, 6.0]
