"""Helpers shared by the ingest tests: real rows for the loopback portal, Paris days,
and what a store holds."""

from __future__ import annotations

import copy
import datetime as dt
from functools import lru_cache
from pathlib import Path

import pytest

from tests.fake_portal import FakePortal, load_rows
from velocast.catalog.store import LocalStore
from velocast.train.ingest import ingest
from velocast.core.local_time import PARIS
from velocast.train import counts

UTC = dt.timezone.utc
FAST = {"attempts": 2, "backoff": 0.05, "timeout": (2.0, 1.0)}
YEAR_FILE = "paris-bike-counts-2020-09-01_2021-08-09.csv.gz"


@lru_cache(maxsize=4)
def _rows(folder: str, counters: int, first_day: str, last_day: str) -> tuple:
    return tuple(load_rows(Path(folder) / YEAR_FILE, counters=counters, first_day=first_day,
                           last_day=last_day))


def real_rows(shared_data: Path, counters: int, first_day: str, last_day: str) -> list[dict]:
    """A fresh copy (tests edit rows in place) of the real rows in that range."""
    return copy.deepcopy(list(_rows(str(shared_data), counters, first_day, last_day)))


@pytest.fixture
def portal(shared_data, request):
    """The loopback portal serving the test module's PORTAL_ROWS (counters, first day,
    last day) of the real file; import this fixture into the module."""
    counters, first, last = request.module.PORTAL_ROWS
    with FakePortal(real_rows(shared_data, counters, first, last)) as server:
        yield server


def midnight(day: str) -> int:
    """Epoch of a Paris day's start."""
    return int(dt.datetime.combine(dt.date.fromisoformat(day), dt.time(), PARIS).timestamp())


def at(day: str, hour: int = 0) -> dt.datetime:
    return dt.datetime.fromtimestamp(midnight(day) + hour * 3600, UTC)


def ingest_day(portal, store, day: str, **options):
    """The morning ingest of Paris day `day`: the portal has published every hour
    before its midnight, and it is 06:00 there."""
    portal.available_until = midnight(day)
    store = LocalStore(store) if isinstance(store, (str, Path)) else store
    return ingest(store, portal.url, now=at(day, 6), **{**FAST, **options})


def paris_day(epoch: int) -> str:
    return counts.local_day(epoch)


def stored_values(store) -> dict[tuple[str, int], float]:
    return {key: value[0] for _, day in counts.read_rows(store) for key, value in day.items()}


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
