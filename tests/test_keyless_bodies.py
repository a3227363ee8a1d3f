"""Issue 25, N13: a request without a key header is read (a BigQuery call carries its key
in its body, userDefinedContext.api_key) but, when its body cannot hold a key, refused
without parsing it. Real regress server on loopback; the work is compared as the
worker's CPU time for the same bodies with and without the key's name in them (a ratio,
not a timing)."""

from __future__ import annotations

import json

import pytest
import requests

from bench.common import Workers
from tests.function_clients import Server
from tests.transport_clients import RECORD

ROUNDS = 10


@pytest.fixture(scope="module")
def server(trained_store):
    env = {"MODEL_STORE": str(trained_store), "REFRESH_SECONDS": "3600", "API_KEYS": "k"}
    with Server("regress", env) as running:
        yield running


def _cpu_seconds(server) -> float:
    total = 0
    for pid in Workers(server).pids():
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (proc(5) fields 14, 15)
    return total / 100  # clock ticks (_SC_CLK_TCK: 100 on Linux)


def _body(meta: dict) -> bytes:
    # ~2.5 MB within the structure budget of 10,000 records: many values, costly to parse.
    records = [{**RECORD, "values": list(range(40))} for _ in range(9000)]
    return json.dumps({"records": records, "meta": meta}, ensure_ascii=False).encode()


def _spent(server, body: bytes) -> tuple[float, set]:
    began, statuses = _cpu_seconds(server), set()
    for _ in range(ROUNDS):
        r = requests.post(server.url + "/predict", data=body, timeout=60,
                          headers={"Content-Type": "application/json"})
        statuses.add(r.status_code)
    return _cpu_seconds(server) - began, statuses


def test_n13_a_keyless_body_that_cannot_hold_a_key_is_refused_unparsed(server):
    keyless, keyless_statuses = _spent(server, _body({"note": "no key here"}))
    # A member named api_key: it may be a BigQuery call's key, so the body is parsed.
    parsed, parsed_statuses = _spent(server, _body({"api_key": "k"}))
    assert keyless_statuses == parsed_statuses == {401}
    assert keyless < 0.5 * parsed, (keyless, parsed)  # before: the same work (both parsed)


def test_n13_a_bigquery_call_with_its_key_in_the_body_is_still_served(server):
    body = {"requestId": "r1", "caller": "c", "sessionUser": "u",
            "userDefinedContext": {"api_key": "k"},
            "calls": [[RECORD["nom_du_compteur"], "2024-10-15T06:00:00Z", None, None]]}
    r = requests.post(server.url + "/predict", json=body, timeout=60)
    assert r.status_code == 200, r.text
    assert len(r.json()["replies"]) == 1
    escaped = json.dumps(body).replace('"api_key"', '"api\\u005fkey"')  # the same JSON
    r = requests.post(server.url + "/predict", data=escaped, timeout=60,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    wrong = requests.post(server.url + "/predict", json={
        **body, "userDefinedContext": {"api_key": "nope"}}, timeout=60)
    assert wrong.status_code == 403 and set(wrong.json()) == {"errorMessage"}
    none = requests.post(server.url + "/predict", json={**body, "userDefinedContext": {}},
                         timeout=60)
    assert none.status_code == 401 and "userDefinedContext.api_key" in none.json()["errorMessage"]
