"""API-key auth for the HTTP functions: client keys and an admin key.

Keys come from environment variables (local use) or from files (the cloud), where a
file holds one key per line so that two keys can be valid at once while clients move
to a new one. Blank lines and lines starting with `#` (after leading spaces) are
ignored, so a key cannot start with `#` (before: `X-API-Key: # comment` was a valid key,
issue 25, N11). In the cloud each file is a Secret Manager secret mounted by the
platform as a volume (terraform/functions.tf, `secret_volumes`, version `latest`):
Cloud Run reads the secret from Secret Manager on every read of the file ("When
reading a volume, Cloud Run always fetches the secret value from the Secret Manager
to use the value with the latest version", Cloud Run docs, Configure secrets), so a
rotation reaches running instances without a redeploy and without a client library.

Configuration (environment):

  API_KEYS             comma-separated client keys (local use)
  ADMIN_KEY            the admin key (local use)
  API_KEYS_FILE        file holding the client keys, one per line (in the cloud:
                       /etc/secrets/api-keys/keys). Wins over API_KEYS when both are set.
  ADMIN_KEY_FILE       same for the admin key(s) (/etc/secrets/admin-key/key); wins
                       over ADMIN_KEY.
  SECRET_TTL_SECONDS   how long keys read from a file are trusted (default 300).

API_KEYS_SECRET and ADMIN_KEY_SECRET (the Secret Manager client this replaced) are
refused rather than ignored: ignoring them would silently turn auth off.

Failure policy (fail closed): keys read from a file are used until their TTL runs
out and never after, so a revoked key stops working within SECRET_TTL_SECONDS of
being removed from the secret. When a read fails (file missing, unreadable, not
UTF-8, Secret Manager unreachable behind the mount, slower than READ_TIMEOUT_SECONDS)
every request is rejected with 503 "auth_unavailable" and one error line is logged
(a file that is not a regular file, such as a FIFO, is a failed read: opening one for
reading waits for a writer, which parked a thread for good, issue 25, N12);
the file is read again on the first request after a short pause
(FAILURE_PAUSE_SECONDS), so an outage is not hammered.

Only the standard library is imported here.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import logging
import math
import os
import stat
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from velocast.core.errors import ApiError

__all__ = ["AuthError", "KeyRing"]

log = logging.getLogger("velocast.auth")

DEFAULT_TTL_SECONDS = 300.0
# A read of a mounted secret is a Secret Manager call behind the file system: bound it
# as the client library call it replaced was bounded (5 s), so that a slow Secret
# Manager cannot hold every request queued behind the refresh.
READ_TIMEOUT_SECONDS = 5.0
FAILURE_PAUSE_SECONDS = 5.0

Clock = Callable[[], float]
FileReader = Callable[[str], bytes]


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
    lines = (line.strip() for line in text.splitlines())
    return tuple(line for line in lines if line and not line.startswith("#"))


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


# A key file is a few keys; anything larger is not one.
MAX_KEY_FILE_BYTES = 64 * 1024


def _read_regular_file(path: str) -> bytes:
    # O_NONBLOCK: opening a FIFO for reading otherwise waits for a writer (forever).
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
        if not stat.S_ISREG(mode):
            raise OSError(f"{path} is not a regular file (a FIFO, socket or device)")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(MAX_KEY_FILE_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_KEY_FILE_BYTES:
        raise OSError(f"{path} is over {MAX_KEY_FILE_BYTES:,} bytes: not a key file")
    return data


_pending_reads: dict[str, threading.Event] = {}
_pending_lock = threading.Lock()


def read_file(path: str) -> bytes:
    """The bytes of `path`, or an exception if reading takes over READ_TIMEOUT_SECONDS.

    The read runs on a daemon thread so that a read stuck in the mount (a hung
    Secret Manager call) costs one parked thread, not the request and everyone
    queued behind it; while it is stuck, later reads of the same file fail at once
    instead of parking one more thread each (issue 25, N12: 10 -> 14 threads). The
    thread costs ~0.09 ms over a plain read (0.12 against 0.04 ms measured on a
    2-core machine), paid once per TTL.
    """
    outcome: dict[str, Any] = {}
    with _pending_lock:
        stuck = _pending_reads.get(path)
        if stuck is not None and not stuck.is_set():
            raise TimeoutError(f"an earlier read of {path} has not returned yet")
        done = _pending_reads[path] = threading.Event()

    def read() -> None:
        try:
            outcome["data"] = _read_regular_file(path)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=read, name="velocast-auth-read", daemon=True).start()
    if not done.wait(READ_TIMEOUT_SECONDS):
        raise TimeoutError(f"no answer within {READ_TIMEOUT_SECONDS:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["data"]


class _StaticKeys:
    def __init__(self, keys: tuple[str, ...]):
        self._digests = tuple(_digest(k) for k in keys)

    def digests(self) -> tuple[bytes, ...]:
        return self._digests

    def __repr__(self) -> str:
        return f"<static keys: {len(self._digests)}>"


@dataclass(frozen=True)
class _Snapshot:
    digests: tuple[bytes, ...] = ()
    expires_at: float = -math.inf  # cache valid while clock() < expires_at
    paused_until: float = -math.inf  # after a failed read, don't retry before this


class _FileKeys:
    """Keys read from one file (a mounted secret), cached for `ttl` seconds."""

    def __init__(self, path: str, ttl: float, clock: Clock, reader: FileReader):
        self.path = path
        self._ttl = ttl
        self._clock = clock
        self._reader = reader
        self._snapshot = _Snapshot()  # replaced whole, so readers need no lock
        self._lock = threading.Lock()

    def digests(self) -> tuple[bytes, ...]:
        snap = self._snapshot
        if self._clock() < snap.expires_at:
            return snap.digests
        # One refresh at a time; requests queued behind it reuse its result.
        with self._lock:
            snap = self._snapshot
            now = self._clock()
            if now < snap.expires_at:
                return snap.digests
            if now < snap.paused_until:
                raise self._unavailable(snap.paused_until - now)
            try:
                keys = _parse_payload(self._reader(self.path).decode("utf-8"))
            except Exception as exc:
                log.error(
                    "auth: cannot read key file %s, rejecting all keys: %s: %s",
                    self.path,
                    type(exc).__name__,
                    exc,
                )
                # The stale cache is dropped on purpose (see module docstring). The pause
                # runs from the failure, not from the start of the read: a read that
                # timed out (READ_TIMEOUT_SECONDS, as long as the pause) would otherwise
                # leave no pause at all, and every queued request would wait out a read.
                self._snapshot = _Snapshot(paused_until=self._clock() + FAILURE_PAUSE_SECONDS)
                raise self._unavailable(FAILURE_PAUSE_SECONDS) from exc
            if not keys:
                log.warning("auth: key file %s holds no keys; every key is rejected", self.path)
            elif snap.paused_until > -math.inf:
                log.info("auth: key file %s readable again (%d keys)", self.path, len(keys))
            # The TTL runs from the start of the read, not its end, so a key removed
            # from the secret at time t is rejected from t + ttl on, however slow
            # this read was.
            self._snapshot = _Snapshot(
                digests=tuple(_digest(k) for k in keys), expires_at=now + self._ttl
            )
            return self._snapshot.digests

    def _unavailable(self, wait: float) -> AuthError:
        return AuthError(
            503,
            "auth_unavailable",
            "API key store unavailable; retry later",
            retry_after=max(1, math.ceil(wait)),
        )

    def __repr__(self) -> str:
        return f"<key file: {self.path}>"


class KeyRing:
    """Valid client keys and the admin key, from env vars or key files, cached with a TTL.

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
        clock: Clock = time.monotonic,
        *,
        reader: FileReader = read_file,
    ) -> "KeyRing":
        """Build from the environment; raises ValueError on a malformed configuration."""
        ttl = _parse_ttl(environ.get("SECRET_TTL_SECONDS"))
        for old, new in (("API_KEYS_SECRET", "API_KEYS_FILE"), ("ADMIN_KEY_SECRET", "ADMIN_KEY_FILE")):
            if (environ.get(old) or "").strip():
                raise ValueError(f"{old} is no longer read: mount the secret as a file and set {new}")

        def source(list_var: str, file_var: str, split: bool) -> Any | None:
            path = (environ.get(file_var) or "").strip()
            raw = environ.get(list_var) or ""
            keys = tuple(k.strip() for k in raw.split(",")) if split else (raw.strip(),)
            keys = tuple(k for k in keys if k)
            if path:
                if keys:
                    log.warning("auth: %s is set, so %s is ignored", file_var, list_var)
                return _FileKeys(path, ttl, clock, reader)
            return _StaticKeys(keys) if keys else None

        ring = cls(
            source("API_KEYS", "API_KEYS_FILE", split=True),
            source("ADMIN_KEY", "ADMIN_KEY_FILE", split=False),
        )
        ring._log_configuration()
        return ring

    def _log_configuration(self) -> None:
        if self._client_keys is None:
            admin = (
                "admin routes need the admin key"
                if self._admin_keys is not None
                else "admin routes are open too (no ADMIN_KEY or ADMIN_KEY_FILE configured)"
            )
            log.warning("auth disabled: no API_KEYS or API_KEYS_FILE configured; %s", admin)
        elif self._admin_keys is None:
            log.warning(
                "auth: no ADMIN_KEY or ADMIN_KEY_FILE configured; "
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
