"""The service tier: the functions' HTTP contract and request handling, in process
(functions-framework's Flask app, tests.function_clients.load_function) and over real
HTTP (functions-framework on loopback). No browser, no GCS, no daily loop (tests/e2e).

`transport` runs a test once per transport; `function_on(name, **env)` is then the
function with those settings behind the same calls: a fresh app in process, or the
session's real server for those settings (tests/conftest.py `server_pool`).
"""

from __future__ import annotations

import pytest

TRANSPORTS = ("in-process", "http")


@pytest.fixture(params=TRANSPORTS)
def transport(request) -> str:
    return request.param


@pytest.fixture
def function_on(transport, request):
    from tests.function_clients import ServedFunction, load_function

    if transport == "in-process":
        return load_function
    pool = request.getfixturevalue("server_pool")
    return lambda name, **env: ServedFunction(name, pool.get(name, **env))
