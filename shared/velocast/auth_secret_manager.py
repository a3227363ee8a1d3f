"""Keys read from a Secret Manager secret for velocast.auth: the client (built on first
use, with a capped reconnect backoff), and a TTL cache that fails closed.

Imported by velocast.auth.KeyRing only when a secret is configured; the client library
itself (gRPC and protobuf, ~0.2 s to import) only on the first fetch.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from velocast.auth import (
    FAILURE_PAUSE_SECONDS,
    AuthError,
    Clock,
    SecretClientFactory,
    _digest,
    _parse_payload,
    log,
)

# After an outage, a gRPC channel fails every call at once until its reconnect
# backoff runs out, and that backoff grows to 120 s by default: requests would keep
# getting 503 for minutes after Secret Manager is back. Cap it near the failure pause.
_CHANNEL_OPTIONS = (("grpc.max_reconnect_backoff_ms", int(FAILURE_PAUSE_SECONDS * 1000)),)


def default_secret_client_factory(environ: Mapping[str, str] = os.environ) -> Any:
    """The real SecretManagerServiceClient (or one bound to the test emulator)."""
    from google.cloud import secretmanager_v1
    from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
        SecretManagerServiceGrpcTransport as Transport,
    )

    host = environ.get("SECRET_MANAGER_EMULATOR_HOST", "").strip()
    if host:
        import grpc

        log.warning(
            "SECRET_MANAGER_EMULATOR_HOST=%s: reading secrets over plaintext gRPC (test only)", host
        )
        channel = grpc.insecure_channel(host, options=_CHANNEL_OPTIONS)
        return secretmanager_v1.SecretManagerServiceClient(transport=Transport(channel=channel))

    def make_channel(*args: Any, options: Any = (), **kwargs: Any) -> Any:
        return Transport.create_channel(*args, options=[*options, *_CHANNEL_OPTIONS], **kwargs)

    # Same client as SecretManagerServiceClient() (credentials, endpoint, mTLS are
    # still resolved by the client), only the channel gets our options.
    return secretmanager_v1.SecretManagerServiceClient(
        transport=lambda **kwargs: Transport(channel=make_channel, **kwargs)
    )


class _LazyClient:
    """One Secret Manager client per KeyRing, built on first use."""

    def __init__(self, factory: SecretClientFactory):
        self._factory = factory
        self._client: Any = None
        self._lock = threading.Lock()

    def get(self) -> Any:
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._factory()
                client = self._client
        return client


@dataclass(frozen=True)
class _Snapshot:
    digests: tuple[bytes, ...] = ()
    expires_at: float = -math.inf  # cache valid while clock() < expires_at
    paused_until: float = -math.inf  # after a failed fetch, don't retry before this


class _SecretKeys:
    """Keys read from one Secret Manager secret, cached for `ttl` seconds."""

    def __init__(
        self,
        secret_name: str,
        client: _LazyClient,
        ttl: float,
        clock: Clock,
        fetch_timeout: float,
    ):
        self.secret_name = secret_name
        self.version_name = f"{secret_name}/versions/latest"
        self._client = client
        self._ttl = ttl
        self._clock = clock
        self._fetch_timeout = fetch_timeout
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
                keys = self._fetch()
            except Exception as exc:
                log.error(
                    "auth: cannot read secret %s, rejecting all keys: %s: %s",
                    self.version_name,
                    type(exc).__name__,
                    exc,
                )
                # The stale cache is dropped on purpose (see module docstring). The pause
                # runs from the failure, not from the start of the fetch: a fetch that
                # timed out (FETCH_TIMEOUT_SECONDS, as long as the pause) would otherwise
                # leave no pause at all, and every queued request would wait out a fetch.
                self._snapshot = _Snapshot(paused_until=self._clock() + FAILURE_PAUSE_SECONDS)
                raise self._unavailable(FAILURE_PAUSE_SECONDS) from exc
            if not keys:
                log.warning(
                    "auth: secret %s holds no keys; every key is rejected", self.version_name
                )
            elif snap.paused_until > -math.inf:
                log.info("auth: secret %s readable again (%d keys)", self.version_name, len(keys))
            # The TTL runs from the start of the fetch, not its end, so a key removed
            # from the secret at time t is rejected from t + ttl on, however slow
            # this fetch was.
            self._snapshot = _Snapshot(
                digests=tuple(_digest(k) for k in keys), expires_at=now + self._ttl
            )
            return self._snapshot.digests

    def _fetch(self) -> tuple[str, ...]:
        from google.api_core import exceptions as gexc
        from google.api_core import retry as gretry

        client = self._client.get()
        # The client's default retry keeps trying UNAVAILABLE for 60 s, holding the
        # request (and everyone queued on the lock); bound the whole fetch instead.
        retry = gretry.Retry(
            predicate=gretry.if_exception_type(gexc.ServiceUnavailable, gexc.ResourceExhausted),
            initial=0.1,
            maximum=1.0,
            multiplier=2.0,
            timeout=self._fetch_timeout,
        )
        response = client.access_secret_version(
            name=self.version_name, timeout=self._fetch_timeout, retry=retry
        )
        payload = response.payload
        data = bytes(payload.data)
        if "data_crc32c" in payload:
            _check_crc32c(data, payload.data_crc32c)
        return _parse_payload(data.decode("utf-8"))

    def _unavailable(self, wait: float) -> AuthError:
        return AuthError(
            503,
            "auth_unavailable",
            "API key store unavailable; retry later",
            retry_after=max(1, math.ceil(wait)),
        )

    def __repr__(self) -> str:
        return f"<secret keys: {self.secret_name}>"


def _check_crc32c(data: bytes, expected: int) -> None:
    try:
        import google_crc32c
    except ImportError:  # optional: the client library does not depend on it
        return
    if google_crc32c.value(data) != expected:
        raise ValueError("payload checksum mismatch (data_crc32c)")
