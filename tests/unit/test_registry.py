"""Registry: publish, list, choose the best model; the `velocast.models` CLI. On a GCS
bucket (fake-gcs-server): tests/e2e/test_registry_gcs.py."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import subprocess
import sys
import threading

import pytest

from velocast.catalog.registry import (
    DEFAULT_METRIC,
    Entry,
    IntegrityError,
    list_entries,
    new_version,
    publish,
    read_card,
    read_model_bytes,
)
from velocast.catalog.store import AlreadyExists, LocalStore

def card(task="regress", model_type="gbdt", **metrics):
    metrics = metrics or ({"rmse": 40.0, "r2": 0.9} if task == "regress" else {"f1_score": 0.8})
    return {
        "task": task,
        "model_type": model_type,
        "metrics": metrics,
        "feature_spec_version": "fs-1",
        "trained_from": "2020-09-01",
        "trained_to": "2021-07-15T23:00:00+02:00",
        "counters": {"35 boulevard de Ménilmontant NO-SE": {"mean": 61.5}},
    }


def publish_in_parallel(make_store, cards):
    barrier = threading.Barrier(len(cards))
    errors = []

    def run(c):
        store = make_store()
        barrier.wait()
        try:
            publish(store, b"onnx-" + c["model_type"].encode() + os.urandom(8), c)
        except Exception as e:  # surfaced by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(c,)) for c in cards]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []


@pytest.fixture
def store(tmp_path):
    return LocalStore(tmp_path / "store")


# ------------------------------------------------------------------ publish

def test_publish_writes_model_card_and_entry_that_point_at_each_other(store):
    entry = publish(store, b"\x08\x07model", card(rmse=12.5, r2=0.93))
    v = entry.version
    assert store.list() == sorted([
        f"models/regress/gbdt/{v}/model.onnx",
        f"models/regress/gbdt/{v}/card.json",
        f"registry/regress/{v}-gbdt.json",
    ])
    assert read_model_bytes(store, entry) == b"\x08\x07model"
    stored = read_card(store, entry)
    assert stored["counters"] == card()["counters"]
    assert stored["version"] == v and stored["sha256"] == entry.sha256 and stored["size_bytes"] == 7
    assert stored["onnx_path"] == entry.onnx_path and stored["published_at"] == entry.published_at
    assert list_entries(store) == [entry]
    assert entry.metrics == {"rmse": 12.5, "r2": 0.93}


def test_publish_does_not_modify_the_callers_card(store):
    c = card()
    before = json.dumps(c, sort_keys=True)
    publish(store, b"m", c)
    assert json.dumps(c, sort_keys=True) == before


def test_publish_accepts_numpy_like_values_in_the_card(store):
    class Scalar:  # what numpy.int64 / float64 look like to json
        def __init__(self, v):
            self.v = v

        def item(self):
            return self.v

    c = card(rmse=Scalar(3.5))
    c["n_rows"] = Scalar(422143)
    c["trained_from"] = dt.date(2020, 9, 1)
    entry = publish(store, b"m", c)
    assert entry.metrics == {"rmse": 3.5} and entry.trained_from == "2020-09-01"
    assert read_card(store, entry)["n_rows"] == 422143


def test_explicit_version_is_kept_and_cannot_be_published_twice(store):
    c = {**card(), "version": "20260101T000000Z-abcdef"}
    assert publish(store, b"m", c).version == "20260101T000000Z-abcdef"
    with pytest.raises(AlreadyExists):
        publish(store, b"m2", c)
    assert len(list_entries(store)) == 1


@pytest.mark.parametrize("change, message", [
    (lambda c: c.pop("metrics"), "lacks metrics"),
    (lambda c: c.update(task="cluster"), "task"),
    (lambda c: c.update(model_type="../x"), "model_type"),
    (lambda c: c.update(metrics={"rmse": float("nan")}), "finite"),
    (lambda c: c.update(metrics={"rmse": "low"}), "number"),
    (lambda c: c.update(trained_to="last week"), "trained_to"),
    (lambda c: c.update(extra=float("inf")), "strict JSON"),
])
def test_publish_rejects_bad_cards_and_writes_nothing(store, change, message):
    c = card()
    change(c)
    with pytest.raises(ValueError, match=message):
        publish(store, b"m", c)
    assert list_entries(store) == []
    assert not any(n.startswith("registry/") for n in store.list())


def test_publish_rejects_pickled_model_bytes(store):
    import pickle

    with pytest.raises(ValueError, match="pickle"):
        publish(store, pickle.dumps({"model": 1}), card())
    assert store.list() == []


def test_tampered_model_bytes_are_detected(store, tmp_path):
    entry = publish(store, b"original", card())
    path = tmp_path / "store" / entry.onnx_path
    path.unlink()
    path.write_bytes(b"tampered")
    with pytest.raises(IntegrityError, match="sha256"):
        read_model_bytes(store, entry)


def test_concurrent_publishers_lose_no_entry(store):
    cards = [card(model_type=["gbdt", "rf", "nn"][i % 3], rmse=30.0 + i) for i in range(8)]
    publish_in_parallel(lambda: store, cards)
    entries = list_entries(store)
    assert len(entries) == 8
    assert len({e.version for e in entries}) == 8
    assert best(entries, "regress", "rmse").metrics["rmse"] == 30.0


# ------------------------------------------------------------------ versions and entries

def test_new_versions_are_unique_and_sort_by_time():
    versions = [new_version() for _ in range(200)]
    assert len(set(versions)) == 200
    assert all(re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", v) for v in versions)
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    assert versions[0][:16] <= now


def test_entry_survives_a_dict_round_trip_and_ignores_unknown_keys(store):
    entry = publish(store, b"m", card())
    assert Entry.from_dict({**entry.to_dict(), "added_later": 1}) == entry
    assert hash(entry) == hash(Entry.from_dict(entry.to_dict()))


def test_malformed_entries_are_skipped_with_a_warning(store, caplog):
    good = publish(store, b"m", card())
    store.write_once("registry/regress/garbage.json", b"{not json")
    store.write_once("registry/regress/binary.json", b"\xff\xfe")
    store.write_once("registry/regress/list.json", b"[1, 2]")
    incomplete = good.to_dict()
    del incomplete["sha256"]
    store.write_once("registry/regress/incomplete.json", json.dumps(incomplete).encode())
    # A valid entry under the wrong name (copied by hand) must not count twice.
    store.write_once("registry/regress/copy.json", json.dumps(good.to_dict()).encode())
    store.write_once(f"registry/classify/{good.version}-gbdt.json", json.dumps(good.to_dict()).encode())
    with caplog.at_level(logging.WARNING, logger="velocast.registry"):
        assert list_entries(store) == [good]
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 6


def test_list_entries_filters_by_task_and_handles_an_empty_store(store):
    assert list_entries(store) == []
    r = publish(store, b"m", card("regress"))
    c = publish(store, b"m", card("classify", "affluence"))
    assert list_entries(store, "regress") == [r]
    assert list_entries(store, "classify") == [c]
    assert list_entries(store) == [c, r]


# ------------------------------------------------------------------ ranking
# The registry lists; which entry is best is the catalog's one answer (catalog.ranked).
from tests.best_entry import best_entry as best  # noqa: E402



def make_entries(store):
    return [
        publish(store, b"a", card(model_type="gbdt", rmse=40.0, r2=0.90, rmse_log=0.30)),
        publish(store, b"b", card(model_type="rf", rmse=35.0, r2=0.85)),
        publish(store, b"c", card(model_type="nn", rmse=50.0, r2=0.95, rmse_log=0.25)),
        publish(store, b"d", card(model_type="gbdt", rmse=45.0, r2=0.80, rmse_log=0.28)),
        publish(store, b"e", card("classify", "affluence", f1_score=0.7)),
    ]


def test_best_by_rmse_is_the_lowest_and_by_r2_the_highest(store):
    entries = make_entries(store)
    assert best(entries, "regress", "rmse").model_type == "rf"
    assert best(entries, "regress", "r2").model_type == "nn"


def test_best_filters_by_model_type(store):
    entries = make_entries(store)
    assert best(entries, "regress", "rmse", model_type="gbdt").metrics["rmse"] == 40.0
    assert best(entries, "regress", "r2", model_type="gbdt").metrics["r2"] == 0.90
    assert best(entries, "regress", "rmse", model_type="xgb") is None


def test_best_defaults_to_the_tasks_metric_and_ignores_entries_without_it(store):
    entries = make_entries(store)
    assert DEFAULT_METRIC["regress"] == "rmse_log"
    assert best(entries, "regress").model_type == "nn"  # rf has no rmse_log
    assert best(entries, "classify").model_type == "affluence"
    assert best(entries, "classify", "roc_auc") is None
    assert best([], "regress") is None


def test_best_breaks_ties_with_the_newest_version(store):
    older = publish(store, b"a", {**card(rmse=10.0), "version": "20260101T000000Z-ffffff"})
    newer = publish(store, b"b", {**card(rmse=10.0), "version": "20260102T000000Z-000000"})
    assert best([newer, older], "regress", "rmse") == newer
    assert best([older, newer], "regress", "rmse") == newer




# ------------------------------------------------------------------ CLI

def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "velocast.models", *args], capture_output=True,
                          text=True, timeout=60, env=env)


def test_models_cli_prints_a_table_of_published_models(store):
    a = publish(store, b"a" * 2048, card(model_type="gbdt", rmse=40.0, r2=0.9, rmse_log=0.31))
    b = publish(store, b"b", card(model_type="nn", rmse=44.0, r2=0.88, rmse_log=0.35))
    out = run_cli("--store", store.uri)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("regress: 2 models")
    header = lines[1].split()
    assert header == ["TYPE", "VERSION", "RMSE_LOG", "RMSE", "R2", "TRAINED", "SIZE", "PUBLISHED"]
    gbdt_line = next(line for line in lines if a.version in line)
    nn_line = next(line for line in lines if b.version in line)
    assert gbdt_line.startswith("*") and not nn_line.startswith("*")
    assert "0.31" in gbdt_line and "2020-09-01..2021-07-15" in gbdt_line and "2.0 KB" in gbdt_line
    assert lines.index(gbdt_line) < lines.index(nn_line)

    as_json = json.loads(run_cli("--store", store.uri, "--json").stdout)
    assert [Entry.from_dict(d) for d in as_json] == [a, b]
    assert run_cli("--store", store.uri, "--task", "classify").stdout.startswith("No classify models published")


def test_models_cli_on_an_empty_store_says_so_and_succeeds(tmp_path):
    out = run_cli("--store", str(tmp_path / "empty"))
    assert out.returncode == 0
    assert "No models published" in out.stdout


def test_an_entry_carries_its_backtest_means_and_the_card_keeps_its_backtest_section(store):
    section = {"mean_sd": {"gbdt": {"rmse_log": [0.62, 0.1], "coverage": [0.8, 0.05]},
                           "naive": {"rmse_log": [0.8, 0.2]}}, "folds": []}
    entry = publish(store, b"m", {**card(rmse_log=0.6), "backtest": section})
    assert entry.backtest_means == {"rmse_log": 0.62}   # the task's metrics only
    assert read_card(store, entry)["backtest"] == section
    assert Entry.from_dict(entry.to_dict()) == entry
