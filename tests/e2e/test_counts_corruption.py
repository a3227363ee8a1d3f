"""Corrupted store objects (issue 21, N8: one made every later ingest end in a raw
traceback): an unreadable newest manifest is named and ingest continues from the one
before, under a new manifest number; an unreadable day object is named, treated as
missing by the merge and skipped by the training window."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.ingest_cases import portal  # noqa: F401  (the fixture)
from tests.ingest_cases import ingest_day, midnight, stored_values
from velocast.catalog.store import LocalStore
from velocast.train import counts

pytestmark = pytest.mark.real_data
PORTAL_ROWS = (4, "2021-07-10", "2021-07-27")


@pytest.fixture
def store(portal, tmp_path):
    """Two daily ingests: manifests 1 and 2."""
    assert ingest_day(portal, tmp_path, "2021-07-24").ok and ingest_day(portal, tmp_path, "2021-07-25").ok
    return LocalStore(tmp_path)


def corrupt(store, name: str, data: bytes = b"\x1f\x8b garbage") -> None:
    path = Path(store.root) / name
    os.chmod(path, 0o644)
    path.write_bytes(data)


def test_a_corrupted_newest_manifest_is_named_and_ingest_continues_from_the_one_before(portal, store):
    corrupt(store, f"{counts.MANIFESTS}00000002.json", b'{"seq": 2, "days": ')
    report = ingest_day(portal, store, "2021-07-26")
    assert report.ok, report.line()
    assert (f"WARNING manifest {counts.MANIFESTS}00000002.json unreadable (JSONDecodeError"
            in report.line())
    assert f"continued from {counts.MANIFESTS}00000001.json" in report.line()
    # Write-once: the next number is past the corrupted one.
    assert report.manifest == f"{counts.MANIFESTS}00000003.json"
    assert max(counts.newest_manifest(store).days) == "2021-07-25"
    values = stored_values(store)
    assert sum(1 for _, epoch in values if epoch >= midnight("2021-07-25")) == 4 * 24


def test_a_corrupted_day_in_the_overlap_is_named_and_treated_as_missing(portal, store):
    entry = counts.newest_manifest(store).days["2021-07-24"]
    corrupt(store, entry["object"])
    report = ingest_day(portal, store, "2021-07-26")
    assert report.ok, report.line()
    assert (f"WARNING day object {entry['object']} does not match the sha256 its manifest "
            "recorded (corrupted): its rows are treated as missing") in report.line()
    # The overlap's hours of that day come back from the portal; the rest is named missing.
    manifest = counts.newest_manifest(store)
    assert manifest.days["2021-07-24"]["object"] != entry["object"]
    assert max(manifest.days) == "2021-07-25" and manifest.days["2021-07-24"]["rows"] == 4 * 24


def test_the_training_window_skips_a_corrupted_day_and_names_it(portal, store, capsys):
    entry = counts.newest_manifest(store).days["2021-07-15"]
    corrupt(store, entry["object"])
    frame = counts.load_window(store, 30)
    assert f"day object {entry['object']} does not match the sha256" in capsys.readouterr().err
    days = set(frame["epoch"].map(counts.local_day))
    assert "2021-07-15" not in days and {"2021-07-14", "2021-07-16"} <= days
    assert len(counts.read_rows(store)) == len(counts.newest_manifest(store).days) - 1
