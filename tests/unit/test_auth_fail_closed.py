"""velocast.serving.auth when a key file cannot be read: every request is refused (503
auth_unavailable with Retry-After, one error line per failed read), never served
from an expired cache, and the file is read again after the pause. In the cloud
such a read fails when Secret Manager cannot be reached behind the mounted volume
(Cloud Run docs: "if a secret is inaccessible, reading the mounted volume fails")."""

from __future__ import annotations

import logging
import threading
import time

import pytest

pytest.register_assert_rewrite("tests.auth_files")

from tests.auth_files import KeyFiles, auth_records, ring_for, status_of  # noqa: E402
from velocast.serving import auth  # noqa: E402
from velocast.serving.auth import AuthError  # noqa: E402


pytest_plugins = ["tests.auth_files"]


def test_missing_file_fails_closed_and_recovers(files, clock, reads, caplog):
    files.client.unlink()
    ring = ring_for(files, clock, reads)
    caplog.set_level(logging.INFO, logger="velocast.auth")

    for key in ("client-key-1", "anything"):
        with pytest.raises(AuthError) as err:
            ring.check_client({"X-API-Key": key})
        assert (err.value.status, err.value.code) == (503, "auth_unavailable")
        assert err.value.headers["Retry-After"] == "5"
    errors = auth_records(caplog, logging.ERROR)
    assert len(errors) == 1  # the second request is inside the pause: no new read, no new line
    assert str(files.client) in errors[0].getMessage()
    assert "FileNotFoundError" in errors[0].getMessage()
    assert "client-key-1" not in caplog.text
    assert len(reads.paths) == 1

    # Back: the next request after the pause reads again, same KeyRing.
    files.client.write_text("client-key-1\n")
    clock.advance(auth.FAILURE_PAUSE_SECONDS)
    ring.check_client({"X-API-Key": "client-key-1"})
    assert status_of(ring.check_client, {"X-API-Key": "anything"}) == 403
    assert any("readable again" in r.getMessage() for r in auth_records(caplog, logging.INFO))


def test_expired_cache_is_not_used_when_a_read_fails(files, clock, reads, caplog):
    ring = ring_for(files, clock, reads)
    ring.check_client({"X-API-Key": "client-key-1"})
    files.client.unlink()
    clock.advance(59)
    ring.check_client({"X-API-Key": "client-key-1"})  # still within the TTL
    clock.advance(1)
    assert status_of(ring.check_client, {"X-API-Key": "client-key-1"}) == 503
    assert len(auth_records(caplog, logging.ERROR)) == 1


def _break(files: KeyFiles, how: str) -> str:
    """Make the client key file unreadable in one way; the error name it gives."""
    if how == "missing":
        files.client.unlink()
        return "FileNotFoundError"
    if how == "directory":
        files.client.unlink()
        files.client.mkdir()
        return "IsADirectoryError"
    if how == "not_utf8":
        files.client.write_bytes(b"client-key-1\n\xff\xfe")
        return "UnicodeDecodeError"
    # The mount point itself is gone and a plain file sits where the folder was.
    files.client.unlink()
    files.client.parent.rmdir()
    files.client.parent.write_text("client-key-1")
    return "NotADirectoryError"


@pytest.mark.parametrize("how", ["missing", "directory", "not_utf8", "parent_not_a_folder"])
def test_unreadable_file_fails_closed(files, clock, reads, caplog, how):
    error = _break(files, how)
    ring = ring_for(files, clock, reads)
    assert status_of(ring.check_client, {"X-API-Key": "client-key-1"}) == 503
    [line] = auth_records(caplog, logging.ERROR)
    assert str(files.client) in line.getMessage() and error in line.getMessage()
    assert len(reads.paths) == 1
    # The admin key lives in its own file: still readable, still checked.
    ring.check_admin({"X-API-Key": "admin-key-1"})


def test_failed_read_is_retried_only_after_the_pause(files, clock, reads, caplog):
    files.client.unlink()
    ring = ring_for(files, clock, reads)
    assert status_of(ring.check_client, {"X-API-Key": "client-key-1"}) == 503
    files.client.write_text("client-key-1")
    clock.advance(auth.FAILURE_PAUSE_SECONDS - 0.1)
    assert status_of(ring.check_client, {"X-API-Key": "client-key-1"}) == 503
    assert len(reads.paths) == 1
    clock.advance(0.1)
    ring.check_client({"X-API-Key": "client-key-1"})
    assert len(reads.paths) == 2


def test_empty_file_rejects_every_key(files, clock, reads, caplog):
    files.client.write_bytes(b"\n \n")
    ring = ring_for(files, clock, reads)
    assert status_of(ring.check_client, {"X-API-Key": "client-key-1"}) == 403
    assert status_of(ring.check_client, {"X-API-Key": ""}) == 401
    assert len(auth_records(caplog, logging.WARNING)) == 1


def test_a_read_that_hangs_is_cut_short_and_parks_one_thread_at_most(files, clock, monkeypatch,
                                                                      caplog):
    # A hung read of the mount (Secret Manager not answering) has no local form: the
    # file read itself is replaced by one that waits until released.
    monkeypatch.setattr(auth, "READ_TIMEOUT_SECONDS", 0.3)
    release = threading.Event()
    monkeypatch.setattr(auth, "_read_regular_file", lambda path: release.wait(30) and b"")
    ring = ring_for(files, clock, auth.read_file)
    before = threading.active_count()
    started = time.monotonic()
    try:
        assert status_of(ring.check_client, {"X-API-Key": "client-key-1"}) == 503
        assert time.monotonic() - started < 3
        [line] = auth_records(caplog, logging.ERROR)
        assert "TimeoutError" in line.getMessage()
        # Later reads while the first one hangs fail at once and start no thread.
        for _ in range(4):
            clock.advance(auth.FAILURE_PAUSE_SECONDS)
            began = time.monotonic()
            assert status_of(ring.check_client, {"X-API-Key": "client-key-1"}) == 503
            assert time.monotonic() - began < 0.2
        assert threading.active_count() <= before + 1
    finally:
        release.set()
