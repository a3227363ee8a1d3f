"""Shared by test_auth*.py (a pytest plugin: ``pytest_plugins = ["tests.auth_files"]``
gives the `clock`, `files` and `reads` fixtures): key files in a tmp dir, laid out as
Terraform mounts the secrets (terraform/functions.tf), a fake clock and a counter
around the real reader."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from velocast.serving import auth
from velocast.serving.auth import AuthError, KeyRing


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Reads:
    """velocast.serving.auth.read_file (real file reads), recording each path read."""

    def __init__(self):
        self.paths: list[str] = []

    def __call__(self, path: str) -> bytes:
        self.paths.append(path)
        return auth.read_file(path)


class KeyFiles:
    """The two mounted secrets: <root>/api-keys/keys and <root>/admin-key/key."""

    def __init__(self, root: Path, client: str = "client-key-1\n", admin: str = "admin-key-1"):
        self.client = root / "api-keys" / "keys"
        self.admin = root / "admin-key" / "key"
        for path, text in ((self.client, client), (self.admin, admin)):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")

    def env(self, **extra: str) -> dict[str, str]:
        return {"API_KEYS_FILE": str(self.client), "ADMIN_KEY_FILE": str(self.admin),
                "SECRET_TTL_SECONDS": "60", **extra}


def ring_for(files: KeyFiles, clock: FakeClock, reads: Reads, **extra: str) -> KeyRing:
    return KeyRing.from_env(files.env(**extra), clock=clock, reader=reads)


def no_file_read(path: str) -> bytes:
    raise AssertionError(f"no key file must be read, read {path}")


def status_of(check, headers) -> int:
    try:
        check(headers)
    except AuthError as exc:
        return exc.status
    return 200


def auth_records(caplog, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "velocast.auth" and r.levelno == level]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def files(tmp_path) -> KeyFiles:
    return KeyFiles(tmp_path / "secrets")


@pytest.fixture
def reads() -> Reads:
    return Reads()
