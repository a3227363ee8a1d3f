"""Which entry is served once promotions exist (velocast.promotions.served), without
training: entries and promotions are built by hand."""

from __future__ import annotations

import pytest

from velocast import promotions
from velocast.registry import Entry
from velocast.store import LocalStore


def entry(model_type: str, version: str, task: str = "regress", **metrics) -> Entry:
    return Entry(task=task, model_type=model_type, version=version,
                 metrics=metrics or {"rmse_log": 0.5, "r2": 0.5},
                 onnx_path=f"models/{task}/{model_type}/{version}/model.onnx",
                 card_path=f"models/{task}/{model_type}/{version}/card.json", sha256="0" * 64,
                 size_bytes=1, feature_spec_version="1", trained_from="2021-01-01",
                 trained_to="2021-02-01", published_at="2021-02-02T00:00:00Z")


def promotion(version: str, **served) -> promotions.Promotion:
    return promotions.Promotion("regress", version, {
        t: {"version": v, "metrics": m, "promoted": True} for t, (v, m) in served.items()}, {})


OLD_GOOD = entry("gbdt", "v1", rmse_log=0.1, r2=0.9)     # great on its own, easier rows
NEW_GBDT = entry("gbdt", "v2", rmse_log=0.6, r2=0.6)
NEW_RF = entry("rf", "v2", rmse_log=0.7, r2=0.7)
ENTRIES = [OLD_GOOD, NEW_GBDT, NEW_RF]


def test_without_promotions_the_best_by_own_metric_is_served():
    assert promotions.served(ENTRIES, [], "regress")[0] is OLD_GOOD
    assert promotions.served(ENTRIES, [], "regress", "rf")[0] is NEW_RF


def test_newest_promotion_wins_over_a_better_looking_older_entry():
    p = [promotion("p1", gbdt=("v1", {"rmse_log": 0.5})),
         promotion("p2", gbdt=("v2", {"rmse_log": 0.6}), rf=("v2", {"rmse_log": 0.65}))]
    assert promotions.served(ENTRIES, p, "regress", "gbdt") == [NEW_GBDT, OLD_GOOD]
    assert promotions.served(ENTRIES, p, "regress")[0] is NEW_GBDT


def test_metric_chooses_among_types_with_the_promotions_own_figures():
    p = [promotion("p2", gbdt=("v2", {"rmse_log": 0.6, "r2": 0.6}),
                   rf=("v2", {"rmse_log": 0.65, "r2": 0.8}))]
    assert promotions.served(ENTRIES, p, "regress", None, "rmse_log")[0] is NEW_GBDT
    # The promotion measured rf better by r2 on its rows, whatever the entry says.
    assert promotions.served(ENTRIES, p, "regress", None, "r2")[0] is NEW_RF


def test_a_type_missing_from_the_newest_promotion_falls_back_to_an_older_one():
    p = [promotion("p1", rf=("v2", {"rmse_log": 0.7})), promotion("p2", gbdt=("v2", {"rmse_log": 0.6}))]
    assert promotions.served(ENTRIES, p, "regress", "rf") == [NEW_RF]


def test_promotion_of_an_unknown_entry_is_ignored():
    p = [promotion("p1", gbdt=("v2", {"rmse_log": 0.6})), promotion("p2", gbdt=("gone", {"rmse_log": 0.1}))]
    assert promotions.served(ENTRIES, p, "regress", "gbdt")[0] is NEW_GBDT


def test_promotions_are_write_once_and_malformed_ones_skipped(tmp_path):
    store = LocalStore(tmp_path)
    good = promotion("20250101T000000Z-aaaaaa", gbdt=("v2", {"rmse_log": 0.6}))
    promotions.write_promotion(store, good)
    with pytest.raises(Exception, match="already exists"):
        promotions.write_promotion(store, good)
    store.write_once("promotions/regress/20250102T000000Z-bbbbbb.json", b'{"served": 3}')
    assert promotions.list_promotions(store, "regress") == [good]

