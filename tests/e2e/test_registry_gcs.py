"""The registry and the `velocast.models` CLI on a GCS bucket (the real client against
fake-gcs-server); on a folder: tests/unit/test_registry.py."""

from __future__ import annotations

import os

from tests.unit.test_registry import card, publish_in_parallel, run_cli
from velocast.catalog.registry import list_entries, publish, read_card, read_model_bytes
from tests.best_entry import best_entry as best
from velocast.catalog.store import open_store

pytest_plugins = ["tests.gcs_fixtures"]


def test_gcs_concurrent_publishers_lose_no_entry_and_best_is_lowest_rmse(fake_gcs_env):
    uri = f"gs://{fake_gcs_env.new_bucket()}/velocast"
    rmses = [41.0, 37.5, 52.0, 33.25, 47.0, 39.0, 60.0, 35.0]
    cards = [card(model_type=["gbdt", "rf", "nn"][i % 3], rmse=r) for i, r in enumerate(rmses)]
    publish_in_parallel(lambda: open_store(uri), cards)  # one client per publisher

    store = open_store(uri)
    entries = list_entries(store)
    assert len(entries) == 8
    assert sorted(e.metrics["rmse"] for e in entries) == sorted(rmses)
    winner = best(entries, "regress", "rmse")
    assert winner.metrics["rmse"] == 33.25
    assert read_model_bytes(store, winner).startswith(b"onnx-")
    assert read_card(store, winner)["version"] == winner.version


def test_models_cli_reads_a_gcs_store_and_reports_an_unreachable_one(fake_gcs):
    bucket = fake_gcs.new_bucket()
    entry = publish(fake_gcs.store(bucket, "p"), b"m", card("classify", "affluence"))
    env = {**os.environ, **fake_gcs.env}
    out = run_cli("--store", f"gs://{bucket}/p", env=env)
    assert out.returncode == 0, out.stderr
    assert entry.version in out.stdout and "F1_SCORE" in out.stdout

    out = run_cli("--store", "gs://no-such-bucket-here", env=env)
    assert out.returncode == 1 and "not found" in out.stderr
