"""velocast.serving.auth reading keys from real files laid out as the platform mounts the
secrets; what happens when a file cannot be read is test_auth_fail_closed.py."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytest.register_assert_rewrite("tests.auth_files")

from tests.auth_files import auth_records, no_file_read, ring_for, status_of  # noqa: E402
from velocast.serving.auth import AuthError, KeyRing  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


pytest_plugins = ["tests.auth_files"]


# -- client keys from a file ---------------------------------------------------


def test_valid_key_passes_as_x_api_key_or_bearer(files, clock, reads):
    ring = ring_for(files, clock, reads)
    assert ring.enabled
    ring.check_client({"X-API-Key": "client-key-1"})
    ring.check_client({"x-api-key": "  client-key-1 "})
    ring.check_client({"Authorization": "Bearer client-key-1"})
    ring.check_client({"authorization": "bearer client-key-1"})
    assert reads.paths == [str(files.client)]  # cached, read once


def test_werkzeug_headers_are_case_insensitive(files, clock, reads):
    from werkzeug.datastructures import Headers

    ring = ring_for(files, clock, reads)
    ring.check_client(Headers([("x-API-key", "client-key-1")]))


def test_x_api_key_wins_over_authorization(files, clock, reads):
    # Behind Cloud Run IAM, Authorization carries a Google ID token.
    ring = ring_for(files, clock, reads)
    ring.check_client({"X-API-Key": "client-key-1", "Authorization": "Bearer eyJ.id.token"})


def test_wrong_key_is_403(files, clock, reads):
    ring = ring_for(files, clock, reads)
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
def test_missing_key_is_401_without_reading(files, clock, reads, headers):
    ring = ring_for(files, clock, reads)
    with pytest.raises(AuthError) as err:
        ring.check_client(headers)
    assert (err.value.status, err.value.code) == (401, "unauthenticated")
    assert "WWW-Authenticate" in err.value.headers
    assert reads.paths == []


def test_every_key_in_the_file_is_valid(files, clock, reads):
    files.client.write_bytes(b"\n  key-a  \r\nkey-b\n\n\tkey-c\n")
    ring = ring_for(files, clock, reads)
    for key in ("key-a", "key-b", "key-c"):
        ring.check_client({"X-API-Key": key})
    assert status_of(ring.check_client, {"X-API-Key": ""}) == 401
    assert status_of(ring.check_client, {"X-API-Key": "key-a key-b"}) == 403


def test_rotation_follows_the_ttl_without_rebuilding(files, clock, reads):
    ring = ring_for(files, clock, reads)  # TTL 60 s
    ring.check_client({"X-API-Key": "client-key-1"})

    # Rotation, step 1: the new key is added next to the old one.
    files.client.write_text("client-key-1\nclient-key-2")
    clock.advance(59.9)
    assert status_of(ring.check_client, {"X-API-Key": "client-key-2"}) == 403  # not seen yet
    clock.advance(0.1)
    ring.check_client({"X-API-Key": "client-key-2"})
    ring.check_client({"X-API-Key": "client-key-1"})

    # Step 2: the old key is removed; it lives until the TTL and not a moment longer.
    files.client.write_text("client-key-2")
    clock.advance(59)
    ring.check_client({"X-API-Key": "client-key-1"})
    clock.advance(1)
    assert status_of(ring.check_client, {"X-API-Key": "client-key-1"}) == 403
    ring.check_client({"X-API-Key": "client-key-2"})
    assert len(reads.paths) == 3


def test_concurrent_requests_after_expiry_read_once(files, clock, reads):
    ring = ring_for(files, clock, reads)
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
    assert len(reads.paths) == 2


# -- admin key -----------------------------------------------------------------


def test_admin_key_from_file(files, clock, reads):
    ring = ring_for(files, clock, reads)
    ring.check_admin({"X-API-Key": "admin-key-1"})
    ring.check_admin({"Authorization": "Bearer admin-key-1"})
    assert status_of(ring.check_admin, {"X-API-Key": "client-key-1"}) == 403  # not admin
    assert status_of(ring.check_admin, {}) == 401
    assert status_of(ring.check_client, {"X-API-Key": "admin-key-1"}) == 403  # not a client key


def test_admin_key_from_env():
    ring = KeyRing.from_env({"API_KEYS": "c1,c2", "ADMIN_KEY": " adm "}, reader=no_file_read)
    ring.check_admin({"X-API-Key": "adm"})
    assert status_of(ring.check_admin, {"X-API-Key": "c1"}) == 403
    assert status_of(ring.check_admin, {"X-API-Key": "ad"}) == 403
    assert status_of(ring.check_admin, {}) == 401


def test_admin_closed_when_only_client_keys_are_configured(caplog):
    ring = KeyRing.from_env({"API_KEYS": "c1"}, reader=no_file_read)
    assert status_of(ring.check_admin, {"X-API-Key": "c1"}) == 403
    assert status_of(ring.check_admin, {}) == 401
    [line] = auth_records(caplog, logging.WARNING)
    assert "ADMIN_KEY" in line.getMessage()


# -- env-var keys and no configuration -----------------------------------------


def test_env_keys_work_without_files(caplog):
    ring = KeyRing.from_env({"API_KEYS": " k1, k2 ,,", "ADMIN_KEY": "adm"}, reader=no_file_read)
    assert ring.enabled
    ring.check_client({"X-API-Key": "k1"})
    ring.check_client({"Authorization": "Bearer k2"})
    assert status_of(ring.check_client, {"X-API-Key": "k3"}) == 403
    assert status_of(ring.check_client, {"X-API-Key": ""}) == 401
    assert auth_records(caplog, logging.WARNING) == []
    assert "k1" not in repr(ring)


def test_file_wins_over_env_keys(files, clock, reads, caplog):
    ring = ring_for(files, clock, reads, API_KEYS="local-key")
    assert status_of(ring.check_client, {"X-API-Key": "local-key"}) == 403
    ring.check_client({"X-API-Key": "client-key-1"})
    warnings = [r.getMessage() for r in auth_records(caplog, logging.WARNING)]
    assert any("API_KEYS is ignored" in w for w in warnings)


def test_no_configuration_disables_auth_with_one_warning(caplog):
    caplog.set_level(logging.DEBUG, logger="velocast.auth")
    ring = KeyRing.from_env({}, reader=no_file_read)
    assert ring.enabled is False
    ring.check_client({})
    ring.check_client({"X-API-Key": "whatever"})
    ring.check_admin({})
    records = [r for r in caplog.records if r.name == "velocast.auth"]
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    message = records[0].getMessage()
    assert message.startswith("auth disabled: no API_KEYS or API_KEYS_FILE configured")
    assert "admin routes are open" in message


def test_no_client_keys_but_admin_key_keeps_admin_closed(caplog):
    ring = KeyRing.from_env({"ADMIN_KEY": "adm", "API_KEYS": " , "}, reader=no_file_read)
    assert ring.enabled is False
    ring.check_client({})
    assert status_of(ring.check_admin, {}) == 401
    ring.check_admin({"X-API-Key": "adm"})
    [line] = auth_records(caplog, logging.WARNING)
    assert line.getMessage().startswith("auth disabled:")


# -- configuration -------------------------------------------------------------


def test_each_file_is_read_by_its_own_path(files, clock, reads):
    ring = ring_for(files, clock, reads)
    ring.check_client({"X-API-Key": "client-key-1"})
    ring.check_admin({"X-API-Key": "admin-key-1"})
    assert sorted(reads.paths) == sorted([str(files.admin), str(files.client)])
    assert str(files.client) in repr(ring) and "client-key-1" not in repr(ring)


@pytest.mark.parametrize(
    "env, match",
    [
        # The variables of the Secret Manager client this replaced: refused, since
        # ignoring them would turn auth off on a stale deployment.
        ({"API_KEYS_SECRET": "api-keys", "API_KEYS": "k"}, "API_KEYS_FILE"),
        ({"ADMIN_KEY_SECRET": "projects/p/secrets/s"}, "ADMIN_KEY_FILE"),
        ({"API_KEYS": "k", "SECRET_TTL_SECONDS": "soon"}, "SECRET_TTL_SECONDS"),
        ({"API_KEYS": "k", "SECRET_TTL_SECONDS": "-1"}, "SECRET_TTL_SECONDS"),
    ],
)
def test_bad_configuration_is_refused(env, match):
    with pytest.raises(ValueError, match=match):
        KeyRing.from_env(env, reader=no_file_read)


def test_ttl_default_is_300_seconds(files, clock, reads):
    env = files.env()
    del env["SECRET_TTL_SECONDS"]
    ring = KeyRing.from_env(env, clock=clock, reader=reads)
    ring.check_client({"X-API-Key": "client-key-1"})
    clock.advance(299)
    ring.check_client({"X-API-Key": "client-key-1"})
    assert len(reads.paths) == 1
    clock.advance(1)
    ring.check_client({"X-API-Key": "client-key-1"})
    assert len(reads.paths) == 2


def test_default_reader_reads_the_real_files(files, clock):
    # No reader injected: the module's own (threaded, bounded) file read.
    ring = KeyRing.from_env(files.env(), clock=clock)
    ring.check_client({"X-API-Key": "client-key-1"})
    ring.check_admin({"X-API-Key": "admin-key-1"})
    files.client.write_text("client-key-9")
    clock.advance(60)
    ring.check_client({"X-API-Key": "client-key-9"})


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
        "import velocast.serving.auth as a\n"
        "r = a.KeyRing.from_env({'API_KEYS': 'k', 'ADMIN_KEY': 'a'})\n"
        "r.check_client({'X-API-Key': 'k'}); r.check_admin({'X-API-Key': 'a'})\n"
        "new = set(sys.modules) - before\n"
        "print(sorted(m for m in new if m.split('.')[0] in ('grpc', 'google', 'proto')))\n"
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_fresh_process_reads_its_keys_from_the_files_named_in_its_environment(files):
    # Configured only through the environment, as Terraform configures a function.
    files.client.write_text("k1\nk2\n")
    files.admin.write_text("adm\n")
    code = (
        "import os, sys\n"
        "import velocast.serving.auth as a\n"
        "r = a.KeyRing.from_env()\n"
        "r.check_client({'X-API-Key': 'k1'}); r.check_client({'X-API-Key': 'k2'})\n"
        "r.check_admin({'X-API-Key': 'adm'})\n"
        "try:\n"
        "    r.check_client({'X-API-Key': 'adm'})\n"
        "except a.AuthError as e:\n"
        "    print(e.status)\n"
        "print(sorted(m for m in sys.modules if m.startswith(('grpc', 'google.cloud.secretmanager'))))\n"
    )
    clean = {k: v for k, v in os.environ.items() if k not in {"API_KEYS", "ADMIN_KEY"}}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, env={**clean, "API_KEYS_FILE": str(files.client),
                                             "ADMIN_KEY_FILE": str(files.admin)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["403", "[]"]
