"""Issue 25, N15 (the parts outside the page) and the earlier round's leniencies: what a
body may be (JSON in UTF-8, uncompressed, each key once), BigQuery's error shape on
errors found before the body is parsed, a date without a time and coordinate objects.
Real regress server on loopback (openapi.yaml states the same rules)."""

from __future__ import annotations

import gzip
import json

import pytest
import requests

from tests.function_clients import Server
from tests.transport_clients import RECORD

KEY = "k"
MAX_RECORDS = 10_000  # the default: 100,000 BigQuery calls are far over its budget


@pytest.fixture(scope="module")
def server(trained_store):
    env = {"MODEL_STORE": str(trained_store), "REFRESH_SECONDS": "3600", "API_KEYS": KEY,
           "MAX_RECORDS": str(MAX_RECORDS)}
    with Server("regress", env) as running:
        yield running


def post(server, data: bytes, content_type="application/json", **headers):
    return requests.post(server.url + "/predict", data=data, timeout=60,
                         headers={"Content-Type": content_type, "X-API-Key": KEY, **headers})


def bigquery_body(calls: list, key: str | None = KEY) -> bytes:
    context = {"api_key": key} if key else {}
    return json.dumps({"requestId": "r1", "caller": "//bigquery.googleapis.com/x",
                       "sessionUser": "u@example.com", "userDefinedContext": context,
                       "calls": calls}).encode()


CALL = [RECORD["nom_du_compteur"], "2024-10-15T06:00:00Z", None, None]


def test_n15_100k_bigquery_calls_get_413_as_bigquery_reads_errors(server):
    r = post(server, bigquery_body([CALL] * 100_000))
    assert r.status_code == 413
    assert set(r.json()) == {"errorMessage"}  # before: {"error": {...}}
    assert "max_batching_rows" in r.json()["errorMessage"]


def test_n15_a_bigquery_call_over_the_declared_size_limit_gets_errormessage(server):
    body = bigquery_body([CALL] * 200_000)  # ~12 MB: over MAX_BODY_BYTES, refused unread
    assert len(body) > 10 * 1024 * 1024
    r = post(server, body)
    assert r.status_code == 413 and set(r.json()) == {"errorMessage"}


def test_n15_a_bigquery_body_that_is_not_json_gets_400_as_errormessage(server):
    r = post(server, bigquery_body([CALL])[:-3])
    assert r.status_code == 400 and set(r.json()) == {"errorMessage"}


def test_n15_duplicate_keys_are_a_400_naming_the_key(server):
    # Before: the last one won silently (here: the second record list).
    r = post(server, b'{"records": [], "records": [%s]}' % json.dumps(RECORD).encode())
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_json"
    assert "'records' is given twice" in r.json()["error"]["message"]
    nested = post(server, b'{"records": [{"nom_du_compteur": "a", "nom_du_compteur": "b", '
                          b'"date_et_heure_de_comptage": "2024-10-15T08:00:00+02:00"}]}')
    assert nested.status_code == 400 and "'nom_du_compteur'" in nested.text
    bigquery = post(server, bigquery_body([CALL]).replace(b'"caller"', b'"requestId"', 1))
    assert bigquery.status_code == 400
    assert "'requestId' is given twice" in bigquery.json()["errorMessage"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_n15_bodies_in_utf16_or_utf32_are_refused(server, encoding):
    r = post(server, json.dumps({"records": [RECORD]}).encode(encoding))
    assert r.status_code == 400  # before: 200
    assert "UTF-8" in r.json()["error"]["message"]


def test_n15_a_body_that_is_not_utf8_is_a_400(server):
    r = post(server, json.dumps({"records": [RECORD]}, ensure_ascii=False).encode("latin-1"))
    assert r.status_code == 400 and "not UTF-8" in r.json()["error"]["message"]


def test_n15_a_leading_bom_is_ignored(server):
    assert post(server, b"\xef\xbb\xbf" + json.dumps({"records": [RECORD]}).encode()
                ).status_code == 200


@pytest.mark.parametrize("content_type, status", [
    ("application/json", 200), ("application/json; charset=utf-8", 200),
    ("application/json; charset=UTF8", 200), ("application/vnd.velocast+json", 200),
    ("application/json; charset=latin-1", 415), ("text/plain", 415),
    ("application/x-www-form-urlencoded", 415)])
def test_n15_the_content_types_openapi_states(server, content_type, status):
    assert post(server, json.dumps({"records": [RECORD]}).encode(),
                content_type).status_code == status


def test_n15_a_compressed_body_is_415_not_garbage(server):
    r = post(server, gzip.compress(json.dumps({"records": [RECORD]}).encode()),
             **{"Content-Encoding": "gzip"})
    assert r.status_code == 415  # before: 400 invalid JSON (the gzip bytes)
    assert "uncompressed" in r.json()["error"]["message"]


def _record(**fields) -> bytes:
    return json.dumps({"records": [{**RECORD, **fields}]}).encode()


@pytest.mark.parametrize("date", ["2024-10-15", "20241015"])
def test_a_date_without_a_time_is_a_422(server, date):
    r = post(server, _record(date_et_heure_de_comptage=date))
    assert r.status_code == 422  # before: 200, read as midnight
    assert "without a time" in r.json()["error"]["details"][0]["reason"]


def test_a_date_without_a_time_is_a_null_bigquery_reply(server):
    r = post(server, bigquery_body([CALL, [CALL[0], "2024-10-15", None, None]]))
    assert r.status_code == 200
    replies = r.json()["replies"]
    assert replies[0] is not None and replies[1] is None


@pytest.mark.parametrize("coordinates", [
    {"lat": 48.86377, "lon": 2.35096}, {"latitude": 48.86377, "longitude": 2.35096},
    [48.86377, 2.35096], "48.86377, 2.35096"])
def test_coordinates_in_the_documented_forms_are_read(server, coordinates):
    r = post(server, _record(nom_du_compteur="A counter the model never saw",
                             coordonnees_geographiques=coordinates))
    assert r.status_code == 200, r.text
    assert "not seen in training" in r.json()["warnings"][0]["message"]


@pytest.mark.parametrize("coordinates", [
    {"lat": 48.86377, "longitude": 2.35096}, {"lat": 48.86377, "lon": 2.35096, "alt": 35},
    {"lat": 48.86377}, {"x": 48.86377, "y": 2.35096}])
def test_other_coordinate_objects_are_a_422(server, coordinates):
    r = post(server, _record(coordonnees_geographiques=coordinates))
    assert r.status_code == 422, r.text
    assert r.json()["error"]["details"][0]["field"] == "coordonnees_geographiques"
