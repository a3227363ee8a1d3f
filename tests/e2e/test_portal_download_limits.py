"""A download is bounded (issue 21, N4): a gzip bomb is cut at the byte cap the counted
rows allow (decompressed bytes, counted as they arrive), a body declared larger than
the cap is refused before it is read, and a trickled body is cut at the overall
deadline. Each is refused whole, the store is unchanged, and a clean ingest follows."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.fake_portal import gzip_bomb
from tests.ingest_cases import portal  # noqa: F401  (the fixture)
from tests.ingest_cases import FAST, at, ingest_day, midnight, snapshot
from velocast.catalog.store import LocalStore
from velocast.train.ingest import ingest

pytestmark = pytest.mark.real_data
PORTAL_ROWS = (4, "2021-07-20", "2021-07-27")


@pytest.fixture
def store(portal, tmp_path):
    report = ingest_day(portal, tmp_path, "2021-07-25")
    assert report.ok, report.line()
    portal.available_until = midnight("2021-07-26")
    return LocalStore(tmp_path)


def hostile_then_clean(portal, store, fault: str, **options):
    before = snapshot(Path(store.root))
    portal.faults[:] = [fault] * FAST["attempts"]
    started = time.monotonic()
    refused = ingest(store, portal.url, now=at("2021-07-26", 6), **{**FAST, **options})
    seconds = time.monotonic() - started
    assert not refused.ok and "nothing stored changed" in refused.line()
    assert snapshot(Path(store.root)) == before
    portal.faults.clear()
    clean = ingest(store, portal.url, now=at("2021-07-26", 6), **FAST)
    assert clean.ok and clean.new == 4 * 24, clean.line()
    return refused, seconds


def test_a_gzip_bomb_is_cut_at_the_byte_cap_on_decompressed_bytes(portal, store):
    gzip_bomb(portal.bomb_bytes)       # made now (~1 s), not while the client waits
    refused, _ = hostile_then_clean(portal, store, "gzip_bomb")
    # 292 rows counted (the 48 h overlap and the new day, 4 counters): 400 x 292 + 1 MB.
    assert "export: more than the 1,116,800 bytes allowed (decompressed)" in refused.refused
    # Not asked again: a retry cannot make it smaller (first ingest, bomb, clean ingest).
    assert sum(path.endswith("/exports/csv") for path, _ in portal.requests) == 3


def test_a_body_declared_larger_than_the_cap_is_refused_before_it_is_read(portal, store):
    refused, _ = hostile_then_clean(portal, store, "huge")
    assert "the portal declares 2,147,483,648 bytes, more than the 1,116,800 allowed" in refused.refused


def test_a_trickled_body_is_cut_at_the_overall_deadline(portal, store):
    portal.trickle_seconds = 15.0
    refused, seconds = hostile_then_clean(portal, store, "trickle", max_seconds=1.5)
    assert "past the download deadline" in refused.refused
    assert seconds < portal.trickle_seconds     # cut by the client, not by the fake giving up


def test_a_row_count_no_export_can_have_is_refused_before_the_export(portal, store):
    portal.total_count = 10 ** 12       # would make the byte cap 400 TB
    refused = ingest(store, portal.url, now=at("2021-07-26", 6), **FAST)
    assert not refused.ok and "total_count 1000000000000 is not a row count up to 5,000,000" \
        in refused.refused
    assert not any(path.endswith("/exports/csv") for path, _ in portal.requests[2:])
    portal.total_count = None
    assert ingest(store, portal.url, now=at("2021-07-26", 6), **FAST).new == 4 * 24
