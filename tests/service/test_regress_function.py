"""The regress function in process: functions_framework.create_app(...).test_client().

What is specific to regress (the contract both functions share is tests/service/test_contract.py),
and that the two main.py modules never collide in one process.
"""

from __future__ import annotations

import math
import sys

import pytest

pytest.register_assert_rewrite("tests.function_clients")

from tests.function_clients import (  # noqa: E402
    OLD_BODIES,
    OLD_RECORD,
    SNAKE_RECORD,
    SOURCES,
    load_function,
)
from tests.best_entry import best_entry  # noqa: E402

pytest_plugins = ["tests.function_clients"]


def entries(trained_store):
    from velocast.catalog import registry
    from velocast.catalog.store import open_store

    return registry.list_entries(open_store(str(trained_store)), "regress")


def test_old_system_body(regress_fn, trained_store):

    r = regress_fn.post(OLD_BODIES["regress"])
    assert r.status_code == 200, r.json
    body = r.json
    assert len(body["predictions"]) == 1
    assert isinstance(body["predictions"][0], float) and body["predictions"][0] >= 0
    assert "label" not in body
    best_nn = best_entry(entries(trained_store), "regress", "r2", "nn")
    model = body["model"]
    assert model["task"] == "regress"
    assert model["type"] == "nn"
    assert model["version"] == best_nn.version
    assert model["metric"] == "r2"
    assert model["metric_value"] == pytest.approx(best_nn.metrics["r2"])
    assert model["trained_from"] < model["trained_to"]
    assert [w["record"] for w in body["warnings"]] == [0]


def test_default_is_best_by_rmse_log(regress_fn, trained_store):

    r = regress_fn.post({"records": [SNAKE_RECORD]})
    assert r.status_code == 200
    best = best_entry(entries(trained_store), "regress")
    assert r.json["model"]["version"] == best.version
    assert r.json["model"]["metric"] == "rmse_log"


@pytest.mark.parametrize("model_type", ["gbdt", "rf", "nn"])
@pytest.mark.parametrize("metric", ["rmse", "r2", "mae", "rmse_log"])
def test_every_type_and_metric(regress_fn, model_type, metric):
    r = regress_fn.post({"records": [SNAKE_RECORD, OLD_RECORD], "model_type": model_type,
                         "metric": metric})
    assert r.status_code == 200, r.json
    assert r.json["model"]["type"] == model_type
    assert r.json["model"]["metric"] == metric
    assert all(math.isfinite(p) and p >= 0 for p in r.json["predictions"])


def test_rush_hour_counts_more_than_night(regress_fn):
    records = [{**SNAKE_RECORD, "date_et_heure_de_comptage": f"2025-05-20T{h}:00:00+02:00"}
               for h in ("03", "08")]
    night, morning = regress_fn.post({"records": records}).json["predictions"]
    assert night < morning


@pytest.mark.parametrize("option,value", [("metric", "f1_score"), ("model_type", "affluence")])
def test_classify_options_are_refused(regress_fn, option, value):
    r = regress_fn.post({"records": [OLD_RECORD], option: value})
    assert r.status_code == 422
    assert r.json["error"]["details"][0]["field"] == option


def test_both_functions_side_by_side(classify_fn, regress_fn, trained_store):
    """Both main.py files loaded in one process: distinct modules, both answer."""
    assert classify_fn.module is not regress_fn.module
    assert classify_fn.module.__file__ == str(SOURCES["classify"].resolve())
    assert regress_fn.module.__file__ == str(SOURCES["regress"].resolve())
    assert classify_fn.service is not regress_fn.service
    assert (classify_fn.service.task, regress_fn.service.task) == ("classify", "regress")
    assert "main" not in sys.modules  # nobody can reach an app through the shared name
    # A third load (a new classify app) disturbs neither.
    other = load_function("classify", MODEL_STORE=str(trained_store))
    assert other.module is not classify_fn.module
    for _ in range(2):  # interleaved
        c = classify_fn.post(OLD_BODIES["classify"])
        r = regress_fn.post(OLD_BODIES["regress"])
        o = other.post(OLD_BODIES["classify"])
        assert c.status_code == r.status_code == o.status_code == 200
        assert c.json["label"] and c.json["model"]["type"] == "affluence"
        assert "label" not in r.json and r.json["model"]["type"] == "nn"
        assert o.json["predictions"] == c.json["predictions"]
