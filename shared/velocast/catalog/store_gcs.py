"""The ``gs://bucket/prefix`` store (velocast.catalog.store.GCSStore), through google-cloud-storage.

Imported only when a gs:// store is opened (velocast.catalog.store resolves GCSStore lazily):
the client library costs ~0.2 s of cold start that a function reading a local store
(tests, local runs) should not pay.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time

from velocast.catalog.store import (
    AlreadyExists,
    NotFound,
    Store,
    StoreError,
    StoreUnavailable,
    _check_name,
    _check_prefix,
    _check_writable_name,
)

log = logging.getLogger("velocast.store")

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")


class GCSStore(Store):
    """A bucket, optionally under a prefix, through google-cloud-storage.

    The client is created on first use (so opening a store does no I/O and needs no
    credentials yet). With STORAGE_EMULATOR_HOST set, the client itself switches to
    the emulator with anonymous credentials; otherwise it uses Application Default
    Credentials (the function's service account in the cloud).

    Reads retry transient errors (429, 5xx, connection resets) for up to
    ``retry_deadline`` seconds. Writes are create-only (``if_generation_match=0``);
    they are retried here rather than by the client, so that a retry whose first
    attempt had in fact landed is recognised instead of reported as AlreadyExists.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        client=None,
        *,
        timeout: float | tuple[float, float] = (10.0, 60.0),
        retry_deadline: float = 60.0,
    ):
        if not isinstance(bucket, str) or not _BUCKET_RE.match(bucket):
            raise StoreError(f"invalid bucket name {bucket!r}")
        prefix = _check_prefix((prefix or "").strip("/"))
        if prefix and any(p == "" for p in prefix.split("/")):
            raise StoreError(f"invalid prefix {prefix!r}")
        try:
            from google.cloud import storage  # noqa: F401  (lazy: see module docstring)
        except ImportError as e:  # pragma: no cover - dependency of the package
            raise StoreError(f"gs:// stores need google-cloud-storage: {e}") from e
        self.bucket_name = bucket
        self.prefix = prefix
        self.uri = f"gs://{bucket}/{prefix}" if prefix else f"gs://{bucket}"
        self.timeout = timeout
        self.retry_deadline = float(retry_deadline)
        self._client = client
        self._bucket = None
        self._lock = threading.Lock()

    # -- plumbing

    def _get_bucket(self):
        if self._bucket is None:
            with self._lock:
                if self._bucket is None:
                    client = self._client
                    if client is None:
                        client = self._make_client()
                        self._client = client
                    self._bucket = client.bucket(self.bucket_name)
        return self._bucket

    def _make_client(self):
        from google.cloud import storage

        try:
            if os.environ.get("STORAGE_EMULATOR_HOST"):
                from google.auth.credentials import AnonymousCredentials

                # The client would pick anonymous credentials by itself; being explicit
                # keeps an emulator run from ever touching ADC or the metadata server.
                return storage.Client(
                    project=os.environ.get("GOOGLE_CLOUD_PROJECT") or "test",
                    credentials=AnonymousCredentials(),
                )
            return storage.Client()
        except Exception as e:
            # Typically DefaultCredentialsError: no ADC on this machine.
            raise StoreUnavailable(f"cannot create a GCS client for {self.uri}: {e}") from e

    def _full(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def _read_retry(self):
        from google.cloud.storage.retry import DEFAULT_RETRY

        return DEFAULT_RETRY.with_timeout(self.retry_deadline)

    def _translate(self, e: Exception, what: str) -> StoreError:
        from google.api_core import exceptions as gexc

        if isinstance(e, StoreError):
            return e
        if isinstance(e, (gexc.Unauthorized, gexc.Forbidden)):
            return StoreUnavailable(f"{what}: permission denied ({e})")
        return StoreUnavailable(f"{what}: {type(e).__name__}: {e}")

    @staticmethod
    def _is_transient(e: Exception) -> bool:
        import requests
        from google.api_core import exceptions as gexc
        from google.auth import exceptions as auth_exc

        return isinstance(
            e,
            (
                gexc.TooManyRequests,
                gexc.InternalServerError,
                gexc.BadGateway,
                gexc.ServiceUnavailable,
                gexc.GatewayTimeout,
                requests.exceptions.ConnectionError,
                requests.exceptions.ChunkedEncodingError,
                requests.exceptions.Timeout,
                auth_exc.TransportError,
                ConnectionError,
            ),
        )

    # -- API

    def read(self, name: str) -> bytes:
        from google.api_core import exceptions as gexc

        _check_name(name)
        try:
            blob = self._get_bucket().blob(self._full(name))
            return blob.download_as_bytes(timeout=self.timeout, retry=self._read_retry())
        except gexc.NotFound:
            raise NotFound(f"{name!r} not found in {self.uri}") from None
        except Exception as e:
            raise self._translate(e, f"cannot read {name!r} from {self.uri}") from e

    def write_once(self, name: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        from google.api_core import exceptions as gexc

        _check_writable_name(name)
        data = bytes(data)
        full = self._full(name)
        deadline = time.monotonic() + self.retry_deadline
        delay = 0.5
        attempt = 0
        while True:
            attempt += 1
            try:
                blob = self._get_bucket().blob(full)
                blob.upload_from_string(
                    data,
                    content_type=content_type,
                    if_generation_match=0,
                    timeout=self.timeout,
                    retry=None,
                )
                return
            except gexc.PreconditionFailed:
                if attempt > 1 and self._holds(full, data):
                    return  # our earlier attempt landed; its response was lost
                raise AlreadyExists(f"{name!r} already exists in {self.uri}") from None
            except gexc.NotFound as e:
                raise StoreUnavailable(f"cannot write {name!r}: bucket {self.bucket_name!r} not found") from e
            except StoreError:
                raise
            except Exception as e:
                if self._is_transient(e) and time.monotonic() + delay < deadline:
                    log.warning("transient error writing %s/%s (attempt %d), retrying: %s", self.uri, name, attempt, e)
                    time.sleep(delay)
                    delay = min(delay * 2, 8.0)
                    continue
                raise self._translate(e, f"cannot write {name!r} to {self.uri}") from e

    def _holds(self, full: str, data: bytes) -> bool:
        try:
            existing = self._get_bucket().blob(full).download_as_bytes(
                timeout=self.timeout, retry=self._read_retry()
            )
        except Exception:
            return False
        return existing == data

    def list(self, prefix: str = "") -> list[str]:
        from google.api_core import exceptions as gexc

        _check_prefix(prefix)
        # The trailing "/" keeps gs://b/p from seeing objects of gs://b/p2.
        root = f"{self.prefix}/" if self.prefix else ""
        try:
            bucket = self._get_bucket()
            blobs = bucket.client.list_blobs(
                bucket, prefix=root + prefix, timeout=self.timeout, retry=self._read_retry()
            )
            # Iterate inside the try: pages are fetched lazily.
            names = [b.name[len(root):] for b in blobs]
        except gexc.NotFound as e:
            raise StoreUnavailable(f"cannot list {self.uri}: bucket {self.bucket_name!r} not found") from e
        except Exception as e:
            raise self._translate(e, f"cannot list {self.uri}") from e
        # Console-made "folder" placeholders end with "/"; they are not objects of ours.
        return sorted(n for n in names if n and not n.endswith("/"))
