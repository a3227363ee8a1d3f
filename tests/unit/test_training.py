"""The offline pipeline end to end: holdout metrics, ONNX export, parity gate,
publication, and the serving path reproducing what training exported."""

from __future__ import annotations

import datetime as dt
import hashlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from sklearn.tree import DecisionTreeRegressor

from velocast.catalog import registry
from velocast.core.features import (FEATURE_NAMES, FEATURE_SPEC_VERSION, N_FEATURES, CounterTable,
                                    build_matrix)
from velocast.core.local_time import PARIS
from velocast.core.schema import parse_records
from velocast.catalog.store import LocalStore
from velocast.train import export, pipeline, sample
from velocast.train.data import load_counts

from tests.conftest import SAMPLE_END, SAMPLE_HOLDOUT_DAYS as HOLDOUT_DAYS, SAMPLE_START, one_openmp_thread

MAX_ONNX_BYTES = 5 * 1024 * 1024
MODEL_TASKS = {"gbdt": "regress", "rf": "regress", "nn": "regress", "affluence": "classify"}


def local_date(seconds: float) -> dt.date:
    return dt.datetime.fromtimestamp(seconds, tz=PARIS).date()


def paris_midnight(day: dt.date) -> float:
    return dt.datetime.combine(day, dt.time(), tzinfo=PARIS).timestamp()


def tail_split(frame: pd.DataFrame, days: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The last `days` local days, computed here rather than trusted from the pipeline."""
    last = local_date(float(frame["epoch"].max()))
    cut = paris_midnight(last - dt.timedelta(days=days - 1))
    return frame[frame["epoch"] < cut], frame[frame["epoch"] >= cut]


@dataclass
class Run:
    store_dir: Path
    outcomes: list
    seconds: float

    @property
    def store(self) -> LocalStore:
        return LocalStore(self.store_dir)

    def entries(self) -> dict[str, registry.Entry]:
        return {e.model_type: e for e in registry.list_entries(self.store)}

    def card(self, model_type: str) -> dict:
        return registry.read_card(self.store, self.entries()[model_type])


@pytest.fixture(scope="module")
def run(trained_run) -> Run:
    """All four models, trained once per session (tests/conftest.py); read-only here."""
    return Run(trained_run.store_dir, trained_run.outcomes, trained_run.seconds)


# --- a) a full training run -----------------------------------------------------------

def test_every_model_is_published_and_the_registry_lists_four_entries(run):
    assert [o.model_type for o in run.outcomes] == list(MODEL_TASKS)
    for outcome in run.outcomes:
        assert outcome.refused == "", outcome.refused
        assert outcome.published is not None
    entries = registry.list_entries(run.store)
    assert len(entries) == 4
    assert {e.model_type: e.task for e in entries} == MODEL_TASKS
    assert {e.version for e in entries} == {o.published.version for o in run.outcomes}


def test_each_onnx_file_is_at_most_5_mb_and_is_a_loadable_onnx_model(run):
    for model_type, entry in run.entries().items():
        data = (run.store_dir / entry.onnx_path).read_bytes()
        assert 0 < len(data) == entry.size_bytes <= MAX_ONNX_BYTES, model_type
        model = onnx.load_from_string(data)
        assert [i.name for i in model.graph.input] == [export.INPUT_NAME]
        opsets = {o.domain: o.version for o in model.opset_import}
        assert opsets.get("", opsets.get("ai.onnx")) <= export.TARGET_OPSET[""]


def test_each_card_has_the_fields_design_md_lists(run, sample_frame):
    for model_type, entry in run.entries().items():
        card = run.card(model_type)
        assert card["task"] == MODEL_TASKS[model_type]
        assert card["model_type"] == model_type
        assert card["version"] == entry.version
        assert set(card["metrics"]) == ({"rmse", "r2", "mae", "rmse_log"} if card["task"] == "regress"
                                        else {"f1_score", "accuracy", "precision", "recall", "roc_auc"})
        assert all(np.isfinite(v) for v in card["metrics"].values())
        assert (card["trained_from"], card["trained_to"]) == \
            (SAMPLE_START.isoformat(), (SAMPLE_END - dt.timedelta(days=1)).isoformat())
        assert card["training_rows"] == len(sample_frame)
        assert card["feature_spec_version"] == FEATURE_SPEC_VERSION == entry.feature_spec_version
        assert card["feature_names"] == list(FEATURE_NAMES)
        table = card["counter_table"]
        assert set(table["counters"]) == {c[0] for c in sample.COUNTERS}
        assert np.array(next(iter(table["counters"].values()))["profile"]).shape == (3, 24)
        for library in ("python", "numpy", "scikit-learn", "skl2onnx", "onnx", "onnxruntime"):
            assert card["libraries"][library], library
        assert card["libraries"]["onnxruntime"] == ort.__version__


def test_each_card_sha256_matches_the_stored_onnx_bytes(run):
    for model_type, entry in run.entries().items():
        card = run.card(model_type)
        data = (run.store_dir / card["onnx_path"]).read_bytes()
        assert card["sha256"] == entry.sha256 == hashlib.sha256(data).hexdigest()
        assert card["size_bytes"] == len(data)
        assert registry.read_model_bytes(run.store, entry) == data


def test_the_parity_gap_is_recorded_and_within_1e_4(run):
    for outcome in run.outcomes:
        card = run.card(outcome.model_type)
        gap = card["onnx"]["parity_max_abs_diff"]
        assert gap == outcome.parity_gap
        assert 0 <= gap <= 1e-4


def test_card_metrics_cover_exactly_the_last_holdout_days(run, sample_frame):
    earlier, holdout = tail_split(sample_frame, HOLDOUT_DAYS)
    last_day = SAMPLE_END - dt.timedelta(days=1)
    for outcome in run.outcomes:
        card = run.card(outcome.model_type)
        source = card["metrics_source"]
        assert source["from"] == (last_day - dt.timedelta(days=HOLDOUT_DAYS - 1)).isoformat()
        assert source["to"] == last_day.isoformat()
        assert source["rows"] == len(holdout) == HOLDOUT_DAYS * 24 * len(sample.COUNTERS)
        assert source["from"] > local_date(float(earlier["epoch"].max())).isoformat()
        assert card["metrics"] == pytest.approx(outcome.metrics)


def test_holdout_metrics_are_those_of_a_model_fitted_only_on_earlier_rows(run, sample_frame):
    # Refit the random forest (deterministic, and the fastest) on the rows before the
    # holdout and score it on the holdout: the card must say exactly that.
    earlier, holdout = tail_split(sample_frame, HOLDOUT_DAYS)
    earlier = pipeline.drop_outages(earlier)
    table = pipeline.fit_table(earlier)
    fit_part = pipeline.prepare(earlier, table)
    # Regressors learn log1p(count) relative to the counter's recent level, which they
    # do not see, nor the day-of-year columns.
    recent = FEATURE_NAMES.index("counter_recent")
    unseen = [recent, FEATURE_NAMES.index("doy_sin"), FEATURE_NAMES.index("doy_cos")]
    estimator = pipeline.MODELS["rf"].make().fit(
        np.delete(fit_part.matrix, unseen, axis=1), fit_part.log_count - fit_part.matrix[:, recent],
        sample_weight=fit_part.recency_weight)
    matrix = pipeline.prepare(holdout, table).matrix
    predicted = estimator.predict(np.delete(matrix, unseen, axis=1)) + matrix[:, recent]
    truth = np.log1p(holdout["count"].to_numpy())
    rmse_log = float(np.sqrt(np.mean((truth - predicted) ** 2)))
    assert run.card("rf")["metrics"]["rmse_log"] == pytest.approx(rmse_log, rel=1e-9)


def test_synthetic_holdout_metrics_are_sane(run):
    metrics = {o.model_type: o.metrics for o in run.outcomes}
    for model_type in ("gbdt", "rf", "nn"):
        assert 0.5 < metrics[model_type]["r2"] <= 1, (model_type, metrics[model_type])
    assert metrics["affluence"]["f1_score"] > 0.8
    assert metrics["affluence"]["roc_auc"] > 0.9


def test_the_store_holds_no_pickle_or_joblib_file(run):
    files = [p for p in run.store_dir.rglob("*") if p.is_file()]
    assert len(files) == 4 * 3       # model, card and registry entry per model
    assert not [p for p in files if p.suffix.lower() in {".pkl", ".pickle", ".joblib"}]
    for p in files:
        head = p.read_bytes()[:2]
        assert not (head[:1] == b"\x80" and 2 <= head[1] <= 5), f"{p} looks like a pickle"


def test_the_serving_path_reproduces_the_exported_models_output(run, sample_frame):
    """What a function does: request records -> schema -> build_matrix with the card's
    counter table -> onnxruntime. It must match ONNX on the training-side features."""
    _, holdout = tail_split(sample_frame, HOLDOUT_DAYS)
    training_side = pipeline.prepare(
        holdout, pipeline.fit_table(pipeline.drop_outages(sample_frame))).matrix
    records = [
        {"nom_du_compteur": name,
         "date_et_heure_de_comptage": dt.datetime.fromtimestamp(ts, tz=PARIS).isoformat(sep=" "),
         "coordonnées_géographiques": f"{lat}, {lon}"}
        for name, ts, lat, lon in zip(holdout["counter"], holdout["epoch"],
                                      holdout["latitude"], holdout["longitude"])]
    parsed = parse_records(records)
    for model_type, entry in run.entries().items():
        card = run.card(model_type)
        table = CounterTable.from_dict(card["counter_table"])
        batch = build_matrix(parsed, table)
        assert batch.unknown_counters == ()
        assert batch.matrix.shape == (len(holdout), N_FEATURES)
        np.testing.assert_allclose(batch.matrix, training_side, rtol=0, atol=1e-5)

        session = ort.InferenceSession(registry.read_model_bytes(run.store, entry),
                                       providers=["CPUExecutionProvider"])
        input_name = card["onnx"]["input"]

        def output(matrix):
            result = session.run(None, {input_name: matrix})
            if card["task"] == "classify":
                return np.asarray(result[1])[:, 1]
            return np.asarray(result[0]).reshape(-1)

        served, trained = output(batch.matrix), output(training_side)
        assert np.isfinite(served).all()
        np.testing.assert_allclose(served, trained, rtol=0, atol=1e-4, err_msg=model_type)


# --- b) the parity gate ---------------------------------------------------------------

def test_a_model_whose_onnx_output_differs_is_not_published(sample_frame, tmp_path,
                                                            monkeypatch, capsys):
    real_to_onnx = export.to_onnx

    def wrong_model(estimator, task):
        rng = np.random.default_rng(0)
        stand_in = DecisionTreeRegressor(max_depth=2, random_state=0).fit(
            rng.normal(size=(200, N_FEATURES)), rng.normal(size=200) * 5)
        return real_to_onnx(stand_in, task)

    monkeypatch.setattr(export, "to_onnx", wrong_model)
    outcomes = pipeline.train(sample_frame, str(tmp_path / "store"), ["rf"], HOLDOUT_DAYS)

    (outcome,) = outcomes
    assert outcome.published is None
    assert outcome.parity_gap > export.PARITY_TOLERANCE
    assert "differs from scikit-learn" in outcome.refused
    assert f"{outcome.parity_gap:.2e}" in outcome.refused
    assert registry.list_entries(LocalStore(tmp_path / "store")) == []
    assert not [p for p in (tmp_path / "store").rglob("*") if p.is_file()]
    assert "rf: NOT published: ONNX output differs" in capsys.readouterr().err
    row = pipeline.summary_table(outcomes).splitlines()[1]
    assert "differs from scikit-learn" in row and "published" not in row


def test_a_parity_gap_just_over_the_tolerance_is_refused(sample_frame, tmp_path, monkeypatch):
    monkeypatch.setattr(export, "parity_gap", lambda *args: 2 * export.PARITY_TOLERANCE)
    (outcome,) = pipeline.train(sample_frame, str(tmp_path / "store"), ["rf"], HOLDOUT_DAYS)
    assert outcome.published is None and "differs" in outcome.refused
    assert registry.list_entries(LocalStore(tmp_path / "store")) == []


def test_an_oversized_onnx_file_is_not_published(sample_frame, tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "MAX_ONNX_BYTES", 1000)
    (outcome,) = pipeline.train(sample_frame, str(tmp_path / "store"), ["rf"], HOLDOUT_DAYS)
    assert outcome.published is None
    assert f"{outcome.onnx_bytes:,} bytes (> 1,000)" in outcome.refused
    assert registry.list_entries(LocalStore(tmp_path / "store")) == []


def test_an_unknown_model_type_is_rejected_before_any_work(sample_frame, tmp_path):
    with pytest.raises(ValueError, match="unknown model type"):
        pipeline.train(sample_frame, str(tmp_path / "store"), ["gbdt", "xgboost"])
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").iterdir())


# --- c) the holdout is time-based -----------------------------------------------------

def test_split_holdout_takes_the_last_local_days_whatever_the_row_order():
    # Ten days around the spring DST change, two counters, rows shuffled.
    start = paris_midnight(dt.date(2021, 3, 24))
    end = paris_midnight(dt.date(2021, 4, 3))
    epochs = np.arange(start, end, 3600.0)
    frame = pd.DataFrame({
        "counter": np.repeat(["A", "B"], len(epochs)),
        "epoch": np.tile(epochs, 2),
        "latitude": 48.85, "longitude": 2.35, "count": 1.0,
    }).sample(frac=1.0, random_state=3)

    fit_rows, holdout = pipeline.split_holdout(frame, 3)

    assert holdout["epoch"].min() > fit_rows["epoch"].max()
    assert len(fit_rows) + len(holdout) == len(frame)
    assert set(fit_rows.index).isdisjoint(holdout.index)
    assert {local_date(t) for t in holdout["epoch"]} == \
        {dt.date(2021, 3, 31), dt.date(2021, 4, 1), dt.date(2021, 4, 2)}
    # Local midnight, not UTC midnight: 22:00Z on 30 March is already 31 March in Paris.
    assert holdout["epoch"].min() == paris_midnight(dt.date(2021, 3, 31))
    assert (fit_rows["epoch"] < paris_midnight(dt.date(2021, 3, 31))).all()
    # The 23-hour day of the change (28 March) is in the fit rows whole.
    assert sum(local_date(t) == dt.date(2021, 3, 28) for t in fit_rows["epoch"]) == 2 * 23


def test_training_refuses_data_no_longer_than_the_holdout(sample_frame, tmp_path):
    short = sample_frame[sample_frame["epoch"] >= paris_midnight(SAMPLE_END - dt.timedelta(days=5))]
    with pytest.raises(ValueError, match="more than 14 days"):
        pipeline.train(short, None, ["rf"], HOLDOUT_DAYS)


# --- d) acceptance on the real data ---------------------------------------------------

@pytest.mark.real_data
def test_real_data_holdout_metrics_meet_the_acceptance_bar(shared_data):
    # shared_data (tests/conftest.py) skips this on a machine without ../shared/data.
    started = time.perf_counter()
    frame, _ = load_counts(shared_data / "paris-bike-counts-2020-09-01_2021-08-09.csv.gz",
                           report_to=None)

    fit_rows, holdout = pipeline.split_holdout(frame, 28)
    assert local_date(float(holdout["epoch"].min())) == dt.date(2021, 7, 13)
    assert local_date(float(holdout["epoch"].max())) == dt.date(2021, 8, 9)
    assert local_date(float(fit_rows["epoch"].max())) == dt.date(2021, 7, 12)

    with one_openmp_thread():
        outcomes = {o.model_type: o for o in pipeline.train(frame, None, ["gbdt", "affluence"], 28)}
    seconds = time.perf_counter() - started
    rmse_log = outcomes["gbdt"].metrics["rmse_log"]
    f1 = outcomes["affluence"].metrics["f1_score"]
    print(f"\nreal data, 28-day holdout: gbdt rmse_log {rmse_log:.4f} "
          f"(r2 {outcomes['gbdt'].metrics['r2']:.4f}), affluence f1 {f1:.4f} "
          f"(roc_auc {outcomes['affluence'].metrics['roc_auc']:.4f}); {seconds:.0f} s",
          file=sys.stderr)
    assert all(o.published is None for o in outcomes.values())   # evaluation only
    assert rmse_log <= 0.70, outcomes["gbdt"].metrics
    assert f1 >= 0.78, outcomes["affluence"].metrics
