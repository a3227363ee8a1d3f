"""Both functions as real `functions-framework` servers on loopback, with their
models on a fake-gcs-server bucket read through the real google-cloud-storage client.

Servers start once per module (about 2-5 s each) and are always stopped with their
whole process group. Tests that change the bucket (a better model, a corrupt one)
run after the read-only ones and say which state they leave. The demo test
(`-m slow`) trains in a copy of the project and takes minutes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import requests

pytest.register_assert_rewrite("tests.function_clients")

from tests.conftest import copy_store  # noqa: E402
from tests.function_clients import (  # noqa: E402
    OLD_BODIES,
    OLD_RECORD,
    ROOT,
    SNAKE_RECORD,
    Server,
    error_of,
    free_port,
)

pytest_plugins = ["tests.gcs_fixtures"]

MAX_RECORDS = 500
MAX_BODY_BYTES = 200_000
PROJECT = "velocast-e2e"
TIMEOUT = 30


@pytest.fixture(scope="module")
def bucket(fake_gcs, trained_store) -> str:
    """A fresh bucket holding everything `trained_store` published."""
    from velocast.store import LocalStore

    name = fake_gcs.new_bucket("e2e")
    assert copy_store(LocalStore(trained_store), fake_gcs.store(name)) >= 12
    return name


def server_env(fake_gcs, bucket: str, **extra) -> dict:
    return {**fake_gcs.env, "MODEL_STORE": f"gs://{bucket}", "REFRESH_SECONDS": "3600",
            "MAX_RECORDS": str(MAX_RECORDS), "MAX_BODY_BYTES": str(MAX_BODY_BYTES),
            "GCP_PROJECT": PROJECT, **extra}


@pytest.fixture(scope="module")
def servers(fake_gcs, bucket):
    """classify and regress, started side by side."""
    env = server_env(fake_gcs, bucket)
    running = {name: Server(name, env) for name in ("classify", "regress")}
    try:
        for server in running.values():
            server.spawn()
        for server in running.values():
            server.wait_ready(timeout=90)
        yield running
    finally:
        for server in running.values():
            server.close()


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
    from velocast import registry

    return registry.list_entries(fake_gcs.store(bucket), task)


def republish(fake_gcs, bucket, entry, onnx_bytes: bytes | None = None, **metrics):
    """Publish a new version of `entry` (same card and, unless given, same ONNX bytes)
    with some metrics changed: a legitimate new published model, without training."""
    from velocast import registry

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
        assert body["status"] == "ok" and body["store"] == f"gs://{bucket}"
        assert body["models"] and {m["type"] for m in body["models"]} <= types
        assert body["refused"] == {}


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
    from velocast import registry

    before = post(classify, OLD_BODIES["classify"])
    assert before.status_code == 200
    current = before.json()["model"]["version"]
    entry = next(e for e in published(fake_gcs, bucket, "classify") if e.version == current)
    # Garbage bytes with a matching sha256: only loading them can tell.
    corrupt = republish(fake_gcs, bucket, entry, onnx_bytes=b"garbage-not-onnx",
                        f1_score=0.99999, accuracy=0.99999)
    assert registry.best(published(fake_gcs, bucket, "classify"), "classify").version == \
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
    assert corrupt.version in health.json()["refused"]
    assert [m["version"] for m in health.json()["models"]] == [current]
    assert any(line["severity"] == "ERROR" and corrupt.version in line["message"]
               for line in classify.log_lines())


# ----------------------------------------------------------------------- openapi.yaml

OPENAPI = ROOT / "openapi.yaml"


@pytest.fixture(scope="module")
def openapi() -> dict:
    yaml = pytest.importorskip("yaml")
    with open(OPENAPI, encoding="utf-8") as f:
        return yaml.safe_load(f)


def deref(document: dict, node):
    """Follow local $refs (#/a/b/c) until a node without one."""
    while isinstance(node, dict) and "$ref" in node:
        target = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def operations(document: dict):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in {"get", "post", "put", "delete", "patch", "head", "options"}:
                yield path, method, operation


def test_openapi_lists_every_route_the_service_implements(openapi):
    from velocast.service import ROUTES

    assert openapi["openapi"] == "3.0.3"
    assert {path: {m.upper() for m in item if m != "parameters"}
            for path, item in openapi["paths"].items()} == \
        {path: {method} for path, method in ROUTES.items()}
    urls = {server["url"]: server["description"] for server in openapi["servers"]}
    assert urls["http://localhost:8080"].startswith("classify")
    assert urls["http://localhost:8000"].startswith("regress")
    schemes = openapi["components"]["securitySchemes"]
    assert schemes["ApiKeyHeader"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert (schemes["BearerAuth"]["type"], schemes["BearerAuth"]["scheme"]) == ("http", "bearer")
    assert openapi["paths"]["/health"]["get"]["security"] == []


def test_openapi_matches_the_code(openapi):
    import importlib.util

    from velocast import registry, tasks
    from velocast.schema import MAX_NAME_LENGTH
    from velocast.service import Settings

    schemas = openapi["components"]["schemas"]
    request = schemas["PredictRequest"]
    assert request["required"] == ["records"]
    records = request["properties"]["records"]
    assert records["maxItems"] == Settings.from_env({}).max_records == 10_000
    assert records["minItems"] == 1
    metrics = [m for task in registry.TASKS for m in registry.TASK_METRICS[task]]
    assert sorted(request["properties"]["metric"]["enum"][:-1]) == sorted(metrics)
    assert request["properties"]["metric"]["enum"][-1] is None
    assert sorted(schemas["Metric"]["enum"]) == sorted(metrics)
    aliases = {a for t in tasks.TASKS.values() for a in t.aliases}
    assert set(request["properties"]["model_type"]["enum"]) == \
        {"affluence", "gbdt", "rf", "nn", None} | aliases == \
        set(tasks.MODEL_TASK) | aliases | {None}
    record = schemas["Record"]["properties"]
    for key in ("nom_du_compteur", "Nom du compteur", "date_et_heure_de_comptage",
                "Date et heure de comptage", "coordonnées_géographiques",
                "Coordonnées géographiques"):
        assert key in record
    assert deref(openapi, record["nom_du_compteur"])["maxLength"] == MAX_NAME_LENGTH

    spec = importlib.util.spec_from_file_location("classify_main_for_openapi",
                                                  ROOT / "functions" / "classify" / "main.py")
    classify_main = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(classify_main)
    label = schemas["ClassifyResponse"]["properties"]["label"]["items"]
    assert tuple(label["enum"]) == tasks.LABELS == ("faible", "forte")

    # Every error response is the Error shape; every 503 says when to retry.
    error_ref = "#/components/schemas/Error"
    for path, method, operation in operations(openapi):
        statuses = set(operation["responses"])
        assert "200" in statuses and "503" in statuses and "500" in statuses, (path, method)
        if operation.get("security"):
            assert {"401", "403"} <= statuses, (path, method)
        for status, response in operation["responses"].items():
            response = deref(openapi, response)
            # Success may be a document (/docs is HTML); every error is JSON.
            media = "application/json" if int(status) >= 400 else next(iter(response["content"]))
            schema = response["content"][media]["schema"]
            if status == "503":
                assert "Retry-After" in response["headers"], (path, method)
            if int(status) >= 400 and path != "/health":
                assert schema == {"$ref": error_ref}, (path, method, status)
    for path in ("/", "/predict"):
        assert {"400", "413", "415", "422"} <= set(openapi["paths"][path]["post"]["responses"])
    codes = set(schemas["Error"]["properties"]["error"]["properties"]["code"]["enum"])
    assert {"invalid_json", "unsupported_media_type", "method_not_allowed", "not_found",
            "invalid_records", "invalid_request", "payload_too_large", "too_many_records",
            "no_model", "unauthenticated", "forbidden", "internal"} <= codes


def test_openapi_is_a_valid_document():
    """Against the OpenAPI 3.0 meta-schema, with whichever validator is installed."""
    try:
        import openapi_spec_validator
        from openapi_spec_validator.readers import read_from_filename
    except ImportError:
        schemathesis = pytest.importorskip("schemathesis")
        schemathesis.openapi.from_path(str(OPENAPI)).validate()
    else:
        document, _ = read_from_filename(str(OPENAPI))
        openapi_spec_validator.validate(document)


def test_real_responses_conform_to_openapi(classify, regress, empty_server):
    """Every status the servers give, checked by schemathesis against openapi.yaml."""
    schemathesis = pytest.importorskip("schemathesis")
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


# ------------------------------------------------------------------------------- demo

def _copy_tree(destination: Path) -> None:
    """The working tree (which may be ahead of the last commit), without what a
    fresh clone lacks: venvs, data, models, build outputs, caches, .git."""
    top_level = {".git", ".venv", "data", "models", "build"}
    anywhere = shutil.ignore_patterns("__pycache__", ".pytest_cache", ".hypothesis",
                                      "*.egg-info", ".terraform", "*.pyc", "*.zip", "out")

    def ignore(folder, names):
        skipped = set(anywhere(folder, names))
        if Path(folder) == ROOT:
            skipped |= top_level | {n for n in names if n.startswith(".venv-")}
        return skipped

    shutil.copytree(ROOT, destination, ignore=ignore)


@pytest.mark.slow
def test_make_demo_from_a_fresh_tree(tmp_path):
    """`scripts/local.py demo` (what `make demo` runs) in a copy of the project with no
    ../shared/data and no model: it trains on the synthetic sample, starts both
    functions and gets HTTP 200 for both of the old system's requests."""
    tree = tmp_path / "velocast"
    _copy_tree(tree)
    assert not (tree / "models").exists() and not (tree / "data").exists()
    classify_port, regress_port = free_port(), free_port()
    while regress_port == classify_port:
        regress_port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in {"MODEL_STORE", "STORAGE_EMULATOR_HOST", "API_KEYS", "ADMIN_KEY",
                        "API_KEYS_SECRET", "ADMIN_KEY_SECRET"}}
    env.update(PYTHONPATH=str(tree / "shared"), VELOCAST_SHARED_DATA=str(tmp_path / "no-data"),
               CLASSIFY_PORT=str(classify_port), REGRESS_PORT=str(regress_port),
               PYTHONUNBUFFERED="1")
    # The copy, not /work/main, must be what runs (the venv's editable install points there).
    probe = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-c",
                            "import velocast; print(velocast.__file__)"],
                           cwd=tree, env=env, capture_output=True, text=True, check=True)
    assert probe.stdout.strip().startswith(str(tree)), probe.stdout

    demo = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "python"), "scripts/local.py", "demo",
         "--store", str(tree / "models")],
        cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = demo.communicate(timeout=1500)
    except subprocess.TimeoutExpired:
        # SIGINT lets local.py stop the servers it started (they have their own sessions).
        demo.send_signal(signal.SIGINT)
        try:
            output, _ = demo.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            demo.kill()
            output, _ = demo.communicate()
        pytest.fail(f"demo did not finish in 25 minutes:\n{output[-6000:]}")
    assert demo.returncode == 0, output[-6000:]
    assert "no model published" in output  # it had to train
    assert output.count("HTTP 200") == 2, output[-6000:]
    assert f"127.0.0.1:{classify_port}/predict" in output
    assert f"127.0.0.1:{regress_port}/predict" in output
    assert '"label"' in output and '"predictions"' in output
    assert "servers stopped" in output
    assert (tree / "models" / "registry").is_dir()
