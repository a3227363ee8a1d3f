"""A hostile portal (tests/fake_portal.py on loopback) serves poisoned rows after five
clean weeks: each case is refused or quarantined by name in the one-line report,
nothing poisoned lands in the manifest's days, and a following clean ingest stores
the new hours (issue 21: N2, N3, D4, and the data side of N1)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tests.fake_portal import row_like
from tests.ingest_cases import portal  # noqa: F401  (the fixture)
from tests.ingest_cases import ingest_day as daily
from tests.ingest_cases import midnight, paris_day, snapshot, stored_values
from velocast.ingest.__main__ import main
from velocast.catalog.store import LocalStore
from velocast.train import counts

pytestmark = pytest.mark.real_data
PORTAL_ROWS = (24, "2021-06-07", "2021-07-22")

CLEAN_UNTIL = "2021-07-12"          # five clean weeks before: 2021-06-07 .. 2021-07-11
WEEK = [f"2021-07-{d}" for d in range(12, 19)]


@pytest.fixture
def store(portal, tmp_path):
    """The clean weeks ingested, as the daily loop leaves them."""
    report = daily(portal, tmp_path, CLEAN_UNTIL)
    assert report.ok and not report.refused_rows and not report.quarantined, report.line()
    return LocalStore(tmp_path)


def rows_of(portal, day: str, names=None) -> list[dict]:
    return [r for r in portal.rows if paris_day(r["_epoch"]) == day
            and (names is None or r["nom_compteur"] in names)]


def stored_days(store) -> set[str]:
    return set(counts.newest_manifest(store).days)


def test_a_week_of_counts_x1000_is_quarantined_and_its_clean_fetch_later_is_stored(portal, store,
                                                                                      capsys):
    original = {id(r): r["sum_counts"] for d in WEEK for r in rows_of(portal, d)}
    for day in WEEK:
        for row in rows_of(portal, day):
            row["sum_counts"] = str(float(row["sum_counts"]) * 1000)
    report = daily(portal, store, "2021-07-19")
    assert report.ok, report.line()
    assert [q.split(" ")[0] for q in report.quarantined] == WEEK
    assert all(" level x" in q for q in report.quarantined), report.quarantined
    assert "quarantined 4,032 row(s) in 7 day(s): 2021-07-12 level x" in report.line()
    manifest = counts.newest_manifest(store)
    assert not set(WEEK) & set(manifest.days)
    assert max(stored_values(store).values()) < 2000
    assert manifest.newest_epoch < midnight(WEEK[0])      # the cursor stays before the poison
    # Kept apart, write-once, each with its reasons beside it, listed in the manifest.
    entry = manifest.quarantined[WEEK[0]][0]
    assert entry["rows"] == 24 * 24 and entry["reasons"][0].startswith("level x")
    held = counts.parse_day(store.read(entry["object"]))
    assert min(v[0] for v in held.values() if v[0] > 0) >= 1000
    why = json.loads(store.read(entry["object"].replace(".csv.gz", ".json")))
    assert why["reasons"] == entry["reasons"] and why["day"] == WEEK[0]
    assert main(["--store", store.root, "--quarantined"]) == 0
    listing = capsys.readouterr().out
    assert all(f"{day}     576 rows  {counts.QUARANTINE}{day}/" in listing for day in WEEK), listing
    # The same poison again writes nothing new.
    before = snapshot(Path(store.root))
    again = daily(portal, store, "2021-07-19")
    assert again.manifest is None and snapshot(Path(store.root)) == before
    # The portal corrects the week: those hours are stored like any, and the days after.
    for day in WEEK:
        for row in rows_of(portal, day):
            row["sum_counts"] = original[id(row)]
    fixed = daily(portal, store, "2021-07-21")
    assert fixed.ok and not fixed.quarantined and not fixed.refused_rows, fixed.line()
    assert set(WEEK) | {"2021-07-19", "2021-07-20"} <= stored_days(store)
    assert fixed.new == 24 * 24 * 9


def test_a_constant_day_of_42_for_20_counters_is_quarantined_counter_by_counter(portal, store):
    names = sorted({r["nom_compteur"] for r in portal.rows})
    poisoned, others = names[:20], names[20:]
    for row in rows_of(portal, "2021-07-12", poisoned):
        row["sum_counts"] = "42"
    report = daily(portal, store, "2021-07-13")
    assert report.quarantined_rows == 20 * 24, report.line()
    assert f"2021-07-12 {poisoned[0]}: constant 42 for 24 h (+19 more)" in report.line()
    kept = {name for (name, epoch) in stored_values(store) if paris_day(epoch) == "2021-07-12"}
    assert kept == set(others)
    assert daily(portal, store, "2021-07-14").new == 24 * 24


def test_an_hour_dated_2030_is_refused_and_the_cursor_stays_at_now(portal, store):
    future = row_like(rows_of(portal, "2021-07-11")[0], epoch=midnight("2030-01-01") + 12 * 3600)
    future["_published"] = midnight("2021-07-12") + 3600   # in the export of 2021-07-12
    portal.rows.append(future)
    report = daily(portal, store, "2021-07-13")
    assert report.refused_rows == {"hour in the future": 1}, report.line()
    assert "1 refused (1 hour in the future)" in report.line()
    assert counts.newest_manifest(store).newest_epoch == midnight("2021-07-13") - 3600
    assert max(stored_days(store)) == "2021-07-12"
    assert daily(portal, store, "2021-07-14").new == 24 * 24


def test_a_store_already_holding_a_2030_hour_ingests_again_and_sets_it_apart(portal, store):
    """Written before the fix (straight through counts.commit, with 2030 as 'now')."""
    template = rows_of(portal, "2021-07-11")[0]
    hour = midnight("2030-01-01") + 12 * 3600
    counts.commit(store, [(template["nom_compteur"], hour, 7.0, 48.85, 2.35)], "old", {}, now=hour)
    report = daily(portal, store, "2021-07-13")
    assert report.ok and report.new == 24 * 24, report.line()
    manifest = counts.newest_manifest(store)
    assert "2030-01-01" not in manifest.days and max(manifest.days) == "2021-07-12"
    assert manifest.quarantined["2030-01-01"][0]["reasons"] == ["day in the future"]
    assert manifest.newest_epoch == midnight("2021-07-13") - 3600


def test_1e12_inf_and_nan_counts_are_refused_by_name(portal, store):
    a, b, c = (rows_of(portal, "2021-07-12", [name])[10] for name in
               sorted({r["nom_compteur"] for r in portal.rows})[:3])
    a["sum_counts"], b["sum_counts"], c["sum_counts"] = "1e12", "inf", "nan"
    report = daily(portal, store, "2021-07-13")
    assert report.refused_rows == {"infinite count": 1, "not a number": 1}, report.line()
    assert "(1 infinite count, 1 not a number)" in report.line()
    assert f"2021-07-12 {a['nom_compteur']}: 1e+12 bikes/h over its bound" in report.line()
    values = stored_values(store)
    assert max(values.values()) < 2000
    assert not any(name == a["nom_compteur"] and paris_day(e) == "2021-07-12" for name, e in values)
    assert (b["nom_compteur"], b["_epoch"]) not in values and (c["nom_compteur"], c["_epoch"]) not in values
    assert daily(portal, store, "2021-07-14").new == 24 * 24


def test_a_counter_name_with_a_line_end_is_refused_and_the_report_stays_one_line(portal, store):
    template = rows_of(portal, "2021-07-12")[3]
    portal.rows.append(row_like(template, nom_compteur="evil\nname", sum_counts="5"))
    portal.rows.append(row_like(template, nom_compteur="x" * 201, sum_counts="5"))
    report = daily(portal, store, "2021-07-13")
    assert report.refused_rows == {"bad counter name": 2} and "\n" not in report.line()
    assert report.new == 24 * 24


def test_duplicate_hours_keep_the_larger_count_and_are_reported(portal, store):
    row = rows_of(portal, "2021-07-12")[12]
    larger = float(row["sum_counts"]) + 5
    portal.rows.extend([row_like(row, sum_counts=str(larger)), row_like(row)])
    report = daily(portal, store, "2021-07-13")
    assert report.refused_rows == {"duplicate hour": 1, "repeated row": 1}, report.line()
    assert stored_values(store)[(row["nom_compteur"], row["_epoch"])] == larger
    assert report.new == 24 * 24


def test_ten_thousand_new_counters_are_capped_at_ten(portal, store):
    template = rows_of(portal, "2021-07-12")[9]
    portal.rows.extend(row_like(template, nom_compteur=f"compteur {i:05d}", sum_counts="12")
                       for i in range(10_000))
    report = daily(portal, store, "2021-07-13")
    assert report.refused_rows == {"too many new counters": 9_990}, report.line()
    names = {name for name, _ in stored_values(store)}
    assert len(names) == 24 + 10
    assert report.new == 24 * 24 + 10
    # The cap is per ingest: the overlap's re-fetch admits ten more, no more.
    following = daily(portal, store, "2021-07-14")
    assert following.refused_rows == {"too many new counters": 9_980}
    assert following.new == 24 * 24 + 10


def test_shuffled_updates_in_the_overlap_are_refused_and_a_late_upload_is_taken(portal, store):
    daily(portal, store, "2021-07-13")
    before = stored_values(store)
    names = sorted({r["nom_compteur"] for r in portal.rows})
    shuffled = 0
    for name in names[:20]:                       # reshuffle 20 counter-days, as in D4
        day = rows_of(portal, "2021-07-12", [name])
        values = [r["sum_counts"] for r in day]
        random.Random(name).shuffle(values)
        for row, value in zip(day, values):
            shuffled += float(row["sum_counts"]) != float(value)
            row["sum_counts"] = value
    late = rows_of(portal, "2021-07-12", [names[-1]])[8:11]   # a late upload adds bikes
    for row in late:
        row["sum_counts"] = str(float(row["sum_counts"]) + 7)
    report = daily(portal, store, "2021-07-14")
    assert report.refused_rows == {"conflicting update": shuffled}, report.line()
    assert report.updated == 3 and report.new == 24 * 24
    after = stored_values(store)
    for key, value in before.items():
        moved = 7 if key in {(r["nom_compteur"], r["_epoch"]) for r in late} else 0
        assert after[key] == value + moved


def test_an_empty_store_takes_every_counter_of_its_first_download_but_no_hour_before_2018(
        portal, tmp_path):
    template = portal.rows[0]
    portal.rows.extend(row_like(template, nom_compteur=f"compteur {i:02d}") for i in range(30))
    portal.rows.insert(0, row_like(template, epoch=midnight("2017-06-01")))
    report = daily(portal, tmp_path, "2021-06-08")
    assert report.refused_rows == {"before the dataset's start": 1}, report.line()
    assert report.new == 24 * 24 + 30
