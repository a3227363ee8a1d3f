"""One answer to "what is served" on a store with promotions, from a real
functions-framework server: /health, /models, the models CLI and the retrain's
champions agree; and a function with no prediction traffic picks up a promotion
within 2 x REFRESH_SECONDS."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import pytest
import requests

from tests.function_clients import Server
from velocast import catalog
from velocast.catalog import promotions, registry
from velocast.catalog.store import LocalStore
from velocast.train.retrain import _champions

REFRESH_SECONDS = 1.0
ENTRY_FIELDS = ("version", "sha256", "size_bytes", "onnx_path", "card_path", "published_at",
                "card_sha256")


def republish(store, entry: registry.Entry) -> registry.Entry:
    """The same model under a new version, as a retrain would publish it."""
    card = {k: v for k, v in registry.read_card(store, entry).items() if k not in ENTRY_FIELDS}
    return registry.publish(store, store.read(entry.onnx_path), card)


def promote(store, task: str, served: dict[str, tuple[registry.Entry, float]]) -> None:
    time.sleep(1.1)   # versions are per second: each promotion is newer than the last
    promotions.write_promotion(store, promotions.Promotion(
        task, registry.new_version(),
        {t: {"version": e.version, "promoted": True, "metrics": {"rmse_log": m}}
         for t, (e, m) in served.items()}, {"from": "2021-07-01", "to": "2021-07-01"}))


@pytest.fixture
def promoted_store(trained_store, tmp_path):
    folder = tmp_path / "store"
    shutil.copytree(trained_store, folder)
    return LocalStore(folder)


def test_health_models_cli_and_retrain_agree_on_a_store_with_promotions(promoted_store):
    store = promoted_store
    by_type = catalog.Snapshot.read(store, "regress").served_by_type()
    # Without promotions the best rmse_log wins; the promotion names another type.
    unpromoted_default = catalog.Snapshot.read(store, "regress").default()
    other = next(t for t in by_type if t != unpromoted_default.model_type)
    fresh = republish(store, by_type[other])
    promote(store, "regress", {other: (fresh, 0.30), unpromoted_default.model_type:
                               (by_type[unpromoted_default.model_type], 0.40)})

    server = Server("regress", {"MODEL_STORE": str(store.root), "REFRESH_SECONDS": REFRESH_SECONDS})
    try:
        server.spawn().wait_ready(timeout=90)
        health = requests.get(server.url + "/health", timeout=30).json()
        models = requests.get(server.url + "/models", timeout=30).json()
    finally:
        server.close()
    cli = subprocess.run([sys.executable, "-m", "velocast.models", "--store", str(store.root),
                          "--task", "regress"], capture_output=True, text=True, timeout=60)
    starred = next(line for line in cli.stdout.splitlines() if line.startswith("*"))

    assert [m["version"] for m in health["models"]] == [fresh.version]
    assert models["default"]["version"] == fresh.version
    assert fresh.version in starred
    served = {m["model_type"]: m["version"] for m in models["served"]}
    assert served[other] == fresh.version
    assert _champions(store)[("regress", other)].entry.version == fresh.version


def test_a_function_without_prediction_traffic_serves_a_promotion_within_two_refresh_periods(
        promoted_store):
    """D5: /health and /models never re-read the registry; an idle function served a
    34-minute-old version while 25 newer promotions existed."""
    store = promoted_store
    default = catalog.Snapshot.read(store, "regress").default()
    server = Server("regress", {"MODEL_STORE": str(store.root), "REFRESH_SECONDS": REFRESH_SECONDS})
    try:
        server.spawn().wait_ready(timeout=90)
        assert requests.get(server.url + "/health", timeout=30).json()["models"][0]["version"] \
            == default.version
        fresh = republish(store, default)
        promote(store, "regress", {default.model_type: (fresh, 0.3)})
        time.sleep(2 * REFRESH_SECONDS + 0.5)
        # The first request after the wait already sees it: no request triggered the re-read.
        health = requests.get(server.url + "/health", timeout=30).json()
        assert [m["version"] for m in health["models"]] == [fresh.version]
        (shown,) = [m for m in requests.get(server.url + "/models", timeout=30).json()["served"]
                    if m["model_type"] == default.model_type]
        assert shown["version"] == fresh.version and shown["newest_promotion"]["version"]
    finally:
        server.close()
