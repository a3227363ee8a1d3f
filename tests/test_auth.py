"""velocast.auth against the real Secret Manager client talking to a loopback stub:
client keys, rotation, failing closed, the admin key. Configuration from the
environment and the module's imports: tests/test_auth_configuration.py."""

from __future__ import annotations

import logging
import threading

import grpc
import pytest

pytest.register_assert_rewrite("tests.auth_helpers")

from tests.auth_helpers import (CLIENT_SECRET, FAST_FETCH, auth_records,  # noqa: E402
                               no_secret_manager, ring_for, secret_env, status_of)
from tests.secret_manager_stub import client_for  # noqa: E402
from velocast import auth  # noqa: E402
from velocast.auth import AuthError, KeyRing  # noqa: E402

pytest_plugins = ["tests.auth_helpers"]


# -- client keys from Secret Manager -------------------------------------------


def test_valid_key_passes_as_x_api_key_or_bearer(stub, clock):
    ring = ring_for(stub, clock)
    assert ring.enabled
    ring.check_client({"X-API-Key": "client-key-1"})
    ring.check_client({"x-api-key": "  client-key-1 "})
    ring.check_client({"Authorization": "Bearer client-key-1"})
    ring.check_client({"authorization": "bearer client-key-1"})
    assert stub.calls == [f"{CLIENT_SECRET}/versions/latest"]  # cached, fetched once


def test_werkzeug_headers_are_case_insensitive(stub, clock):
    from werkzeug.datastructures import Headers

    ring = ring_for(stub, clock)
    ring.check_client(Headers([("x-API-key", "client-key-1")]))


def test_x_api_key_wins_over_authorization(stub, clock):
    # Behind Cloud Run IAM, Authorization carries a Google ID token.
    ring = ring_for(stub, clock)
    ring.check_client({"X-API-Key": "client-key-1", "Authorization": "Bearer eyJ.id.token"})


def test_wrong_key_is_403(stub, clock):
    ring = ring_for(stub, clock)
    for headers in (
        {"X-API-Key": "client-key-2"},
        {"Authorization": "Bearer nope"},
        {"X-API-Key": "client-key-1x"},
        {"X-API-Key": "client-key-"},
    ):
        with pytest.raises(AuthError) as err:
            ring.check_client(headers)
        assert (err.value.status, err.value.code) == (403, "forbidden")
        assert headers.get("X-API-Key", "nope") not in err.value.message


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-API-Key": ""}, {"X-API-Key": "   "}, {"Authorization": "Bearer "},
     {"Authorization": "Basic dXNlcjpwYXNz"}, {"Content-Type": "application/json"}],
)
def test_missing_key_is_401_without_fetching(stub, clock, headers):
    ring = ring_for(stub, clock)
    with pytest.raises(AuthError) as err:
        ring.check_client(headers)
    assert (err.value.status, err.value.code) == (401, "unauthenticated")
    assert "WWW-Authenticate" in err.value.headers
    assert stub.calls == []


def test_every_key_in_the_secret_is_valid(stub, clock):
    stub.secrets[CLIENT_SECRET] = b"\n  key-a  \r\nkey-b\n\n\tkey-c\n"
    ring = ring_for(stub, clock)
    for key in ("key-a", "key-b", "key-c"):
        ring.check_client({"X-API-Key": key})
    assert status_of(ring.check_client, {"X-API-Key": ""}) == 401
    assert status_of(ring.check_client, {"X-API-Key": "key-a key-b"}) == 403


def test_rotation_follows_the_ttl_without_rebuilding(stub, clock):
    ring = ring_for(stub, clock)  # TTL 60 s
    ring.check_client({"X-API-Key": "client-key-1"})

    # Rotation, step 1: the new key is added next to the old one.
    stub.secrets[CLIENT_SECRET] = b"client-key-1\nclient-key-2"
    clock.advance(59.9)
    assert status_of(ring.check_client, {"X-API-Key": "client-key-2"}) == 403  # not seen yet
    clock.advance(0.1)
    ring.check_client({"X-API-Key": "client-key-2"})
    ring.check_client({"X-API-Key": "client-key-1"})

    # Step 2: the old key is removed; it lives until the TTL and not a moment longer.
    stub.secrets[CLIENT_SECRET] = b"client-key-2"
    clock.advance(59)
    ring.check_client({"X-API-Key": "client-key-1"})
    clock.advance(1)
    assert status_of(ring.check_client, {"X-API-Key": "client-key-1"}) == 403
    ring.check_client({"X-API-Key": "client-key-2"})
    assert len(stub.calls) == 3


def test_concurrent_requests_after_expiry_fetch_once(stub, clock):
    ring = ring_for(stub, clock)
    ring.check_client({"X-API-Key": "client-key-1"})
    clock.advance(61)
    barrier = threading.Barrier(16)
    errors: list[BaseException] = []

    def worker():
        barrier.wait()
        try:
            ring.check_client({"X-API-Key": "client-key-1"})
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(stub.calls) == 2


# -- fail closed ---------------------------------------------------------------


def test_unreachable_secret_manager_fails_closed(stub, clock, caplog):
    stub.stop()
    clients = []

    def factory():
        clients.append(client_for(stub.address))
        return clients[-1]

    ring = KeyRing.from_env(
        secret_env(), secret_client_factory=factory, clock=clock, fetch_timeout=FAST_FETCH
    )
    caplog.set_level(logging.INFO, logger="velocast.auth")

    for key in ("client-key-1", "anything"):
        with pytest.raises(AuthError) as err:
            ring.check_client({"X-API-Key": key})
        assert (err.value.status, err.value.code) == (503, "auth_unavailable")
        assert err.value.headers["Retry-After"] == "5"
    errors = auth_records(caplog, logging.ERROR)
    assert len(errors) == 1  # the second request is inside the pause: no new fetch, no new line
    assert CLIENT_SECRET in errors[0].getMessage()
    assert "ServiceUnavailable" in errors[0].getMessage() or "RetryError" in errors[0].getMessage()
    assert "client-key-1" not in caplog.text

    # Back up: the next request after the pause fetches again, same KeyRing. The
    # wait is for the channel's reconnect backoff (real time, capped by the stub's
    # channel options), which the fake clock does not drive.
    stub.restart()
    grpc.channel_ready_future(clients[0].transport.grpc_channel).result(timeout=5)
    clock.advance(auth.FAILURE_PAUSE_SECONDS)
    ring.check_client({"X-API-Key": "client-key-1"})
    assert status_of(ring.check_client, {"X-API-Key": "anything"}) == 403
    assert len(clients) == 1
    assert any("readable again" in r.getMessage() for r in auth_records(caplog, logging.INFO))


def test_expired_cache_is_not_used_when_refresh_fails(stub, clock, caplog):
    ring = ring_for(stub, clock)
    ring.check_client({"X-API-Key": "client-key-1"})
    stub.stop()
    clock.advance(59)
    ring.check_client({"X-API-Key": "client-key-1"})  # still within the TTL
    clock.advance(1)
    assert status_of(ring.check_client, {"X-API-Key": "client-key-1"}) == 503
    assert len(auth_records(caplog, logging.ERROR)) == 1


@pytest.mark.parametrize("code", ["PERMISSION_DENIED", "NOT_FOUND"])
def test_secret_manager_errors_fail_closed(stub, clock, caplog, code):
    if code == "NOT_FOUND":
        del stub.secrets[CLIENT_SECRET]
    else:
        stub.fail_with = grpc.StatusCode.PERMISSION_DENIED
    ring = ring_for(stub, clock)
    assert status_of(ring.check_client, {"X-API-Key": "client-key-1"}) == 503
    [line] = auth_records(caplog, logging.ERROR)
    assert CLIENT_SECRET in line.getMessage()
    # Non-retryable errors don't wait out the retry loop.
    assert len(stub.calls) == 1


def test_client_construction_failure_fails_closed_and_is_retried(stub, clock, caplog):
    # e.g. DefaultCredentialsError when the instance has no service account.
    attempts = []

    def factory():
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("no credentials")
        return client_for(stub.address)

    ring = KeyRing.from_env(secret_env(), secret_client_factory=factory, clock=clock)
    assert status_of(ring.check_client, {"X-API-Key": "client-key-1"}) == 503
    assert "RuntimeError: no credentials" in auth_records(caplog, logging.ERROR)[0].getMessage()
    clock.advance(auth.FAILURE_PAUSE_SECONDS - 0.1)
    assert status_of(ring.check_client, {"X-API-Key": "client-key-1"}) == 503
    assert len(attempts) == 1
    clock.advance(0.1)
    ring.check_client({"X-API-Key": "client-key-1"})
    assert len(attempts) == 2


def test_empty_secret_rejects_every_key(stub, clock, caplog):
    stub.secrets[CLIENT_SECRET] = b"\n \n"
    ring = ring_for(stub, clock)
    assert status_of(ring.check_client, {"X-API-Key": "client-key-1"}) == 403
    assert status_of(ring.check_client, {"X-API-Key": ""}) == 401
    assert len(auth_records(caplog, logging.WARNING)) == 1


# -- admin key -----------------------------------------------------------------


def test_admin_key_from_secret(stub, clock):
    ring = ring_for(stub, clock)
    ring.check_admin({"X-API-Key": "admin-key-1"})
    ring.check_admin({"Authorization": "Bearer admin-key-1"})
    assert status_of(ring.check_admin, {"X-API-Key": "client-key-1"}) == 403  # not admin
    assert status_of(ring.check_admin, {}) == 401
    assert status_of(ring.check_client, {"X-API-Key": "admin-key-1"}) == 403  # not a client key


def test_admin_key_from_env():
    ring = KeyRing.from_env(
        {"API_KEYS": "c1,c2", "ADMIN_KEY": " adm "}, secret_client_factory=no_secret_manager
    )
    ring.check_admin({"X-API-Key": "adm"})
    assert status_of(ring.check_admin, {"X-API-Key": "c1"}) == 403
    assert status_of(ring.check_admin, {"X-API-Key": "ad"}) == 403
    assert status_of(ring.check_admin, {}) == 401


def test_admin_closed_when_only_client_keys_are_configured(caplog):
    ring = KeyRing.from_env({"API_KEYS": "c1"}, secret_client_factory=no_secret_manager)
    assert status_of(ring.check_admin, {"X-API-Key": "c1"}) == 403
    assert status_of(ring.check_admin, {}) == 401
    [line] = auth_records(caplog, logging.WARNING)
    assert "ADMIN_KEY" in line.getMessage()
