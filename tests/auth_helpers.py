"""What the auth tests share (a pytest plugin: ``pytest_plugins = ["tests.auth_helpers"]``):
a fake clock, a Secret Manager stub on loopback holding a client and an admin secret,
and a KeyRing reading them through the real client."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.secret_manager_stub import SecretManagerStub, client_for
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
