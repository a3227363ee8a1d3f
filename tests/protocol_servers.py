"""Both functions as real functions-framework servers on loopback, serving the
session's `trained_store` folder, for the BigQuery and Vertex AI protocol tests (one
pair for the session, from tests/conftest.py's `server_pool`)."""

from __future__ import annotations

import contextlib
import json

import pytest
import requests

from tests.function_clients import Server
from velocast.dev.servers import started

CLIENT_KEY = "protocol-client-key"
# Large enough for a 50,000-call BigQuery batch (about 4.5 MB of JSON).
MAX_RECORDS = 50_000
TIMEOUT = 120


def settings(store) -> dict:
    return {"MODEL_STORE": str(store), "REFRESH_SECONDS": "3600", "MAX_RECORDS": str(MAX_RECORDS),
            "API_KEYS": CLIENT_KEY}


@contextlib.contextmanager
def running(store, names=("classify", "regress"), **env):
    servers = {name: Server(name, {**settings(store), **env}) for name in names}
    with started(servers):
        yield servers


# Fixtures of the protocol test modules (pytest_plugins = ["tests.protocol_servers"]): the
# BigQuery and Vertex modules read the same two servers, started once per session.
@pytest.fixture(scope="session")
def protocol_servers(server_pool, trained_store):
    return server_pool.several(("classify", "regress"), **settings(trained_store))


@pytest.fixture
def regress(protocol_servers):
    return protocol_servers["regress"]


@pytest.fixture
def classify(protocol_servers):
    return protocol_servers["classify"]


def post(server: Server, body, headers=None, raw: bytes | None = None) -> requests.Response:
    data = raw if raw is not None else json.dumps(body, ensure_ascii=False).encode()
    return requests.post(server.url + "/", data=data, timeout=TIMEOUT,
                         headers={"Content-Type": "application/json", **(headers or {})})


def old_answer(server: Server, records, **options) -> dict:
    """The old {"records"} body's answer for the same rows (with the header key)."""
    r = post(server, {"records": records, **options}, headers={"X-API-Key": CLIENT_KEY})
    assert r.status_code == 200, r.text
    return r.json()
