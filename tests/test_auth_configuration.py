"""velocast.auth's configuration: keys from environment variables, no configuration
at all, secret names and TTL from the environment, the emulator host; and that the
module imports the standard library only (the Secret Manager client is lazy)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

pytest.register_assert_rewrite("tests.auth_helpers")

from tests.auth_helpers import (ADMIN_SECRET, CLIENT_SECRET, PROJECT, ROOT,  # noqa: E402
                               auth_records, no_secret_manager, ring_for, secret_env,
                               status_of)
from tests.secret_manager_stub import client_for  # noqa: E402
from velocast.auth import KeyRing  # noqa: E402

pytest_plugins = ["tests.auth_helpers"]


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
