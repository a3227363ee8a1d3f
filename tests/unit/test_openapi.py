"""openapi.yaml: a valid OpenAPI 3.0 document that says what the code does (routes,
limits, metrics, model types, labels, error shapes). That real answers conform to it
is checked in test_end_to_end.py and test_schemathesis.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OPENAPI = ROOT / "openapi.yaml"


@pytest.fixture(scope="module")
def openapi() -> dict:
    import yaml  # a dev dependency: missing, this fails rather than skips
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
    from velocast.serving.page import PAGE_ROUTES
    from velocast.serving.service import ROUTES

    assert openapi["openapi"] == "3.0.3"
    assert {path: {m.upper() for m in item if m != "parameters"}
            for path, item in openapi["paths"].items()} == \
        {path: {method} for path, method in {**ROUTES, **PAGE_ROUTES}.items()}
    urls = {server["url"]: server["description"] for server in openapi["servers"]}
    assert urls["http://localhost:8080"].startswith("classify")
    assert urls["http://localhost:8000"].startswith("regress")
    schemes = openapi["components"]["securitySchemes"]
    assert schemes["ApiKeyHeader"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert (schemes["BearerAuth"]["type"], schemes["BearerAuth"]["scheme"]) == ("http", "bearer")
    assert openapi["paths"]["/health"]["get"]["security"] == []


def test_openapi_matches_the_code(openapi):
    from velocast.catalog import registry
    from velocast.core import tasks
    from velocast.serving.page import PAGE_ROUTES
    from velocast.core.schema import MAX_NAME_LENGTH
    from velocast.serving.settings import Settings

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

    label = schemas["ClassifyResponse"]["properties"]["label"]["items"]
    assert tuple(label["enum"]) == tasks.LABELS == ("faible", "forte")

    # Every error response is the Error shape; every 503 says when to retry.
    error_ref = "#/components/schemas/Error"
    predict_error_ref = "#/components/schemas/PredictError"
    assert schemas["PredictError"]["anyOf"][0] == {"$ref": error_ref}
    assert schemas["BigQueryRequest"]["properties"]["calls"]["maxItems"] == \
        request["properties"]["records"]["maxItems"]
    for path, method, operation in operations(openapi):
        if path in PAGE_ROUTES:  # the page's files: no model behind them
            assert operation["security"] == [] and "200" in operation["responses"], path
            continue
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
                # Predict routes also answer BigQuery's {"errorMessage"} (PredictError).
                allowed = [{"$ref": error_ref}] + ([{"$ref": predict_error_ref}]
                                                   if path in ("/", "/predict") else [])
                assert schema in allowed, (path, method, status)
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
