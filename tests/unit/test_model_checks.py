"""A model is served only after it proves it can serve (issue 10, item 3).

Each check has a model or card that only it catches: an ONNX input of another width or
name, a regressor published under classify, outputs of the wrong shape, non-finite or
out-of-range outputs, a counter table of the wrong shape or with NaN, a card changed
after publishing or without sha256, an entry pointing at another model's files. Through
a function: the bad version is refused, the last good one keeps serving (on Sundays and
public holidays too), and the refusal is logged once.
Tiny hand-built ONNX graphs stand in for broken models; everything runs in process.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.function_clients import KNOWN_COUNTER, load_function
from velocast.catalog import model_checks, registry
from velocast.core.features import N_FEATURES, ONNX_INPUT_NAME, CounterTable, build_matrix
from velocast.train.publish import copy_store
from velocast.catalog.store import LocalStore
from tests.best_entry import best_entry

# Sunday 2025-05-18 and Thursday 2025-05-01 (Labour Day): day type 2, where a
# (n, 2, 24) profile used to fail.
SUNDAY_AND_HOLIDAY = {"records": [
    {"nom_du_compteur": KNOWN_COUNTER, "date_et_heure_de_comptage": when}
    for when in ("2025-05-18T15:00:00+02:00", "2025-05-01T09:00:00+02:00",
                 "2025-05-20T08:00:00+02:00")]}


# ---------------------------------------------------------------- hand-built ONNX graphs

def _graph_model(nodes, outputs, width=N_FEATURES, input_name=ONNX_INPUT_NAME, consts=None):
    inputs = [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [None, width])]
    initializers = [numpy_helper.from_array(np.asarray(v), k) for k, v in (consts or {}).items()]
    graph = helper.make_graph(nodes, "broken", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8   # opset 17's IR, which every onnxruntime since 1.13 reads
    return model.SerializeToString()


def _regressor(scale=1.0, offset=0.0, width=N_FEATURES, input_name=ONNX_INPUT_NAME):
    """variable = scale * sum(features) + offset, shape (rows, 1)."""
    nodes = [helper.make_node("ReduceSum", [input_name, "axes"], ["sum"], keepdims=1),
             helper.make_node("Mul", ["sum", "scale"], ["scaled"]),
             helper.make_node("Add", ["scaled", "offset"], ["variable"])]
    out = [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, 1])]
    return _graph_model(nodes, out, width, input_name, {
        "axes": np.array([1], np.int64), "scale": np.array(scale, np.float32),
        "offset": np.array(offset, np.float32)})


def _columns(first: int, last: int, name: str):
    return helper.make_node("Slice", [ONNX_INPUT_NAME, f"{name}_s", f"{name}_e", "one"], [name]), {
        f"{name}_s": np.array([first], np.int64), f"{name}_e": np.array([last], np.int64)}


def _three_column_regressor():
    node, consts = _columns(0, 3, "variable")
    out = [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, 3])]
    return _graph_model([node], out, consts={**consts, "one": np.array([1], np.int64)})


def _unbounded_classifier():
    """probabilities = features[:, 0:2] (the hour, 0..23): the layout of a classifier,
    values that are no probabilities."""
    node, consts = _columns(0, 2, "probabilities")
    nodes = [node, helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0)]
    out = [helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
           helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])]
    return _graph_model(nodes, out, consts={**consts, "one": np.array([1], np.int64)})


# --------------------------------------------------------------------- shared set-up

@pytest.fixture
def store(trained_store, tmp_path) -> LocalStore:
    copied = LocalStore(tmp_path / "store")
    copy_store(LocalStore(trained_store), copied)
    return copied


def _good(store, task: str) -> registry.Entry:
    return best_entry(registry.list_entries(store, task), task)


def _session(data: bytes):
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


def _table(store, entry) -> CounterTable:
    return CounterTable.from_dict(registry.read_card(store, entry)["counter_table"])


def _check(store, task: str, onnx: bytes, table=None):
    model_checks.check(task, _session(onnx), table or _table(store, _good(store, task)))


def _refusal(store, task: str, onnx: bytes, table=None) -> str:
    with pytest.raises(model_checks.ModelCheckError) as caught:
        _check(store, task, onnx, table)
    return str(caught.value)


def _plant(store, good: registry.Entry, version: str, *, onnx: bytes | None = None,
           edit_card=None, hash_card=True) -> registry.Entry:
    """A better-scored version beside `good`, its hashes consistent with what is written
    (so only the planted defect can refuse it)."""
    onnx = store.read(good.onnx_path) if onnx is None else onnx
    base = f"models/{good.task}/{good.model_type}/{version}"
    metrics = {k: (v / 2 if registry.METRIC_DIRECTIONS[k] == "min" else (1 + v) / 2)
               for k, v in good.metrics.items()}
    card = registry.read_card(store, good)
    card.update(version=version, onnx_path=f"{base}/model.onnx", card_path=f"{base}/card.json",
                sha256=hashlib.sha256(onnx).hexdigest(), size_bytes=len(onnx), metrics=metrics)
    if edit_card:
        edit_card(card)
    card_bytes = json.dumps(card).encode()   # json writes NaN where publish would refuse it
    store.write_once(f"{base}/model.onnx", onnx)
    store.write_once(f"{base}/card.json", card_bytes)
    card_sha256 = hashlib.sha256(card_bytes).hexdigest() if hash_card else ""
    entry = dataclasses.replace(
        good, version=version, metrics=metrics, onnx_path=f"{base}/model.onnx",
        card_path=f"{base}/card.json", sha256=hashlib.sha256(onnx).hexdigest(),
        size_bytes=len(onnx), card_sha256=card_sha256)
    store.write_once(entry.registry_path, json.dumps(entry.to_dict()).encode())
    return entry


def _first_counter(card) -> dict:
    return next(iter(card["counter_table"]["counters"].values()))


# --------------------------------------------------------------- the ONNX signature

@pytest.mark.parametrize("task", ["classify", "regress"])
def test_every_trained_model_passes_the_checks(store, task):
    for entry in registry.list_entries(store, task):
        _check(store, task, store.read(entry.onnx_path), _table(store, entry))


def test_a_regressor_under_classify_is_refused_for_its_outputs(store):
    regressor = store.read(_good(store, "regress").onnx_path)
    assert "outputs are ['variable']" in _refusal(store, "classify", regressor)


def test_an_input_of_another_width_is_refused(store):
    assert f"expected [rows, {N_FEATURES}]" in _refusal(store, "regress", _regressor(width=16))


def test_an_input_of_another_name_is_refused(store):
    assert "input is 'X'" in _refusal(store, "regress", _regressor(input_name="X"))


def test_an_input_of_another_type_is_refused(store):
    nodes = [helper.make_node("ReduceSum", [ONNX_INPUT_NAME, "axes"], ["sum"], keepdims=1),
             helper.make_node("Cast", ["sum"], ["variable"], to=TensorProto.FLOAT)]
    model = helper.make_model(helper.make_graph(
        nodes, "double", [helper.make_tensor_value_info(ONNX_INPUT_NAME, TensorProto.DOUBLE,
                                                        [None, N_FEATURES])],
        [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, 1])],
        [numpy_helper.from_array(np.array([1], np.int64), "axes")]),
        opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    assert "input is tensor(double)" in _refusal(store, "regress", model.SerializeToString())


def test_a_second_input_is_refused(store):
    model = onnx.load_from_string(_regressor())
    model.graph.input.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, [None]))
    assert "2 inputs" in _refusal(store, "regress", model.SerializeToString())


# ------------------------------------------------------------------ the canary batch

def test_the_canary_covers_day_types_a_holiday_an_unknown_counter_and_hours(store):
    table = _table(store, _good(store, "regress"))
    records = model_checks.canary_records(table)
    batch = build_matrix(records, table)
    column = {name: batch.matrix[:, i] for i, name in enumerate(
        ("hour", "hour_sin", "hour_cos", "weekday", "day_type", "doy_sin", "doy_cos",
         "public_holiday"))}
    assert set(column["day_type"].tolist()) == {0, 1, 2}
    assert 1 in column["public_holiday"] and 3 in column["weekday"]   # a Thursday holiday
    assert len(set(column["hour"].tolist())) >= 4
    assert set(records.names) == set(table.names) | {model_checks.UNKNOWN_NAME}
    assert len(batch.unknown_counters) > 0


def test_non_finite_outputs_are_refused(store):
    assert "not finite" in _refusal(store, "regress", _regressor(scale=np.inf))


def test_a_log_count_whose_count_overflows_is_refused(store):
    # log1p(count) = 1000 is finite; the count, expm1(1000), is not.
    assert "non-finite" in _refusal(store, "regress", _regressor(scale=0.0, offset=1000.0))


def test_an_output_of_the_wrong_width_is_refused(store):
    assert "output 'variable' has shape" in _refusal(store, "regress", _three_column_regressor())


def test_probabilities_outside_0_1_are_refused(store):
    assert "outside [0, 1]" in _refusal(store, "classify", _unbounded_classifier())


def _bare_table(store, **changes) -> CounterTable:
    """The good table with arrays replaced, built without from_dict's validation."""
    table = _table(store, _good(store, "regress"))
    return dataclasses.replace(table, **changes)


def test_a_table_that_cannot_build_features_is_refused_by_the_canary(store):
    table = _table(store, _good(store, "regress"))
    reason = _refusal(store, "regress", store.read(_good(store, "regress").onnx_path),
                      _bare_table(store, profile=table.profile[:, :2]))
    assert "cannot build features" in reason


def test_a_table_giving_non_finite_features_is_refused_by_the_canary(store):
    table = _table(store, _good(store, "regress"))
    reason = _refusal(store, "regress", store.read(_good(store, "regress").onnx_path),
                      _bare_table(store, mean_count=np.full_like(table.mean_count, np.nan)))
    assert "non-finite features" in reason


# ------------------------------------------------------------------- the counter table

@pytest.mark.parametrize("data, reason", [
    ({"counters": {}, "days_range": [0, 1]}, "no counter"),
    ({"counters": {"a": {"latitude": 48.8, "longitude": 2.3, "mean_count": -3.0,
                         "recent_log_mean": 1.0, "profile": [[0.0] * 24] * 3}},
      "days_range": [0, 1]}, "negative"),
    ({"counters": {"a": {"latitude": 91.0, "longitude": 2.3, "mean_count": 3.0,
                         "recent_log_mean": 1.0, "profile": [[0.0] * 24] * 3}},
      "days_range": [0, 1]}, "outside the globe"),
    ({"counters": {"a": {"latitude": 48.8, "longitude": 2.3, "mean_count": 3.0,
                         "recent_log_mean": float("nan"), "profile": [[0.0] * 24] * 3}},
      "days_range": [0, 1]}, "recent_log_mean is not finite"),
])
def test_a_counter_table_with_impossible_values_is_refused(data, reason):
    with pytest.raises(ValueError, match=reason):
        CounterTable.from_dict(data)


def _edited_table(store, edit) -> dict:
    card = registry.read_card(store, _good(store, "regress"))
    edit(card)
    return card["counter_table"]


def _wrong_profile(card):
    for counter in card["counter_table"]["counters"].values():
        counter["profile"] = counter["profile"][:2]


def _nan_table(card):
    for counter in card["counter_table"]["counters"].values():
        counter["mean_count"] = float("nan")


def test_a_profile_of_the_wrong_shape_is_refused(store):
    with pytest.raises(ValueError, match=r"profile has shape \(\d+, 2, 24\)"):
        CounterTable.from_dict(_edited_table(store, _wrong_profile))


@pytest.mark.parametrize("field", ["latitude", "mean_count", "profile"])
def test_a_nan_in_the_counter_table_is_refused(store, field):
    def poison(card):
        counter = _first_counter(card)
        counter[field] = [[float("nan")] * 24] * 3 if field == "profile" else float("nan")
    with pytest.raises(ValueError, match=f"{field} is not finite"):
        CounterTable.from_dict(_edited_table(store, poison))


# ------------------------------------------------------------- registry integrity

def test_publish_pins_the_card_bytes_in_the_entry(store):
    good = _good(store, "regress")
    added = {"version", "sha256", "size_bytes", "onnx_path", "card_path", "published_at"}
    card = {k: v for k, v in registry.read_card(store, good).items() if k not in added}
    entry = registry.publish(store, store.read(good.onnx_path), card)
    stored = json.loads(store.read(entry.registry_path))
    assert stored["card_sha256"] == hashlib.sha256(store.read(entry.card_path)).hexdigest()


def test_a_card_changed_after_publishing_is_refused(store):
    entry = _good(store, "regress")
    card = registry.read_card(store, entry)
    _first_counter(card)["mean_count"] *= 2   # still a valid table: only the hash tells
    Path(store.root, entry.card_path).write_bytes(json.dumps(card).encode())
    with pytest.raises(registry.IntegrityError, match="card sha256"):
        registry.read_verified(store, entry, entry.feature_spec_version)


def test_a_card_without_sha256_is_refused(store):
    bad = _plant(store, _good(store, "regress"), "29991231T235959Z-nosha",
                 edit_card=lambda card: card.pop("sha256"))
    with pytest.raises(registry.IntegrityError, match="card sha256 None"):
        registry.read_verified(store, bad, bad.feature_spec_version)


def test_an_entry_without_card_sha256_still_serves_with_a_warning(store, caplog):
    """Entries published before cards were hashed keep serving (their stores must keep
    working): the choice made for them, logged at load."""
    old = _plant(store, _good(store, "regress"), "29991231T235959Z-old", hash_card=False)
    assert "card_sha256" not in json.loads(store.read(old.registry_path))
    with caplog.at_level(logging.WARNING, logger="velocast.registry"):
        card, _ = registry.read_verified(store, old, old.feature_spec_version)
    assert card["version"] == old.version
    assert "has no card_sha256" in caplog.text


def test_an_entry_pointing_at_another_model_types_files_is_refused(store):
    entries = {e.model_type: e for e in registry.list_entries(store, "regress")}
    rf, gbdt = entries["rf"], entries["gbdt"]
    # Hashes and sizes all agree with gbdt's files; only the paths are wrong for rf.
    thief = dataclasses.replace(rf, onnx_path=gbdt.onnx_path, card_path=gbdt.card_path,
                                sha256=gbdt.sha256, size_bytes=gbdt.size_bytes,
                                card_sha256=gbdt.card_sha256)
    with pytest.raises(registry.IntegrityError, match="entry paths"):
        registry.read_verified(store, thief, thief.feature_spec_version)


# -------------------------------------------------- through a function: refused, last good kept

class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


# task -> how the bad version is planted, a word its refusal must contain
ISSUE_CASES = {
    "regressor_under_classify": ("classify", lambda s, g, v: _plant(
        s, g, v, onnx=s.read(_good(s, "regress").onnx_path)), "outputs"),
    "input_of_another_width": ("regress", lambda s, g, v: _plant(
        s, g, v, onnx=_regressor(width=16)), "shape"),
    "profile_of_wrong_shape": ("regress", lambda s, g, v: _plant(
        s, g, v, edit_card=_wrong_profile), "profile"),
    "nan_counter_table": ("classify", lambda s, g, v: _plant(
        s, g, v, edit_card=_nan_table), "not finite"),
}


@pytest.mark.parametrize("case", sorted(ISSUE_CASES))
def test_a_model_that_cannot_serve_is_refused_once_and_the_last_good_one_serves(store, case):
    task, plant, reason_word = ISSUE_CASES[case]
    good = _good(store, task)
    fn = load_function(task, MODEL_STORE=store.root, REFRESH_SECONDS="3600")
    before = fn.post(SUNDAY_AND_HOLIDAY)
    assert before.status_code == 200 and before.json["model"]["version"] == good.version

    bad = plant(store, good, "29991231T235959Z-cannot")
    handler = _Records()
    logger = logging.getLogger("velocast.model_cache")
    logger.addHandler(handler)
    try:
        for _ in range(2):
            refresh = fn.post(path="/refresh")
            assert refresh.status_code == 200 and refresh.json["changed"] == [], refresh.json
            for _ in range(2):
                again = fn.post(SUNDAY_AND_HOLIDAY)
                assert again.status_code == 200, again.get_data()[:500]
                assert again.json == before.json
    finally:
        logger.removeHandler(handler)
    reason = refresh.json["refused"][bad.version]
    assert reason_word in reason, reason
    refusals = [m for m in handler.messages if bad.version in m]
    assert len(refusals) == 1 and reason in refusals[0], handler.messages
