"""The classify function in process: functions_framework.create_app(...).test_client().

What is specific to classify; the contract both functions share is tests/service/test_contract.py.
"""

from __future__ import annotations

import datetime as dt

import pytest

pytest.register_assert_rewrite("tests.function_clients")

from tests.function_clients import (  # noqa: E402
    OLD_BODIES,
    OLD_RECORD,
    SNAKE_RECORD,
    error_of,
)
from tests.best_entry import best_entry  # noqa: E402

pytest_plugins = ["tests.function_clients"]


def check_classification(body: dict, n: int) -> None:
    assert len(body["predictions"]) == len(body["label"]) == len(body["probabilities"]) == n
    for prediction, label, probability in zip(body["predictions"], body["label"],
                                              body["probabilities"]):
        assert prediction in (0, 1) and isinstance(prediction, int)
        assert label == ("forte" if prediction else "faible")
        assert 0.0 <= probability <= 1.0
        assert (probability >= 0.5) == (prediction == 1)


def test_old_system_body(classify_fn, trained_store):
    from velocast.catalog import registry
    from velocast.catalog.store import open_store

    r = classify_fn.post(OLD_BODIES["classify"])
    assert r.status_code == 200, r.json
    body = r.json
    check_classification(body, 1)
    model = body["model"]
    best = best_entry(registry.list_entries(open_store(str(trained_store)), "classify"),
                         "classify")
    assert model["task"] == "classify"
    assert model["type"] == "affluence"
    assert model["version"] == best.version
    assert model["metric"] == "f1_score"
    assert model["metric_value"] == pytest.approx(best.metrics["f1_score"])
    assert dt.date.fromisoformat(model["trained_from"][:10]) < \
        dt.date.fromisoformat(model["trained_to"][:10])
    # The synthetic sample has no such counter: predicted from its coordinates.
    assert [w["record"] for w in body["warnings"]] == [0]


def test_rush_hour_is_busier_than_night(classify_fn):
    records = [{**SNAKE_RECORD, "date_et_heure_de_comptage": f"2025-05-20T{h}:00:00+02:00"}
               for h in ("03", "08", "18")]
    body = classify_fn.post({"records": records}).json
    check_classification(body, 3)
    night, morning, evening = body["probabilities"]
    assert night < morning and night < evening
    assert body["label"][0] == "faible"


def test_choosing_by_another_metric(classify_fn):
    r = classify_fn.post({"records": [OLD_RECORD], "metric": "roc_auc", "model_type": "affluence"})
    assert r.status_code == 200
    assert r.json["model"]["metric"] == "roc_auc"
    assert r.json["model"]["metric_value"] == r.json["model"]["metrics"]["roc_auc"]


@pytest.mark.parametrize("option,value", [("metric", "r2"), ("metric", "rmse"),
                                          ("model_type", "nn")])
def test_regress_options_are_refused(classify_fn, option, value):
    r = classify_fn.post({"records": [OLD_RECORD], option: value})
    assert r.status_code == 422
    assert error_of(r)["details"][0]["field"] == option
