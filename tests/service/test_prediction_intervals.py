"""regress's 80 % prediction intervals: `lower`/`upper` per record, from the card."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from velocast.core import intervals, tasks

from velocast.catalog import registry
from velocast.core.features import CounterTable, build_matrix
from velocast.core.schema import parse_records
from velocast.catalog.store import open_store

pytest.register_assert_rewrite("tests.function_clients")

from tests.function_clients import OLD_RECORD, SNAKE_RECORD  # noqa: E402

pytest_plugins = ["tests.function_clients"]

HOURS = [f"2025-05-20T{h:02d}:00:00+02:00" for h in (3, 8, 13, 18)]


def served_card(trained_store, version: str) -> dict:
    store = open_store(str(trained_store))
    entry = next(e for e in registry.list_entries(store, "regress") if e.version == version)
    return registry.read_card(store, entry), registry.read_model_bytes(store, entry)


def test_each_record_gets_bounds_around_its_prediction(regress_fn):
    records = [{**SNAKE_RECORD, "date_et_heure_de_comptage": d} for d in HOURS] + [OLD_RECORD]
    for model_type in ("gbdt", "rf", "nn"):
        body = regress_fn.post({"records": records, "model_type": model_type}).json
        assert len(body["lower"]) == len(body["upper"]) == len(body["predictions"]) == 5
        assert body["interval_level"] == 0.8
        for low, mid, high in zip(body["lower"], body["predictions"], body["upper"]):
            assert 0 <= low <= mid <= high
        assert max(h - lo for lo, h in zip(body["lower"], body["upper"])) > 0


def test_bounds_are_the_cards_offsets_applied_to_the_models_log_output(regress_fn, trained_store):
    records = [{**SNAKE_RECORD, "date_et_heure_de_comptage": d} for d in HOURS]
    body = regress_fn.post({"records": records, "model_type": "gbdt"}).json
    card, model_bytes = served_card(trained_store, body["model"]["version"])
    spec = card["interval"]
    assert spec["level"] == 0.8 and spec["lower_log"] <= 0 <= spec["upper_log"]
    assert "holdout" in spec["calibration"]     # no backtest report for the sample
    matrix = build_matrix(parse_records(records),
                          CounterTable.from_dict(card["counter_table"])).matrix
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    log = session.run(None, {card["onnx"]["input"]: matrix})[0].reshape(-1).astype(np.float64)
    np.testing.assert_allclose(body["lower"], np.round(np.expm1(log + spec["lower_log"]), 1),
                               atol=0.051)
    np.testing.assert_allclose(body["upper"], np.round(np.expm1(log + spec["upper_log"]), 1),
                               atol=0.051)


def test_a_card_without_an_interval_serves_predictions_only():
    class Model:
        interval = None

    response = tasks.TASKS["regress"].answer([np.array([[1.0], [2.0]], np.float32)], Model())
    assert response == {"predictions": [round(float(np.expm1(np.float32(1.0))), 1),
                                        round(float(np.expm1(np.float32(2.0))), 1)]}
    assert intervals.from_card({"task": "regress"}) is None


@pytest.mark.parametrize("spec", [
    "wide", {"level": 80, "lower_log": -1, "upper_log": 1},
    {"level": 0.8, "lower_log": 1, "upper_log": -1},
    {"level": 0.8, "lower_log": [0.0] * 24, "upper_log": 1},
    {"level": 0.8, "lower_log": 0.1, "upper_log": 1},
    {"level": 0.8, "lower_log": float("nan"), "upper_log": 1},
])
def test_a_malformed_interval_refuses_the_model(spec):
    with pytest.raises(ValueError, match="interval"):
        intervals.from_card({"interval": spec})
