"""API-key auth for the HTTP functions: client keys and an admin key.

Keys come from environment variables (local use) or from Secret Manager (the
cloud), where a secret's payload holds one key per line so that two keys can be
valid at once while clients move to a new one.

Configuration (environment):

  API_KEYS             comma-separated client keys (local use)
  ADMIN_KEY            the admin key (local use)
  API_KEYS_SECRET      Secret Manager secret holding the client keys, one per line:
                       a secret id (needs GCP_PROJECT or GOOGLE_CLOUD_PROJECT) or
                       "projects/P/secrets/S"; version "latest" is read.
                       Wins over API_KEYS when both are set.
  ADMIN_KEY_SECRET     same for the admin key(s); wins over ADMIN_KEY.
  GCP_PROJECT, GOOGLE_CLOUD_PROJECT   project for short secret ids.
  SECRET_TTL_SECONDS   how long a fetched secret is trusted (default 300).
  SECRET_MANAGER_EMULATOR_HOST
                       TEST ONLY: host:port of a plaintext gRPC Secret Manager
                       stand-in (tests/secret_manager_stub.py). The real client can't
                       be pointed at a plaintext endpoint through client_options or
                       env (its transport always negotiates TLS), hence this switch.
                       Never set it in the cloud.

Failure policy (fail closed): a cached secret is used until its TTL runs out and
never after, so a revoked key stops working within SECRET_TTL_SECONDS of being
removed from the secret. When a refresh fails (Secret Manager unreachable,
permission denied, secret missing...) every request is rejected with 503
"auth_unavailable" and one error line is logged; the fetch is retried on the first
request after a short pause (FAILURE_PAUSE_SECONDS) so an outage is not hammered.

Only the standard library is imported here; the Secret Manager part
(velocast.auth_secret_manager) when a secret is configured, and its client (gRPC and
protobuf, ~0.2 s to import) on the first fetch.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from velocast.errors import ApiError

__all__ = ["AuthError", "KeyRing", "default_secret_client_factory"]

log = logging.getLogger("velocast.auth")

DEFAULT_TTL_SECONDS = 300.0
FETCH_TIMEOUT_SECONDS = 5.0
FAILURE_PAUSE_SECONDS = 5.0

_SHORT_SECRET_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_SECRET_NAME = re.compile(r"^projects/[^/]+/secrets/[A-Za-z0-9_-]{1,255}$")

Clock = Callable[[], float]
SecretClientFactory = Callable[[], Any]


class AuthError(ApiError):
    """A rejected request: 401 no key, 403 wrong key, 503 key store unavailable."""

    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None):
        headers = ({"WWW-Authenticate": 'Bearer realm="velocast"'} if status == 401 else
                   {"Retry-After": str(retry_after)} if retry_after is not None else {})
        super().__init__(status, code, message, headers=headers)
        self.retry_after = retry_after


def _digest(key: str) -> bytes:
    # Comparing fixed-length digests keeps compare_digest from leaking key lengths.
    return hashlib.sha256(key.encode("utf-8")).digest()


def _parse_payload(text: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def _presented_key(headers: Mapping[str, str]) -> str | None:
    # X-API-Key wins: on a private Cloud Run service, Authorization carries the
    # caller's Google ID token, not our key.
    key = _header(headers, "X-API-Key")
    if key and key.strip():
        return key.strip()
    auth = _header(headers, "Authorization")
    if auth:
        scheme, _, token = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    # Plain dicts are case-sensitive; werkzeug headers already matched above.
    lname = name.lower()
    for k, v in headers.items():
        if isinstance(k, str) and k.lower() == lname:
            return v
    return None


def _matches(presented: bytes, valid: tuple[bytes, ...]) -> bool:
    # No early exit: the time taken must not tell which key (if any) matched.
    found = False
    for candidate in valid:
        found |= hmac.compare_digest(presented, candidate)
    return found


class _StaticKeys:
    def __init__(self, keys: tuple[str, ...]):
        self._digests = tuple(_digest(k) for k in keys)

    def digests(self) -> tuple[bytes, ...]:
        return self._digests

    def __repr__(self) -> str:
        return f"<static keys: {len(self._digests)}>"


class KeyRing:
    """Valid client keys and the admin key, from env vars or Secret Manager, cached with a TTL.

    Thread-safe; build one per instance (global scope) and call check_client /
    check_admin per request. Client keys are not admin keys and the admin key is
    not a client key.
    """

    def __init__(self, client_keys: Any | None, admin_keys: Any | None):
        self._client_keys = client_keys
        self._admin_keys = admin_keys

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] = os.environ,
        secret_client_factory: SecretClientFactory | None = None,
        clock: Clock = time.monotonic,
        *,
        fetch_timeout: float = FETCH_TIMEOUT_SECONDS,
    ) -> "KeyRing":
        """Build from the environment; raises ValueError on a malformed configuration."""
        ttl = _parse_ttl(environ.get("SECRET_TTL_SECONDS"))
        project = (environ.get("GCP_PROJECT") or environ.get("GOOGLE_CLOUD_PROJECT") or "").strip()
        if secret_client_factory is None:
            env_snapshot = dict(environ)

            def secret_client_factory() -> Any:
                from velocast.auth_secret_manager import default_secret_client_factory

                return default_secret_client_factory(env_snapshot)

        from velocast.auth_secret_manager import _LazyClient, _SecretKeys

        client = _LazyClient(secret_client_factory)

        def source(list_var: str, secret_var: str, split: bool) -> Any | None:
            secret = (environ.get(secret_var) or "").strip()
            raw = environ.get(list_var) or ""
            keys = tuple(k.strip() for k in raw.split(",")) if split else (raw.strip(),)
            keys = tuple(k for k in keys if k)
            if secret:
                if keys:
                    log.warning("auth: %s is set, so %s is ignored", secret_var, list_var)
                name = _secret_name(secret, project, secret_var)
                return _SecretKeys(name, client, ttl, clock, fetch_timeout)
            return _StaticKeys(keys) if keys else None

        ring = cls(
            source("API_KEYS", "API_KEYS_SECRET", split=True),
            source("ADMIN_KEY", "ADMIN_KEY_SECRET", split=False),
        )
        ring._log_configuration()
        return ring

    def _log_configuration(self) -> None:
        if self._client_keys is None:
            admin = (
                "admin routes need the admin key"
                if self._admin_keys is not None
                else "admin routes are open too (no ADMIN_KEY or ADMIN_KEY_SECRET configured)"
            )
            log.warning("auth disabled: no API_KEYS or API_KEYS_SECRET configured; %s", admin)
        elif self._admin_keys is None:
            log.warning(
                "auth: no ADMIN_KEY or ADMIN_KEY_SECRET configured; "
                "admin routes reject every request"
            )

    @property
    def enabled(self) -> bool:
        """Whether client routes require a key."""
        return self._client_keys is not None

    def check_client(self, headers: Mapping[str, str]) -> None:
        """Raise AuthError unless `headers` carry a valid client key (no-op when disabled)."""
        if self._client_keys is None:
            return
        self._check(headers, self._client_keys)

    def check_admin(self, headers: Mapping[str, str]) -> None:
        """Raise AuthError unless `headers` carry the admin key.

        Open only when no key at all is configured (local development).
        """
        if self._admin_keys is None:
            if self._client_keys is None:
                return
            if _presented_key(headers) is None:
                raise _missing()
            raise AuthError(403, "forbidden", "admin key not configured on this service")
        self._check(headers, self._admin_keys)

    def _check(self, headers: Mapping[str, str], source: Any) -> None:
        presented = _presented_key(headers)
        if presented is None:
            raise _missing()
        if not _matches(_digest(presented), source.digests()):
            raise AuthError(403, "forbidden", "invalid API key")

    def __repr__(self) -> str:
        return f"KeyRing(client={self._client_keys!r}, admin={self._admin_keys!r})"


def __getattr__(name: str):
    # The Secret Manager part lives in auth_secret_manager.py, imported when needed.
    if name == "default_secret_client_factory":
        from velocast.auth_secret_manager import default_secret_client_factory

        return default_secret_client_factory
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _missing() -> AuthError:
    return AuthError(
        401,
        "unauthenticated",
        "missing API key: send it as 'X-API-Key: <key>' or 'Authorization: Bearer <key>'",
    )


def _parse_ttl(raw: str | None) -> float:
    if raw is None or not raw.strip():
        return DEFAULT_TTL_SECONDS
    try:
        ttl = float(raw)
    except ValueError:
        raise ValueError(f"SECRET_TTL_SECONDS must be a number of seconds, got {raw!r}") from None
    if not math.isfinite(ttl) or ttl < 0:
        raise ValueError(f"SECRET_TTL_SECONDS must be >= 0, got {raw!r}")
    return ttl


def _secret_name(value: str, project: str, var: str) -> str:
    if _SECRET_NAME.match(value):
        return value
    if _SHORT_SECRET_ID.match(value):
        if not project:
            raise ValueError(
                f"{var}={value!r} is a short secret id: set GCP_PROJECT or GOOGLE_CLOUD_PROJECT"
            )
        return f"projects/{project}/secrets/{value}"
    raise ValueError(f"{var} must be a secret id or projects/P/secrets/S, got {value!r}")
