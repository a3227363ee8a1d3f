"""Write-once object stores: a local folder or a ``gs://bucket/prefix`` URI.

Every object is written once and never replaced, so readers can cache freely and
concurrent writers can never clobber each other: the loser of a race gets
``AlreadyExists``. Names are ``/``-separated paths relative to the store root.

Only the standard library is imported here; the GCS store (velocast.catalog.store_gcs, and
``google.cloud.storage`` with it) is imported when a ``gs://`` store is opened, because
it costs ~0.2 s of cold start that a function reading a local store (tests, local
runs) should not pay.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import secrets

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


def __getattr__(name: str):
    # GCSStore lives in store_gcs.py, imported on first use (see the module docstring).
    if name == "GCSStore":
        from velocast.catalog.store_gcs import GCSStore

        return GCSStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
        from velocast.catalog.store_gcs import GCSStore

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
