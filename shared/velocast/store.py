"""Write-once object stores: a local folder or a ``gs://bucket/prefix`` URI.

Every object is written once and never replaced, so readers can cache freely and
concurrent writers can never clobber each other: the loser of a race gets
``AlreadyExists``. Names are ``/``-separated paths relative to the store root.

Only the standard library is imported here; ``google.cloud.storage`` is imported when
a ``gs://`` store is opened, because it costs ~0.2 s of cold start that a function
reading a local store (tests, local runs) should not pay.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import secrets
import threading
import time

log = logging.getLogger(__name__)

__all__ = [
    "StoreError",
    "AlreadyExists",
    "NotFound",
    "StoreUnavailable",
    "Store",
    "LocalStore",
    "GCSStore",
    "open_store",
]


class StoreError(Exception):
    """Base class of every error a store raises."""


class AlreadyExists(StoreError):
    """write_once on a name that already exists."""


class NotFound(StoreError):
    """Read of a name that does not exist."""


class StoreUnavailable(StoreError):
    """The store cannot be reached or used (network, permissions, missing bucket)."""


# A pickle in a store would sooner or later be loaded by someone; refusing the
# name is cheaper than auditing every reader.
_FORBIDDEN_SUFFIXES = frozenset({"pkl", "pickle", "joblib"})


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name:
        raise StoreError(f"invalid object name {name!r}: must be a non-empty string")
    parts = name.split("/")
    if name.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in name:
        # Keeps LocalStore inside its folder and GCS names identical to local paths.
        raise StoreError(
            f"invalid object name {name!r}: use relative '/'-separated parts, "
            "without empty, '.' or '..' parts or backslashes"
        )
    if "\x00" in name:
        raise StoreError(f"invalid object name {name!r}: contains NUL")
    return name


def _check_writable_name(name: str) -> str:
    _check_name(name)
    # "model.pkl.gz" is still a pickle, so look at every suffix, not just the last.
    suffixes = name.rsplit("/", 1)[-1].lower().split(".")[1:]
    if _FORBIDDEN_SUFFIXES.intersection(suffixes):
        raise StoreError(f"refusing to write {name!r}: no pickle/joblib file goes into a store")
    return name


def _check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str):
        raise StoreError(f"invalid prefix {prefix!r}")
    if prefix.startswith("/") or "\\" in prefix or any(p in (".", "..") for p in prefix.split("/")):
        raise StoreError(f"invalid prefix {prefix!r}")
    return prefix


class Store:
    """What every store offers. Names are relative to the store root."""

    uri: str

    def read(self, name: str) -> bytes:
        raise NotImplementedError

    def write_once(self, name: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        raise NotImplementedError

    def list(self, prefix: str = "") -> list[str]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"


# ----------------------------------------------------------------------------- local

_TMP_MARK = ".velocast-tmp-"


class LocalStore(Store):
    """A folder on disk, created on the first write.

    write_once writes a temp file in the destination folder and hard-links it to the
    final name: link(2) fails if the name exists (create-only, even across processes)
    and the final name only ever points at complete bytes (readers never see a
    partial file).
    """

    def __init__(self, folder: str | os.PathLike):
        self.root = os.path.abspath(os.fspath(folder))
        self.uri = self.root

    def _path(self, name: str) -> str:
        return os.path.join(self.root, *name.split("/"))

    def _inside(self, path: str) -> bool:
        """Whether `path`, symlinks resolved, stays under the root (itself resolved):
        a link out of the folder would serve or list files the store never wrote."""
        real_root = os.path.realpath(self.root)
        return os.path.commonpath([real_root, os.path.realpath(path)]) == real_root

    def read(self, name: str) -> bytes:
        path = self._path(_check_name(name))
        if not self._inside(path):
            # Not in the store, as far as its readers are concerned (list hides it too).
            raise NotFound(f"{name!r} is a symlink out of {self.uri}: refused")
        try:
            with open(path, "rb") as f:
                return f.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(f"{name!r} not found in {self.uri}") from None
        except OSError as e:
            raise StoreUnavailable(f"cannot read {name!r} from {self.uri}: {e}") from e

    def write_once(self, name: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        _check_writable_name(name)
        data = bytes(data)
        path = self._path(name)
        folder = os.path.dirname(path)
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as e:
            raise StoreUnavailable(f"cannot create {folder}: {e}") from e
        tmp = os.path.join(folder, f"{_TMP_MARK}{secrets.token_hex(8)}")
        try:
            # 0o666 & ~umask, unlike mkstemp's 0o600, so a function running as
            # another user can read what the trainer wrote.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise AlreadyExists(f"{name!r} already exists in {self.uri}") from None
            except OSError as e:
                if e.errno in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                    raise StoreUnavailable(
                        f"{self.uri} is on a filesystem without hard links, which write-once needs: {e}"
                    ) from e
                raise
        except StoreError:
            raise
        except OSError as e:
            raise StoreUnavailable(f"cannot write {name!r} to {self.uri}: {e}") from e
        finally:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            except OSError as e:  # pragma: no cover - best effort
                log.warning("could not remove temp file %s: %s", tmp, e)
        self._fsync_dir(folder)

    @staticmethod
    def _fsync_dir(folder: str) -> None:
        # Makes the new directory entry durable; not possible on every platform.
        try:
            fd = os.open(folder, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    def list(self, prefix: str = "") -> list[str]:
        _check_prefix(prefix)
        # Walk only below the deepest folder the prefix names, not the whole store.
        head = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self._path(head) if head else self.root
        if not os.path.exists(start):
            return []
        if not os.path.isdir(start):
            if start == self.root:
                raise StoreUnavailable(f"{self.uri} exists but is not a folder")
            return []
        errors: list[OSError] = []
        names = []
        for dirpath, dirnames, filenames in os.walk(start, onerror=errors.append):
            rel_dir = os.path.relpath(dirpath, self.root)
            rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
            for fn in filenames:
                if fn.startswith(_TMP_MARK):
                    continue
                name = rel_dir + fn
                if name.startswith(prefix):
                    if not self._inside(os.path.join(dirpath, fn)):
                        log.warning("not listing %s: a symlink leads out of %s", name, self.uri)
                        continue
                    names.append(name)
        if errors:
            raise StoreUnavailable(f"cannot list {self.uri}: {errors[0]}") from errors[0]
        names.sort()
        return names


# ----------------------------------------------------------------------------- GCS

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


# ----------------------------------------------------------------------------- open


def open_store(uri: str, **gcs_options) -> Store:
    """``gs://bucket[/prefix]`` -> GCSStore; ``file:///path`` or a path -> LocalStore.

    Opening does no I/O: a local folder is created on the first write, a GCS client
    on the first call. ``gcs_options`` (``timeout``, ``retry_deadline``) go to
    GCSStore and are ignored for a folder.
    """
    if not isinstance(uri, (str, os.PathLike)):
        raise StoreError(f"invalid store URI {uri!r}")
    uri = os.fspath(uri)
    if not uri.strip():
        raise StoreError("empty store URI")
    if uri.startswith("gs://"):
        rest = uri[len("gs://"):]
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise StoreError(f"invalid store URI {uri!r}: expected gs://bucket[/prefix]")
        return GCSStore(bucket, prefix, **gcs_options)
    if uri.startswith("file://"):
        path = uri[len("file://"):]
        if not path.startswith("/"):
            raise StoreError(f"invalid store URI {uri!r}: expected file:///absolute/path")
        return LocalStore(path)
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", uri):
        # Otherwise "s3://x" would silently become a local folder named "s3:".
        raise StoreError(f"unsupported store URI {uri!r}: use gs://bucket[/prefix] or a folder path")
    return LocalStore(uri)
