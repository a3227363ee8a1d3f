"""The checks refuse nothing real: the whole shared file (422,143 rows, 52 counters,
2020-09-01 to 2021-08-09) through the loopback portal into an empty store is screened
day by day against the days before it (train/screen.py), and no row is refused or
quarantined; the daily overlap re-fetch after it changes nothing. Slow: the same as
the daily loop sees it, its last 70 days ingested one morning at a time."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from tests.fake_portal import FakePortal, load_rows
from tests.ingest_cases import FAST, YEAR_FILE, at, ingest_day
from velocast.catalog.store import LocalStore
from velocast.train import counts
from velocast.train.ingest import ingest

pytestmark = pytest.mark.real_data          # ~30 s: under the minute that makes a test slow


def test_the_whole_real_file_is_ingested_without_a_refusal_or_a_quarantine(shared_data, tmp_path):
    rows = load_rows(shared_data / YEAR_FILE)
    store = LocalStore(tmp_path)
    with FakePortal(rows) as portal:
        started = time.perf_counter()
        report = ingest(store, portal.url, now=at("2021-08-10", 6), **{**FAST, "timeout": (10, 60)})
        seconds = time.perf_counter() - started
        print(f"\n{report.line()}\nwall {seconds:.1f} s")
        assert report.ok, report.line()
        assert (report.fetched, report.new) == (422_143, 422_143)
        assert report.refused_rows == {} and report.quarantined == [], report.line()
        again = ingest(store, portal.url, now=at("2021-08-10", 7), **FAST)
        assert again.ok and not again.refused_rows and not again.quarantined, again.line()
        assert again.unchanged == again.fetched and again.manifest is None
    manifest = counts.newest_manifest(store)
    assert len(manifest.counters) == 52 and manifest.quarantined == {}


@pytest.mark.slow
def test_the_last_70_days_ingested_day_by_day_are_all_kept(shared_data, tmp_path):
    with FakePortal(load_rows(shared_data / YEAR_FILE)) as portal:
        assert ingest_day(portal, tmp_path, "2021-06-01", timeout=(10, 60)).ok
        day = dt.date(2021, 6, 1)
        while day < dt.date(2021, 8, 10):
            day += dt.timedelta(days=1)
            report = ingest_day(portal, tmp_path, day.isoformat(), timeout=(10, 60))
            assert report.ok and report.new and not report.refused_rows and not report.quarantined, \
                report.line()
    assert max(counts.newest_manifest(LocalStore(tmp_path)).days) == "2021-08-09"
