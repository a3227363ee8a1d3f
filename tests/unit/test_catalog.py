"""What is served (velocast.catalog.Snapshot), without training: entries and promotions
are built by hand."""

from __future__ import annotations

import datetime as dt

from velocast.catalog import promotions
from velocast.catalog import Snapshot, valid_version
from velocast.catalog.registry import Entry

V1, V2, V3 = "20210201T000000Z-aaaaaa", "20210301T000000Z-bbbbbb", "20210401T000000Z-cccccc"
P1, P2, P3 = "20210302T000000Z-111111", "20210303T000000Z-222222", "20210304T000000Z-333333"


def entry(model_type: str, version: str, task: str = "regress", run: str = "", backtest=None,
          **metrics) -> Entry:
    return Entry(task=task, model_type=model_type, version=version,
                 metrics=metrics or {"rmse_log": 0.5, "r2": 0.5},
                 onnx_path=f"models/{task}/{model_type}/{version}/model.onnx",
                 card_path=f"models/{task}/{model_type}/{version}/card.json", sha256="0" * 64,
                 size_bytes=1, feature_spec_version="1", trained_from="2021-01-01",
                 trained_to="2021-02-01", published_at="2021-02-02T00:00:00Z", run=run,
                 backtest_means=backtest or {})


def promotion(version: str, **served) -> promotions.Promotion:
    return promotions.Promotion("regress", version, {
        t: {"version": v, "metrics": m, "promoted": True} for t, (v, m) in served.items()}, {})


OLD_GOOD = entry("gbdt", V1, rmse_log=0.1, r2=0.9)     # great on its own, easier rows
NEW_GBDT = entry("gbdt", V2, rmse_log=0.6, r2=0.6)
NEW_RF = entry("rf", V2, rmse_log=0.7, r2=0.7)
ENTRIES = [OLD_GOOD, NEW_GBDT, NEW_RF]


def served(entries, proms, model_type=None, metric=None):
    return Snapshot.of("regress", entries, proms).served(model_type, metric)


def test_without_promotions_the_best_by_own_metric_is_served():
    assert served(ENTRIES, [])[0] is OLD_GOOD
    assert served(ENTRIES, [], "rf")[0] is NEW_RF


def test_newest_promotion_wins_over_a_better_looking_older_entry():
    p = [promotion(P1, gbdt=(V1, {"rmse_log": 0.5})),
         promotion(P2, gbdt=(V2, {"rmse_log": 0.6}), rf=(V2, {"rmse_log": 0.65}))]
    assert served(ENTRIES, p, "gbdt") == [NEW_GBDT, OLD_GOOD]
    assert served(ENTRIES, p)[0] is NEW_GBDT


def test_metric_chooses_among_types_with_the_promotions_own_figures():
    p = [promotion(P2, gbdt=(V2, {"rmse_log": 0.6, "r2": 0.6}), rf=(V2, {"rmse_log": 0.65, "r2": 0.8}))]
    assert served(ENTRIES, p, None, "rmse_log")[0] is NEW_GBDT
    # The promotion measured rf better by r2 on its rows, whatever the entry says.
    assert served(ENTRIES, p, None, "r2")[0] is NEW_RF


def test_a_type_missing_from_the_newest_promotion_falls_back_to_an_older_one():
    p = [promotion(P1, rf=(V2, {"rmse_log": 0.7})), promotion(P2, gbdt=(V2, {"rmse_log": 0.6}))]
    assert served(ENTRIES, p, "rf") == [NEW_RF]


def test_promotion_of_an_unknown_entry_is_ignored():
    p = [promotion(P1, gbdt=(V2, {"rmse_log": 0.6})), promotion(P2, gbdt=(V3, {"rmse_log": 0.1}))]
    assert served(ENTRIES, p, "gbdt")[0] is NEW_GBDT


def test_promotions_named_out_of_format_or_in_the_future_never_outrank_later_ones():
    """N9: compared as strings, `zzzz` and a 2027 date outranked every later promotion."""
    future = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=400)).strftime("%Y%m%dT%H%M%SZ")
    p = [promotion("zzzz", gbdt=(V1, {"rmse_log": 0.5})),
         promotion(f"{future}-ffffff", gbdt=(V1, {"rmse_log": 0.5})),
         promotion(P2, gbdt=(V2, {"rmse_log": 0.6}))]
    snapshot = Snapshot.of("regress", ENTRIES, p)
    assert snapshot.served(None, None)[0] is NEW_GBDT
    assert [q.version for q in snapshot.promotions] == [P2]
    assert len(snapshot.ignored) == 2 and all("not a valid past time" in why for why in snapshot.ignored)
    assert not valid_version("zzzz") and valid_version(P1)


def test_an_entry_a_retrain_published_is_not_served_until_a_promotion_names_it():
    """N10: a retrain killed after publishing, on a store without promotions, changed
    the default (its 7-day holdout figure beat make train's 28-day ones)."""
    orphan = entry("gbdt", V3, run="20210401T000000Z-dddddd", rmse_log=0.01, r2=0.99)
    assert served([*ENTRIES, orphan], [])[0] is OLD_GOOD
    named = [promotion(P3, gbdt=(V3, {"rmse_log": 0.4}))]
    assert served([*ENTRIES, orphan], named, "gbdt")[0] is orphan


def test_the_default_type_is_the_best_backtest_mean_when_every_served_type_has_one():
    gbdt = entry("gbdt", V2, rmse_log=0.60, backtest={"rmse_log": 0.62})
    rf = entry("rf", V2, rmse_log=0.55, backtest={"rmse_log": 0.69})   # won one holdout only
    assert served([gbdt, rf], [])[0] is gbdt
    assert served([gbdt, entry("rf", V2, rmse_log=0.55)], [])[0].model_type == "rf"


def test_models_lists_what_is_served_and_a_bounded_history():
    many = [entry("gbdt", f"202102{d:02d}T000000Z-aaaaaa", rmse_log=0.5 - d / 100) for d in range(1, 21)]
    snapshot = Snapshot.of("regress", [*many, NEW_RF], [])
    listed = snapshot.history()
    assert snapshot.default() in listed and NEW_RF in listed
    assert len([e for e in listed if e.model_type == "gbdt"]) <= 6
