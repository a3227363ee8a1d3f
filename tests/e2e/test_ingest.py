"""Ingest from a loopback fake of the Paris portal (tests/fake_portal.py) into stores:
only newer hours are fetched, nothing is duplicated, late corrections replace old
values without losing the old objects, and a faulty download changes nothing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tests.fake_portal import FakePortal, load_rows
from velocast.catalog.store import LocalStore
from velocast.train import counts
from velocast.train.ingest import ingest

pytest_plugins = ["tests.gcs_fixtures"]
pytestmark = pytest.mark.real_data

UTC = dt.timezone.utc
FAST = {"attempts": 2, "backoff": 0.05, "timeout": (2.0, 1.0)}


def epoch(*args) -> int:
    return int(dt.datetime(*args, tzinfo=UTC).timestamp())


@pytest.fixture(scope="module")
def rows(shared_data) -> list[dict]:
    """Four real counters over three weeks, plus the 21 live-format rows."""
    found = load_rows(shared_data / "paris-bike-counts-2020-09-01_2021-08-09.csv.gz",
                      counters=4, first_day="2021-07-20")
    return found + load_rows(shared_data / "paris-export-sample-2021-09.csv")


@pytest.fixture
def portal(rows):
    with FakePortal(rows) as server:
        yield server


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def stored_keys(store) -> list[tuple[str, int]]:
    keys = []
    for _, day in counts.read_rows(store):
        keys.extend(day)
    return keys


def test_first_ingest_stores_every_row_once_per_local_day(portal, rows, tmp_path):
    report = ingest(LocalStore(tmp_path), portal.url, **FAST)
    assert report.ok, report.line()
    assert report.new == len(rows) and report.updated == 0
    store = LocalStore(tmp_path)
    keys = stored_keys(store)
    assert len(keys) == len(set(keys)) == len(rows)
    manifest = counts.newest_manifest(store)
    assert manifest.newest_epoch == max(r["_epoch"] for r in rows)
    # The export asked for four labelled columns in date order, in Paris time.
    path, params = portal.requests[-1]
    assert path.endswith("/exports/csv")
    assert params["select"] == "nom_compteur,sum_counts,date,coordinates"
    assert params["use_labels"] == "true" and params["order_by"] == "date"


def test_same_hours_twice_leave_no_duplicate_and_no_new_object(portal, tmp_path):
    portal.available_until = epoch(2021, 8, 1)
    first = ingest(LocalStore(tmp_path), portal.url, **FAST)
    before = snapshot(tmp_path)
    again = ingest(LocalStore(tmp_path), portal.url, **FAST)
    assert again.ok and again.new == 0 and again.updated == 0 and again.unchanged > 0
    assert snapshot(tmp_path) == before
    # Only hours from the newest stored one minus the overlap were asked for.
    assert "date >= date'2021-07-29T23:00:00+00:00'" == portal.requests[-1][1]["where"]
    keys = stored_keys(LocalStore(tmp_path))
    assert len(keys) == len(set(keys)) == first.new


def test_next_day_adds_only_new_hours(portal, rows, tmp_path):
    portal.available_until = epoch(2021, 8, 1)
    first = ingest(LocalStore(tmp_path), portal.url, **FAST)
    portal.available_until = epoch(2021, 8, 2)
    second = ingest(LocalStore(tmp_path), portal.url, **FAST)
    assert second.new == sum(1 for r in rows if epoch(2021, 8, 1) <= r["_epoch"] < epoch(2021, 8, 2))
    assert len(stored_keys(LocalStore(tmp_path))) == first.new + second.new


def test_late_correction_replaces_the_value_and_keeps_the_old_object(portal, rows, tmp_path):
    portal.available_until = epoch(2021, 8, 1)
    ingest(LocalStore(tmp_path), portal.url, **FAST)
    old_objects = set(snapshot(tmp_path))
    target = max((r for r in portal.rows if r["_epoch"] < epoch(2021, 8, 1)), key=lambda r: r["_epoch"])
    corrected = float(target["sum_counts"]) + 12     # a late upload adds bikes
    target["sum_counts"] = str(corrected)
    report = ingest(LocalStore(tmp_path), portal.url, **FAST)
    assert (report.new, report.updated) == (0, 1)
    assert old_objects < set(snapshot(tmp_path))   # nothing removed or rewritten
    values = {k: v[0] for _, day in counts.read_rows(LocalStore(tmp_path)) for k, v in day.items()}
    assert values[(target["nom_compteur"], target["_epoch"])] == corrected


@pytest.mark.parametrize("fault", ["500", "truncate", "cut_at_row", "schema", "slow"])
def test_faulty_download_is_refused_whole_and_store_is_byte_for_byte_unchanged(portal, tmp_path, fault):
    portal.available_until = epoch(2021, 8, 1)
    ingest(LocalStore(tmp_path), portal.url, **FAST)
    before = snapshot(tmp_path)
    portal.available_until = None
    portal.faults[:] = [fault] * FAST["attempts"]
    portal.slow_seconds = 1.5        # above the 1 s read timeout
    report = ingest(LocalStore(tmp_path), portal.url, **FAST)
    assert not report.ok and "nothing stored changed" in report.line()
    assert snapshot(tmp_path) == before


def test_transient_fault_is_retried(portal, rows, tmp_path):
    portal.faults[:] = ["500", "truncate"]
    report = ingest(LocalStore(tmp_path), portal.url, **{**FAST, "attempts": 3})
    assert report.ok and report.new == len(rows)


def test_rows_without_count_are_refused_and_reported(portal, rows, tmp_path):
    portal.rows[0]["sum_counts"] = ""
    report = ingest(LocalStore(tmp_path), portal.url, **FAST)
    assert report.ok and report.refused_rows == {"no count": 1} and report.new == len(rows) - 1
    assert "1 refused (1 no count)" in report.line()


def test_ingest_into_gcs_bucket_is_write_once_and_idempotent(portal, fake_gcs):
    store = fake_gcs.store()
    portal.available_until = epoch(2021, 8, 1)
    first = ingest(store, portal.url, **FAST)
    names = store.list("")
    again = ingest(store, portal.url, **FAST)
    assert first.ok and again.ok and again.new == 0
    assert store.list("") == names
    assert len(stored_keys(store)) == first.new


def test_concurrent_ingest_merges_onto_the_winners_manifest(portal, rows, tmp_path):
    """Two ingests race for the next manifest number: the loser merges again, so the
    rows of both are kept (no read-modify-write loss)."""

    class RacingStore(LocalStore):
        raced = False

        def write_once(self, name, data, content_type="application/octet-stream"):
            if name.startswith(counts.MANIFESTS) and not self.raced:
                self.raced = True     # another ingest commits the day after, first
                counts.commit(LocalStore(self.root), [("late counter", epoch(2021, 8, 5, 8),
                                                       7.0, 48.85, 2.35)], "other", {})
            return super().write_once(name, data, content_type)

    portal.available_until = epoch(2021, 8, 1)
    report = ingest(RacingStore(tmp_path), portal.url, **FAST)
    assert report.ok and report.manifest == f"{counts.MANIFESTS}00000002.json"
    keys = stored_keys(LocalStore(tmp_path))
    assert ("late counter", epoch(2021, 8, 5, 8)) in keys and len(keys) == report.new + 1
