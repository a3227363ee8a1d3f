"""Both functions as real `functions-framework` servers on loopback, with their
models on a fake-gcs-server bucket read through the real google-cloud-storage client.

What only this chain shows: answers and listings from the bucket, a better model
served after a refresh, a corrupt one refused while the previous one keeps answering,
and every status conforming to openapi.yaml. The HTTP contract itself (routes, limits,
errors, auth, logs), in process and over real HTTP, is tests/service/test_contract.py;
the demo is tests/e2e/test_local_demo.py.

Servers start once per module (about 2-5 s each; these read a bucket the tests change,
so they are not the session's) and are always stopped with their whole process group.
Tests that change the bucket (a better model, a corrupt one) run after the read-only
ones and say which state they leave.
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


def test_models_lists_the_bucket(classify, regress, fake_gcs, bucket):
    r = get(regress, "/models")
    assert r.status_code == 200
    assert {m["version"] for m in r.json()["models"]} == \
        {e.version for e in published(fake_gcs, bucket, "regress")}
    for server in (classify, regress):
        details = get(server, "/models").json()  # the store and refusals are behind the key
        assert details["store"] == f"gs://{bucket}" and details["refused"] == {}


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
