"""velocast.auth against the real Secret Manager client talking to a loopback stub."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import pytest

from tests.secret_manager_stub import SecretManagerStub, client_for
from velocast import auth
from velocast.auth import AuthError, KeyRing

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "velocast-test"
CLIENT_SECRET = f"projects/{PROJECT}/secrets/api-keys"
ADMIN_SECRET = f"projects/{PROJECT}/secrets/admin-key"
# Stopped-stub tests wait out the client's retry loop in real time: keep it short.
FAST_FETCH = 0.3


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def stub():
    with SecretManagerStub(
        {CLIENT_SECRET: "client-key-1\n", ADMIN_SECRET: "admin-key-1"}
    ) as server:
        yield server


def secret_env(**extra: str) -> dict[str, str]:
    env = {
        "API_KEYS_SECRET": "api-keys",
        "ADMIN_KEY_SECRET": "admin-key",
        "GCP_PROJECT": PROJECT,
        "SECRET_TTL_SECONDS": "60",
    }
    env.update(extra)
    return env


def ring_for(stub: SecretManagerStub, clock: FakeClock, **extra: str) -> KeyRing:
    return KeyRing.from_env(
        secret_env(**extra),
        secret_client_factory=lambda: client_for(stub.address),
        clock=clock,
        fetch_timeout=FAST_FETCH,
    )


def no_secret_manager():
    raise AssertionError("Secret Manager must not be contacted")


def status_of(check, headers) -> int:
    try:
        check(headers)
    except AuthError as exc:
        return exc.status
    return 200


def auth_records(caplog, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "velocast.auth" and r.levelno == level]


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


# -- env-var keys and no configuration -----------------------------------------


def test_env_keys_work_without_secret_manager(caplog):
    ring = KeyRing.from_env(
        {"API_KEYS": " k1, k2 ,,", "ADMIN_KEY": "adm"}, secret_client_factory=no_secret_manager
    )
    assert ring.enabled
    ring.check_client({"X-API-Key": "k1"})
    ring.check_client({"Authorization": "Bearer k2"})
    assert status_of(ring.check_client, {"X-API-Key": "k3"}) == 403
    assert status_of(ring.check_client, {"X-API-Key": ""}) == 401
    assert auth_records(caplog, logging.WARNING) == []
    assert "k1" not in repr(ring)


def test_secret_wins_over_env_keys(stub, clock, caplog):
    ring = ring_for(stub, clock, API_KEYS="local-key")
    assert status_of(ring.check_client, {"X-API-Key": "local-key"}) == 403
    ring.check_client({"X-API-Key": "client-key-1"})
    warnings = [r.getMessage() for r in auth_records(caplog, logging.WARNING)]
    assert any("API_KEYS is ignored" in w for w in warnings)


def test_no_configuration_disables_auth_with_one_warning(caplog):
    caplog.set_level(logging.DEBUG, logger="velocast.auth")
    ring = KeyRing.from_env({}, secret_client_factory=no_secret_manager)
    assert ring.enabled is False
    ring.check_client({})
    ring.check_client({"X-API-Key": "whatever"})
    ring.check_admin({})
    records = [r for r in caplog.records if r.name == "velocast.auth"]
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    message = records[0].getMessage()
    assert message.startswith("auth disabled: no API_KEYS or API_KEYS_SECRET configured")
    assert "admin routes are open" in message


def test_no_client_keys_but_admin_key_keeps_admin_closed(caplog):
    ring = KeyRing.from_env(
        {"ADMIN_KEY": "adm", "API_KEYS": " , "}, secret_client_factory=no_secret_manager
    )
    assert ring.enabled is False
    ring.check_client({})
    assert status_of(ring.check_admin, {}) == 401
    ring.check_admin({"X-API-Key": "adm"})
    [line] = auth_records(caplog, logging.WARNING)
    assert line.getMessage().startswith("auth disabled:")


# -- configuration -------------------------------------------------------------


def test_full_secret_name_and_google_cloud_project(stub, clock):
    ring = KeyRing.from_env(
        {"API_KEYS_SECRET": CLIENT_SECRET, "ADMIN_KEY_SECRET": "admin-key",
         "GOOGLE_CLOUD_PROJECT": PROJECT},
        secret_client_factory=lambda: client_for(stub.address),
        clock=clock,
    )
    ring.check_client({"X-API-Key": "client-key-1"})
    ring.check_admin({"X-API-Key": "admin-key-1"})
    assert sorted(stub.calls) == [
        f"{ADMIN_SECRET}/versions/latest",
        f"{CLIENT_SECRET}/versions/latest",
    ]


@pytest.mark.parametrize(
    "env, match",
    [
        ({"API_KEYS_SECRET": "api-keys"}, "GCP_PROJECT"),
        ({"API_KEYS_SECRET": "projects/p/secrets/s/versions/1"}, "secret id"),
        ({"API_KEYS": "k", "SECRET_TTL_SECONDS": "soon"}, "SECRET_TTL_SECONDS"),
        ({"API_KEYS": "k", "SECRET_TTL_SECONDS": "-1"}, "SECRET_TTL_SECONDS"),
    ],
)
def test_bad_configuration_is_refused(env, match):
    with pytest.raises(ValueError, match=match):
        KeyRing.from_env(env, secret_client_factory=no_secret_manager)


def test_ttl_default_is_300_seconds(stub, clock):
    env = secret_env()
    del env["SECRET_TTL_SECONDS"]
    ring = KeyRing.from_env(
        env, secret_client_factory=lambda: client_for(stub.address), clock=clock
    )
    ring.check_client({"X-API-Key": "client-key-1"})
    clock.advance(299)
    ring.check_client({"X-API-Key": "client-key-1"})
    assert len(stub.calls) == 1
    clock.advance(1)
    ring.check_client({"X-API-Key": "client-key-1"})
    assert len(stub.calls) == 2


def test_emulator_host_routes_the_default_client_to_the_stub(stub, clock, caplog):
    ring = KeyRing.from_env(
        secret_env(SECRET_MANAGER_EMULATOR_HOST=stub.address), clock=clock
    )
    ring.check_client({"X-API-Key": "client-key-1"})
    ring.check_admin({"X-API-Key": "admin-key-1"})
    assert len(stub.calls) == 2
    assert any("test only" in r.getMessage() for r in auth_records(caplog, logging.WARNING))


# -- processes -----------------------------------------------------------------


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_import_is_stdlib_only():
    # Compared with a baseline: a *-nspkg.pth file in the venv preloads the empty
    # `google` and `google.cloud` namespace packages at interpreter start.
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import velocast.auth as a\n"
        "r = a.KeyRing.from_env({'API_KEYS': 'k', 'ADMIN_KEY': 'a'})\n"
        "r.check_client({'X-API-Key': 'k'}); r.check_admin({'X-API-Key': 'a'})\n"
        "new = set(sys.modules) - before\n"
        "print(sorted(m for m in new if m.split('.')[0] in ('grpc', 'google', 'proto')))\n"
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_stub_runs_as_a_process():
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.secret_manager_stub", "--port", "0",
         "--secret", "api-keys=k1", "--secret", "api-keys=k2",
         "--secret", f"{ADMIN_SECRET}=adm"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        if not line.startswith("listening on "):
            proc.kill()
            pytest.fail(f"stub did not start: {line!r} {proc.stderr.read()}")
        address = line.split()[-1]
        ring = KeyRing.from_env(
            {"API_KEYS_SECRET": "api-keys", "ADMIN_KEY_SECRET": ADMIN_SECRET,
             "GCP_PROJECT": "any-project", "SECRET_MANAGER_EMULATOR_HOST": address}
        )
        ring.check_client({"X-API-Key": "k1"})
        ring.check_client({"X-API-Key": "k2"})
        ring.check_admin({"X-API-Key": "adm"})
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
