"""Issue 25, N13: a request without a key header is read (a BigQuery call carries its key
in its body, userDefinedContext.api_key) but parsed only when the key its
userDefinedContext holds is valid: without one, or with a wrong one, it is refused
unparsed. Real regress server on loopback; the work is compared as the worker's CPU time
for bodies of the same size (a ratio, not a timing)."""

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


def _body(meta: dict, context: dict | None = None) -> bytes:
    # ~2.5 MB within the structure budget of 10,000 records: many values, costly to parse.
    records = [{**RECORD, "values": list(range(40))} for _ in range(9000)]
    body = {"meta": meta, "records": records}
    if context is not None:
        body["userDefinedContext"] = context  # after the records: found wherever it is
    return json.dumps(body, ensure_ascii=False).encode()


def _spent(server, body: bytes) -> tuple[float, set]:
    began, statuses = _cpu_seconds(server), set()
    for _ in range(ROUNDS):
        r = requests.post(server.url + "/predict", data=body, timeout=60,
                          headers={"Content-Type": "application/json"})
        statuses.add(r.status_code)
    return _cpu_seconds(server) - began, statuses


def test_n13_a_body_without_a_valid_key_is_refused_unparsed(server):
    # A valid key in the context: the body is parsed (then refused: a records body takes
    # its key from the header only).
    parsed, parsed_statuses = _spent(server, _body({}, {"api_key": "k"}))
    keyless, keyless_statuses = _spent(server, _body({"api_key": "k"}))  # not a context
    wrong, wrong_statuses = _spent(server, _body({}, {"api_key": "not-the-key"}))
    assert parsed_statuses == keyless_statuses == {401} and wrong_statuses == {403}
    # Before: all three parsed, the same work.
    assert keyless < 0.5 * parsed and wrong < 0.5 * parsed, (keyless, wrong, parsed)


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
    # The context's own name must be written plainly (BigQuery does): escaped, it is not
    # looked for, and the request is refused as keyless.
    hidden = json.dumps(body).replace('"userDefinedContext"', '"userDefined\\u0043ontext"')
    r = requests.post(server.url + "/predict", data=hidden, timeout=60,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 401 and set(r.json()) == {"errorMessage"}
