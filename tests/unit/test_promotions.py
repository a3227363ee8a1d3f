"""Promotion objects: write-once, malformed ones skipped (what is served from them:
tests/unit/test_catalog.py)."""

from __future__ import annotations

import pytest

from velocast.catalog import promotions
from velocast.catalog.store import LocalStore


def promotion(version: str, **served) -> promotions.Promotion:
    return promotions.Promotion("regress", version, {
        t: {"version": v, "metrics": m, "promoted": True} for t, (v, m) in served.items()}, {})


def test_promotions_are_write_once_and_malformed_ones_skipped(tmp_path):
    store = LocalStore(tmp_path)
    good = promotion("20250101T000000Z-aaaaaa", gbdt=("v2", {"rmse_log": 0.6}))
    promotions.write_promotion(store, good)
    with pytest.raises(Exception, match="already exists"):
        promotions.write_promotion(store, good)
    store.write_once("promotions/regress/20250102T000000Z-bbbbbb.json", b'{"served": 3}')
    assert promotions.list_promotions(store, "regress") == [good]

