"""Both functions as real `functions-framework` servers on loopback, with their
models on a fake-gcs-server bucket read through the real google-cloud-storage client.

Servers start once per module (about 2-5 s each) and are always stopped with their
whole process group. Tests that change the bucket (a better model, a corrupt one)
run after the read-only ones and say which state they leave. The same contract in
process is tests/test_contract.py; the demo is tests/test_local_demo.py.
"""

from __future__ import annotations

import json

import pytest
import requests

pytest.register_assert_rewrite("tests.function_clients")

from tests.function_clients import (  # noqa: E402
    OLD_BODIES,
    OLD_RECORD,
    ROOT,
    SNAKE_RECORD,
    Server,
    error_of,
)
from velocast.dev.servers import started  # noqa: E402
from velocast.train.publish import copy_store  # noqa: E402
from velocast.core.tasks import TASK_NAMES  # noqa: E402
from tests.best_entry import best_entry  # noqa: E402

pytest_plugins = ["tests.gcs_fixtures"]

MAX_RECORDS = 500
MAX_BODY_BYTES = 200_000
PROJECT = "velocast-e2e"
TIMEOUT = 30


@pytest.fixture(scope="module")
def bucket(fake_gcs, trained_store) -> str:
    """A fresh bucket holding everything `trained_store` published."""
    from velocast.catalog.store import LocalStore

    name = fake_gcs.new_bucket("e2e")
    assert copy_store(LocalStore(trained_store), fake_gcs.store(name)).copied >= 12
    return name


def server_env(fake_gcs, bucket: str, **extra) -> dict:
    return {**fake_gcs.env, "MODEL_STORE": f"gs://{bucket}", "REFRESH_SECONDS": "3600",
            "MAX_RECORDS": str(MAX_RECORDS), "MAX_BODY_BYTES": str(MAX_BODY_BYTES),
            "GCP_PROJECT": PROJECT, **extra}


@pytest.fixture(scope="module")
def servers(fake_gcs, bucket):
    """classify and regress, started side by side."""
    env = server_env(fake_gcs, bucket)
    with started({name: Server(name, env) for name in TASK_NAMES}) as running:
        yield running


@pytest.fixture(scope="module")
def classify(servers) -> Server:
    return servers["classify"]


@pytest.fixture(scope="module")
def regress(servers) -> Server:
    return servers["regress"]


@pytest.fixture(scope="module")
def empty_server(fake_gcs):
    """regress on a bucket with nothing published."""
    with Server("regress", server_env(fake_gcs, fake_gcs.new_bucket("empty"))) as server:
        yield server


def post(server: Server, body=None, path: str = "/predict", **kw) -> requests.Response:
    if body is not None:
        kw["data"] = json.dumps(body, ensure_ascii=False).encode()
        kw.setdefault("headers", {}).setdefault("Content-Type", "application/json")
    return requests.post(server.url + path, timeout=TIMEOUT, **kw)


def get(server: Server, path: str, **kw) -> requests.Response:
    return requests.get(server.url + path, timeout=TIMEOUT, **kw)


def published(fake_gcs, bucket, task):
    from velocast.catalog import registry

    return registry.list_entries(fake_gcs.store(bucket), task)


def republish(fake_gcs, bucket, entry, onnx_bytes: bytes | None = None, **metrics):
    """Publish a new version of `entry` (same card and, unless given, same ONNX bytes)
    with some metrics changed: a legitimate new published model, without training."""
    from velocast.catalog import registry

    store = fake_gcs.store(bucket)
    card = registry.read_card(store, entry)
    for key in ("version", "sha256", "size_bytes", "onnx_path", "published_at"):
        card.pop(key, None)
    card["metrics"] = {**card["metrics"], **metrics}
    data = onnx_bytes if onnx_bytes is not None else registry.read_model_bytes(store, entry)
    return registry.publish(store, data, card)


# ---------------------------------------------------------------------------- answers

def test_old_system_bodies(classify, regress, fake_gcs, bucket):
    c = post(classify, OLD_BODIES["classify"])
    assert c.status_code == 200, c.text
    body = c.json()
    assert len(body["predictions"]) == len(body["label"]) == len(body["probabilities"]) == 1
    assert body["label"][0] == ("forte" if body["predictions"][0] else "faible")
    assert body["model"]["type"] == "affluence"
    assert body["model"]["version"] in {e.version for e in published(fake_gcs, bucket, "classify")}

    r = post(regress, OLD_BODIES["regress"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["predictions"]) == 1 and body["predictions"][0] >= 0
    assert (body["model"]["type"], body["model"]["metric"]) == ("nn", "r2")


def test_batches_and_export_headers(classify, regress):
    records = [OLD_RECORD, SNAKE_RECORD] * 250
    for server in (classify, regress):
        r = post(server, {"records": records})
        assert r.status_code == 200, r.text
        assert len(r.json()["predictions"]) == 500
        assert [w["record"] for w in r.json()["warnings"]][:3] == [0, 2, 4]


def test_request_log_line_with_trace(regress):
    r = post(regress, {"records": [SNAKE_RECORD] * 2},
             headers={"X-Cloud-Trace-Context": "abc123/1;o=1", "Content-Type": "application/json"})
    assert r.status_code == 200
    logged = [line for line in regress.log_lines()
              if line.get("logging.googleapis.com/trace") == f"projects/{PROJECT}/traces/abc123"]
    assert len(logged) == 1, regress.log_text()[-3000:]
    assert logged[0]["severity"] == "INFO" and logged[0]["records"] == 2
    assert logged[0]["httpRequest"]["status"] == 200


def test_health_reports_loaded_models(classify, regress, bucket):
    for server, types in ((classify, {"affluence"}), (regress, {"gbdt", "rf", "nn"})):
        r = get(server, "/health")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "ok"
        assert body["models"] and {m["type"] for m in body["models"]} <= types
        details = get(server, "/models").json()  # the store and refusals are behind the key
        assert details["store"] == f"gs://{bucket}" and details["refused"] == {}


def test_models_lists_the_bucket(regress, fake_gcs, bucket):
    r = get(regress, "/models")
    assert r.status_code == 200
    assert {m["version"] for m in r.json()["models"]} == \
        {e.version for e in published(fake_gcs, bucket, "regress")}


# ----------------------------------------------------------------------------- errors

def test_400_not_json(regress):
    r = post(regress, data=b"{oops", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert error_of(r)["code"] == "invalid_json"


def test_404_unknown_route(classify):
    r = post(classify, {"records": [OLD_RECORD]}, path="/score")
    assert r.status_code == 404
    assert error_of(r)["code"] == "not_found"


def test_405_wrong_method(classify):
    r = get(classify, "/predict")
    assert r.status_code == 405
    assert r.headers["Allow"] == "POST"
    assert error_of(r)["code"] == "method_not_allowed"


def test_413_too_many_records(regress):
    r = post(regress, {"records": [SNAKE_RECORD] * (MAX_RECORDS + 1)})
    assert r.status_code == 413
    assert error_of(r)["code"] == "too_many_records"


def test_413_body_too_large(classify):
    body = json.dumps({"records": [SNAKE_RECORD], "padding": "x" * MAX_BODY_BYTES}).encode()
    r = post(classify, data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert error_of(r)["code"] == "payload_too_large"
    # The server is still fine afterwards.
    assert post(classify, OLD_BODIES["classify"]).status_code == 200


def test_415_wrong_content_type(regress):
    r = post(regress, data=json.dumps(OLD_BODIES["regress"]).encode(),
             headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    assert error_of(r)["code"] == "unsupported_media_type"


def test_422_names_record_and_field(classify):
    bad = {**OLD_RECORD, "date_et_heure_de_comptage": "demain"}
    r = post(classify, {"records": [OLD_RECORD, bad]})
    assert r.status_code == 422
    [detail] = error_of(r)["details"]
    assert (detail["record"], detail["field"]) == (1, "date_et_heure_de_comptage")


def test_422_unknown_model_type(regress):
    r = post(regress, {**OLD_BODIES["regress"], "model_type": "lstm"})
    assert r.status_code == 422
    assert error_of(r)["details"][0]["field"] == "model_type"


def test_503_when_nothing_is_published(empty_server):
    r = post(empty_server, OLD_BODIES["regress"])
    assert r.status_code == 503
    assert error_of(r)["code"] == "no_model"
    assert int(r.headers["Retry-After"]) > 0
    health = get(empty_server, "/health")
    assert health.status_code == 503 and int(health.headers["Retry-After"]) > 0


# ------------------------------------------- registry changes (these run last, in order)

def test_better_model_is_served_after_refresh(regress, fake_gcs, bucket):
    before = post(regress, OLD_BODIES["regress"]).json()["model"]
    nn = next(e for e in published(fake_gcs, bucket, "regress") if e.version == before["version"])
    better = republish(fake_gcs, bucket, nn, r2=0.9999)
    assert better.version != nn.version
    # Nothing changes until the registry is read again (REFRESH_SECONDS is an hour).
    assert post(regress, OLD_BODIES["regress"]).json()["model"]["version"] == nn.version

    refreshed = post(regress, path="/refresh")
    assert refreshed.status_code == 200, refreshed.text
    assert {"model_type": "nn", "metric": "r2", "from": nn.version, "to": better.version} \
        in refreshed.json()["changed"]
    after = post(regress, OLD_BODIES["regress"])
    assert after.status_code == 200
    model = after.json()["model"]
    assert (model["type"], model["version"], model["metric_value"]) == \
        ("nn", better.version, 0.9999)
    serving = get(regress, "/health").json()["models"]
    assert better.version in {m["version"] for m in serving}


def test_corrupt_model_is_refused_and_the_previous_one_keeps_answering(classify, fake_gcs,
                                                                        bucket):

    before = post(classify, OLD_BODIES["classify"])
    assert before.status_code == 200
    current = before.json()["model"]["version"]
    entry = next(e for e in published(fake_gcs, bucket, "classify") if e.version == current)
    # Garbage bytes with a matching sha256: only loading them can tell.
    corrupt = republish(fake_gcs, bucket, entry, onnx_bytes=b"garbage-not-onnx",
                        f1_score=0.99999, accuracy=0.99999)
    assert best_entry(published(fake_gcs, bucket, "classify"), "classify").version == \
        corrupt.version

    refreshed = post(classify, path="/refresh_model")
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["changed"] == []
    assert corrupt.version in refreshed.json()["refused"]

    after = post(classify, OLD_BODIES["classify"])
    assert after.status_code == 200
    assert after.json()["model"]["version"] == current
    assert after.json()["predictions"] == before.json()["predictions"]
    health = get(classify, "/health")
    assert health.status_code == 200
    assert corrupt.version in get(classify, "/models").json()["refused"]
    assert [m["version"] for m in health.json()["models"]] == [current]
    assert any(line["severity"] == "ERROR" and corrupt.version in line["message"]
               for line in classify.log_lines())


# ----------------------------------------------------------------------- openapi.yaml

OPENAPI = ROOT / "openapi.yaml"


def test_real_responses_conform_to_openapi(classify, regress, empty_server):
    """Every status the servers give, checked by schemathesis against openapi.yaml."""
    import schemathesis  # a dev dependency: missing, this fails rather than skips
    schema = schemathesis.openapi.from_path(str(OPENAPI))
    json_header = {"Content-Type": "application/json"}
    calls = [
        (classify, "POST", "/predict", OLD_BODIES["classify"], 200),
        (classify, "POST", "/", {"records": [SNAKE_RECORD, OLD_RECORD]}, 200),
        (regress, "POST", "/predict", OLD_BODIES["regress"], 200),
        (regress, "POST", "/predict", {"records": [SNAKE_RECORD], "model_type": None}, 200),
        (classify, "GET", "/health", None, 200),
        (regress, "GET", "/models", None, 200),
        (classify, "GET", "/models", None, 200),
        (regress, "POST", "/refresh", None, 200),
        (classify, "POST", "/refresh_model", None, 200),
        (regress, "POST", "/predict", b"[", 400),
        (regress, "POST", "/predict", {"records": [SNAKE_RECORD] * (MAX_RECORDS + 1)}, 413),
        (classify, "POST", "/predict", {"records": [{"Nom du compteur": "x"}]}, 422),
        (classify, "POST", "/predict", {"records": [OLD_RECORD], "metric": "r2"}, 422),
        (empty_server, "POST", "/predict", OLD_BODIES["regress"], 503),
        (empty_server, "GET", "/health", None, 503),
    ]
    for server, method, path, body, status in calls:
        data = body if isinstance(body, bytes) or body is None else \
            json.dumps(body, ensure_ascii=False).encode()
        response = requests.request(method, server.url + path, data=data, timeout=TIMEOUT,
                                    headers=json_header if data is not None else {})
        assert response.status_code == status, (path, response.text[:500])
        schema[path][method].validate_response(response)
    # 415 (not JSON) has no body schema to choose for the request, but its answer has one.
    response = requests.post(regress.url + "/predict", data="x", timeout=TIMEOUT,
                             headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    schema["/predict"]["POST"].validate_response(response)
