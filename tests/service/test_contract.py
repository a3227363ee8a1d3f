"""The HTTP contract both functions share (routes, limits, errors, auth, logs), run
against each function over both transports: in process (functions_framework.create_app
(...).test_client()) and as a real functions-framework server on loopback (the session's
servers, tests/service/conftest.py). What is specific to one function is in
tests/service/test_classify_function.py and tests/service/test_regress_function.py; the
functions on a GCS bucket, refreshes and the daily loop are tests/e2e.
"""

from __future__ import annotations

import io
import json

import pytest

pytest.register_assert_rewrite("tests.function_clients")

from tests.function_clients import (  # noqa: E402
    DEFAULT_METRICS,
    EXPORT_RECORD,
    KNOWN_COUNTER,
    MODEL_TYPES,
    OLD_BODIES,
    SNAKE_RECORD,
    LoadedFunction,
    ServedFunction,
    error_of,
)
from tests.best_entry import best_entry  # noqa: E402

pytest_plugins = ["tests.function_clients"]

DATE = "date_et_heure_de_comptage"
COUNTER = "nom_du_compteur"


@pytest.fixture(params=["classify", "regress"])
def function(request) -> str:
    return request.param


@pytest.fixture
def fn(function, transport, request) -> LoadedFunction:
    """`function` on `trained_store`, shared by the session: the app in process, or the
    real server over HTTP."""
    if transport == "in-process":
        return request.getfixturevalue(f"{function}_fn")
    return ServedFunction(function, request.getfixturevalue("served_pair")[function])


@pytest.fixture
def make_function(function_on):
    """An app (or a real server) with the environment the test gives."""
    return function_on


@pytest.fixture
def json_logs(json_logs, transport, server_pool):
    """The JSON log lines written since the last call: the process's own, or those of the
    real servers."""
    return json_logs if transport == "in-process" else server_pool.new_log_lines


@pytest.fixture
def store(trained_store) -> str:
    return str(trained_store)


# -- happy paths -------------------------------------------------------------------
def test_export_headers_and_snake_case_give_the_same_answer(fn):
    snake = fn.post({"records": [SNAKE_RECORD]})
    export = fn.post({"records": [EXPORT_RECORD]})
    assert snake.status_code == export.status_code == 200, (snake.json, export.json)
    assert snake.json["predictions"] == export.json["predictions"]
    assert "warnings" not in export.json  # a known counter

def test_root_path_predicts_too(fn):
    a = fn.post({"records": [SNAKE_RECORD]}, path="/")
    b = fn.post({"records": [SNAKE_RECORD]}, path="/predict")
    assert a.status_code == b.status_code == 200
    assert a.json["predictions"] == b.json["predictions"]

def test_unknown_counter_with_coordinates_is_predicted_with_a_warning(fn):
    unknown = {**SNAKE_RECORD, "nom_du_compteur": "Compteur inconnu 12 rue Imaginaire",
               "coordonnées_géographiques": "48.8600, 2.3400"}
    r = fn.post({"records": [SNAKE_RECORD, unknown, SNAKE_RECORD]})
    assert r.status_code == 200, r.json
    assert len(r.json["predictions"]) == 3
    assert [(w["record"], w["field"]) for w in r.json["warnings"]] == [(1, COUNTER)]
    assert "Compteur inconnu" in r.json["warnings"][0]["message"]

def test_batch_keeps_length_and_order(fn):
    hours = [f"2025-05-20T{h:02d}:00:00+02:00" for h in range(24)]
    records = [{**SNAKE_RECORD, DATE: h} for h in hours]
    batch = fn.post({"records": records})
    assert batch.status_code == 200
    assert len(batch.json["predictions"]) == 24
    singles = [fn.post({"records": [r]}).json["predictions"][0] for r in records[6:9]]
    assert batch.json["predictions"][6:9] == singles

# -- errors ------------------------------------------------------------------------
def test_400_body_not_json(fn):
    r = fn.post(data=b'{"records": [', content_type="application/json")
    assert r.status_code == 400
    assert error_of(r)["code"] == "invalid_json"

def test_400_invalid_utf8(fn):
    r = fn.post(data=b'{"records": "\xff"}', content_type="application/json")
    assert r.status_code == 400
    error_of(r)

@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          None])
def test_415_wrong_content_type(fn, content_type):
    kw = {"content_type": content_type} if content_type else {}
    r = fn.client.post("/predict", data=json.dumps({"records": [SNAKE_RECORD]}), **kw)
    assert r.status_code == 415
    assert error_of(r)["code"] == "unsupported_media_type"

def test_json_with_charset_is_accepted(fn):
    r = fn.post(data=json.dumps({"records": [SNAKE_RECORD]}).encode(),
                content_type="application/json; charset=utf-8")
    assert r.status_code == 200

@pytest.mark.parametrize("method,path,allow", [
    ("GET", "/predict", "POST"), ("GET", "/", "POST"), ("PUT", "/predict", "POST"),
    ("POST", "/health", "GET, HEAD"), ("DELETE", "/models", "GET, HEAD"), ("GET", "/refresh", "POST"),
    ("GET", "/refresh_model", "POST")])
def test_405_wrong_method(fn, method, path, allow):
    r = fn.client.open(path, method=method)
    assert r.status_code == 405
    assert r.headers["Allow"] == allow
    assert error_of(r)["code"] == "method_not_allowed"

@pytest.mark.parametrize("path", ["/nope", "/predict/extra", "/v1/predict"])
def test_404_unknown_route(fn, path):
    r = fn.client.post(path, json={"records": [SNAKE_RECORD]})
    assert r.status_code == 404
    assert error_of(r)["code"] == "not_found"

def test_422_unparseable_date_names_record_and_field(fn):
    bad = {**SNAKE_RECORD, DATE: "17/05/2025 18h"}
    r = fn.post({"records": [SNAKE_RECORD, SNAKE_RECORD, bad]})
    assert r.status_code == 422
    error = error_of(r)
    assert error["code"] == "invalid_records"
    assert len(error["details"]) == 1
    detail = error["details"][0]
    assert (detail["record"], detail["field"]) == (2, DATE)
    assert "ISO 8601" in detail["reason"]
    assert "record 2" in error["message"]

def test_422_lists_every_bad_field(fn):
    records = [{COUNTER: KNOWN_COUNTER},                               # no date
               {**SNAKE_RECORD, "nom_du_compteur": ""},               # empty name
               {**SNAKE_RECORD, "coordonnées_géographiques": "north"},  # bad coordinates
               "not an object"]
    r = fn.post({"records": records})
    assert r.status_code == 422
    details = error_of(r)["details"]
    assert [(d["record"], d["field"]) for d in details] == [
        (0, DATE), (1, COUNTER), (2, "coordonnees_geographiques"), (3, "")]
    assert all(d["reason"] for d in details)

def test_422_unknown_counter_without_coordinates(fn):
    stranger = {COUNTER: "Compteur inconnu", DATE: "2025-05-17 18:00:00+02:00"}
    r = fn.post({"records": [SNAKE_RECORD, stranger]})
    assert r.status_code == 422
    error = error_of(r)
    assert error["code"] == "invalid_records"
    [detail] = error["details"]
    assert (detail["record"], detail["field"]) == (1, COUNTER)
    assert "Compteur inconnu" in detail["reason"] and "coordonnees" in detail["reason"]

@pytest.mark.parametrize("body,field", [
    ({}, "records"), ({"records": None}, "records"), ({"records": []}, "records"),
    ({"records": {"a": 1}}, "records"), ([SNAKE_RECORD], "(body)")])
def test_422_malformed_request(fn, body, field):
    r = fn.post(body)
    assert r.status_code == 422
    error = error_of(r)
    assert error["code"] == "invalid_request"
    assert error["details"][0]["field"] == field

@pytest.mark.parametrize("option,value", [
    ("model_type", "xgboost"), ("metric", "bogus"), ("metric", 3), ("model_type", ""),
    ("model_type", ["nn"])])
def test_422_unknown_model_type_or_metric(fn, option, value):
    r = fn.post({"records": [SNAKE_RECORD], option: value})
    assert r.status_code == 422, r.json
    error = error_of(r)
    assert error["code"] == "invalid_request"
    assert error["details"][0]["field"] == option

def test_413_above_max_records(make_function, store, function):
    fn = make_function(function, MODEL_STORE=store, MAX_RECORDS="3")
    assert fn.post({"records": [SNAKE_RECORD] * 3}).status_code == 200
    r = fn.post({"records": [SNAKE_RECORD] * 4})
    assert r.status_code == 413
    error = error_of(r)
    assert error["code"] == "too_many_records"
    assert "3" in error["message"]

def test_413_above_max_body_bytes(make_function, store, function):
    fn = make_function(function, MODEL_STORE=store, MAX_BODY_BYTES="2000")
    small = json.dumps({"records": [SNAKE_RECORD]}).encode()
    assert len(small) < 2000
    assert fn.post(data=small, content_type="application/json").status_code == 200
    big = json.dumps({"records": [SNAKE_RECORD] * 20}).encode()
    assert len(big) > 2000
    r = fn.post(data=big, content_type="application/json")
    assert r.status_code == 413
    assert error_of(r)["code"] == "payload_too_large"

def test_413_without_content_length(make_function, store, function):
    # Chunked uploads carry no Content-Length: the limit must hold on the stream.
    fn = make_function(function, MODEL_STORE=store, MAX_BODY_BYTES="2000")
    big = json.dumps({"records": [SNAKE_RECORD] * 20}).encode()
    r = fn.client.post("/predict", input_stream=io.BytesIO(big),
                       headers={"Content-Type": "application/json",
                                "Transfer-Encoding": "chunked"},
                       environ_overrides={"wsgi.input_terminated": True})
    assert r.status_code == 413
    error_of(r)

def test_503_with_retry_after_when_store_is_empty(make_function, tmp_path, function):
    fn = make_function(function, MODEL_STORE=str(tmp_path / "empty"))
    r = fn.post(OLD_BODIES[function])
    assert r.status_code == 503
    assert error_of(r)["code"] == "no_model"
    assert int(r.headers["Retry-After"]) > 0
    health = fn.get("/health")
    assert health.status_code == 503
    assert int(health.headers["Retry-After"]) > 0
    assert health.json["models"] == [] and health.json["status"] == "unavailable"
    models = fn.get("/models")
    assert models.status_code == 200
    assert models.json["models"] == [] and models.json["default"] is None

# -- health, models, refresh -----------------------------------------------------
def test_health_reports_loaded_models(fn, function):
    assert fn.post({"records": [SNAKE_RECORD]}).status_code == 200  # default model served
    r = fn.get("/health")
    assert r.status_code == 200
    body = r.json
    assert body["status"] == "ok" and body["task"] == function
    assert body["models"], body
    default = [m for m in body["models"] if m["model_type"] is None]
    assert default and default[0]["metric"] == DEFAULT_METRICS[function]
    for model in body["models"]:
        assert model["version"] and model["type"] in MODEL_TYPES[function]
    assert fn.get("/health/").status_code == 200

def test_models_lists_published_entries(fn, trained_store, function):
    from velocast.catalog import registry
    from velocast.catalog.store import open_store

    published = registry.list_entries(open_store(str(trained_store)), task=function)
    r = fn.get("/models")
    assert r.status_code == 200
    body = r.json
    assert body["task"] == function
    assert {m["version"] for m in body["models"]} == {e.version for e in published}
    assert {m["model_type"] for m in body["models"]} == MODEL_TYPES[function]
    best = best_entry(published, function)
    assert body["default"]["version"] == best.version
    for m in body["models"]:
        assert {"sha256", "metrics", "trained_from", "trained_to"} <= set(m)

def test_refresh_is_open_without_any_key_configured(make_function, store, function):
    fn = make_function(function, MODEL_STORE=store)
    r = fn.post(path="/refresh")
    assert r.status_code == 200 and r.json["refreshed"] is True

@pytest.mark.parametrize("path", ["/refresh", "/refresh_model"])
def test_refresh_needs_the_admin_key(make_function, store, path, function):
    fn = make_function(function, MODEL_STORE=store, ADMIN_KEY="admin-secret")
    missing = fn.post(path=path)
    assert missing.status_code == 401
    assert error_of(missing)["code"] == "unauthenticated"
    assert "Bearer" in missing.headers["WWW-Authenticate"]
    wrong = fn.post(path=path, headers={"X-API-Key": "guess"})
    assert wrong.status_code == 403
    assert error_of(wrong)["code"] == "forbidden"
    ok = fn.post(path=path, headers={"X-API-Key": "admin-secret"})
    assert ok.status_code == 200, ok.json
    assert ok.json["refreshed"] is True and ok.json["models"]
    bearer = fn.post(path=path, headers={"Authorization": "Bearer admin-secret"})
    assert bearer.status_code == 200
    # Without API_KEYS, predictions stay open.
    assert fn.post({"records": [SNAKE_RECORD]}).status_code == 200

def test_api_keys_guard_predict(make_function, store, function):
    fn = make_function(function, MODEL_STORE=store, API_KEYS="k1, k2",
                       ADMIN_KEY="admin-secret")
    body = {"records": [SNAKE_RECORD]}
    assert fn.post(body).status_code == 401
    assert error_of(fn.post(body))["code"] == "unauthenticated"
    assert fn.post(body, headers={"X-API-Key": "k3"}).status_code == 403
    assert fn.post(body, headers={"X-API-Key": "k2"}).status_code == 200
    assert fn.post(body, headers={"Authorization": "Bearer k1"}).status_code == 200
    # A client key is not an admin key, nor the reverse.
    assert fn.post(path="/refresh", headers={"X-API-Key": "k1"}).status_code == 403
    assert fn.post(body, headers={"X-API-Key": "admin-secret"}).status_code == 403
    assert fn.get("/models").status_code == 401
    assert fn.get("/models", headers={"X-API-Key": "k1"}).status_code == 200
    # Probes carry no key.
    assert fn.get("/health").status_code == 200

# -- logs --------------------------------------------------------------------------
def test_one_json_log_line_per_request(fn, json_logs, function):
    trace = "105445aa7843bc8bf206b12000100000"
    fn.get("/health")  # the model is loaded before the measured requests
    json_logs()
    ok = fn.post({"records": [SNAKE_RECORD] * 3},
                 headers={"X-Cloud-Trace-Context": f"{trace}/1;o=1",
                          "User-Agent": "velocast-test"})
    assert ok.status_code == 200
    bad = fn.post(data=b"nope", content_type="application/json")
    assert bad.status_code == 400
    lines = json_logs()
    requests_logged = [line for line in lines if "httpRequest" in line]
    assert len(requests_logged) == 2, lines
    first, second = requests_logged
    assert first["severity"] == "INFO"
    assert first["records"] == 3
    assert first["latency_ms"] >= 0
    http = first["httpRequest"]
    assert http["requestMethod"] == "POST" and http["status"] == 200
    assert http["requestUrl"].endswith("/predict")
    assert http["userAgent"] == "velocast-test"
    assert http["latency"].endswith("s") and float(http["latency"][:-1]) >= 0
    assert int(http["responseSize"]) > 0 and int(http["requestSize"]) > 0
    assert first["task"] == function
    # Without a configured project the bare trace id is logged.
    assert first["logging.googleapis.com/trace"] == trace
    assert second["severity"] == "WARNING"
    assert second["httpRequest"]["status"] == 400
    assert second["error_code"] == "invalid_json"
    assert "logging.googleapis.com/trace" not in second

def test_trace_names_the_project(make_function, store, json_logs, function):
    fn = make_function(function, MODEL_STORE=store, GCP_PROJECT="P")
    json_logs()
    r = fn.post({"records": [SNAKE_RECORD]}, headers={"X-Cloud-Trace-Context": "T/1;o=1"})
    assert r.status_code == 200
    logged = [line for line in json_logs() if "httpRequest" in line]
    assert len(logged) == 1
    assert logged[0]["logging.googleapis.com/trace"] == "projects/P/traces/T"
    assert logged[0]["records"] == 1
