"""Helpers for testing the two Cloud Functions, in process and as real servers.

In process (a pytest plugin: ``pytest_plugins = ["tests.function_clients"]``)::

    def test_x(classify_fn, regress_fn):        # session-wide apps on `trained_store`
        r = classify_fn.post({"records": [OLD_RECORD]})

    def test_y(make_function, tmp_path):        # an app with its own environment
        fn = make_function("regress", MODEL_STORE=str(tmp_path), MAX_RECORDS="3")

Both functions' files are called main.py and functions-framework loads each as the
module ``main`` (``sys.modules["main"]`` is replaced by every ``create_app``). Each
app keeps its own module object (its view function holds the module's globals), so
the only collision is that name: `load_function` removes ``main`` before and after
every ``create_app``, so no app is ever reached through another's module, and it
reads the environment at load time (``service._setup()``) so later changes to
os.environ cannot leak into an app.

As real servers: `Server`, velocast.dev.servers.FunctionServer with the settings of
the test only; `ServerPool` (the session's `server_pool` fixture, tests/conftest.py)
keeps one per (function, settings) for the whole session, and `ServedFunction` calls
one with the calls of `LoadedFunction`, so one test reads both transports
(tests/service/test_contract.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from velocast.dev.bodies import OLD_BODIES, OLD_RECORD  # noqa: F401  (for the tests)
from velocast.dev.servers import FunctionServer
from velocast.core.tasks import TASK_NAMES

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"
SOURCES = {name: ROOT / "functions" / name / "main.py" for name in TASK_NAMES}

# A counter of the synthetic sample (so of `trained_store`), in the export's headers.
KNOWN_COUNTER = "Totem 73 boulevard de Sébastopol S-N"
EXPORT_RECORD = {
    "Nom du compteur": KNOWN_COUNTER,
    "Date et heure de comptage": "2025-05-20T08:00:00+02:00",
    "Coordonnées géographiques": "48.86377,2.35096",
}
SNAKE_RECORD = {
    "nom_du_compteur": KNOWN_COUNTER,
    "date_et_heure_de_comptage": "2025-05-20T08:00:00+02:00",
    "coordonnées_géographiques": "48.86377,2.35096",
}
MODEL_TYPES = {"classify": {"affluence"}, "regress": {"gbdt", "rf", "nn"}}
DEFAULT_METRICS = {"classify": "f1_score", "regress": "rmse_log"}

# Everything velocast.serving.service / velocast.serving.auth read: cleared before each load so the
# developer's shell cannot change what a test sees.
SERVICE_ENV = ("MODEL_STORE", "REFRESH_SECONDS", "MAX_RECORDS", "MAX_BODY_BYTES", "GCP_PROJECT",
               "GOOGLE_CLOUD_PROJECT", "ONNX_THREADS", "API_KEYS", "ADMIN_KEY", "API_KEYS_FILE",
               "ADMIN_KEY_FILE", "API_KEYS_SECRET", "ADMIN_KEY_SECRET", "SECRET_TTL_SECONDS",
               "LOG_LEVEL", "STORAGE_EMULATOR_HOST")


def error_of(response) -> dict:
    """The {"code", "message", "details"} of an error response, checking its shape."""
    body = response.get_json() if hasattr(response, "get_json") else response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], list)
    content_type = response.headers["Content-Type"]
    assert content_type.startswith("application/json"), content_type
    return error


class _Calls:
    """post/get with a JSON body, on `self.client` (Flask's test client or HttpClient)."""

    client: object

    def post(self, body=None, path: str = "/predict", headers=None, **kw):
        if body is not None and "data" not in kw:
            kw["data"] = json.dumps(body, ensure_ascii=False).encode()
            kw.setdefault("content_type", "application/json")
        return self.client.post(path, headers=headers or {}, **kw)

    def get(self, path: str, headers=None, **kw):
        return self.client.get(path, headers=headers or {}, **kw)


# ------------------------------------------------------------------------ in process

@dataclass
class LoadedFunction(_Calls):
    name: str
    module: object
    app: object
    client: object

    @property
    def service(self):
        return self.module.service


@contextlib.contextmanager
def _environment(env: dict):
    saved = {k: os.environ.get(k) for k in set(SERVICE_ENV) | set(env)}
    try:
        for k in SERVICE_ENV:
            os.environ.pop(k, None)
        os.environ.update({k: str(v) for k, v in env.items()})
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def load_function(name: str, **env) -> LoadedFunction:
    """A fresh functions-framework app for `name` that no other load can disturb."""
    import functions_framework

    saved_path = list(sys.path)
    sys.modules.pop("main", None)
    try:
        with _environment(env):
            app = functions_framework.create_app(name, str(SOURCES[name]))
            module = sys.modules["main"]
            assert module.__file__ == str(SOURCES[name].resolve())
            module.service._setup()  # settings, keys, cache: fixed now, from `env`
    finally:
        sys.modules.pop("main", None)
        sys.path[:] = saved_path  # create_app appends the source folder each time
    app.testing = True
    return LoadedFunction(name, module, app, app.test_client())


@pytest.fixture(scope="session")
def classify_fn(trained_store) -> LoadedFunction:
    return load_function("classify", MODEL_STORE=str(trained_store), REFRESH_SECONDS="3600")


@pytest.fixture(scope="session")
def regress_fn(trained_store) -> LoadedFunction:
    return load_function("regress", MODEL_STORE=str(trained_store), REFRESH_SECONDS="3600")


@pytest.fixture
def make_function():
    """load_function as a fixture: an app per test, with the environment given."""
    return load_function


class _CurrentStdout:
    """Writes to whatever sys.stdout is at the time (capture swaps it per test phase)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture
def json_logs(capfd):
    """The service's JSON log lines written to stdout during the test.

    The velocast handler is created once per process, bound to the sys.stdout of
    that moment; for the test it writes to the current sys.stdout (capfd's), and
    `read()` returns the lines written since the last call, parsed.
    """
    import logging

    from velocast.serving import logs

    logs.configure()
    handlers = [h for h in logging.getLogger("velocast").handlers
                if isinstance(h.formatter, logs.JsonFormatter)]
    assert handlers
    saved = [h.stream for h in handlers]
    for h in handlers:
        h.stream = _CurrentStdout()
    capfd.readouterr()

    def read() -> list[dict]:
        out = capfd.readouterr().out
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    try:
        yield read
    finally:
        for h, stream in zip(handlers, saved):
            h.stream = stream


# --------------------------------------------------------------------- real servers

class Server(FunctionServer):
    """`functions-framework --target NAME` from the project's venv on a free loopback
    port, with the service's settings taken from `env` only (none from the shell)."""

    def __init__(self, name: str, env: dict, source: Path | None = None):
        merged = {**os.environ, **{k: str(v) for k, v in env.items()}}
        for k in SERVICE_ENV:
            if k not in env:
                merged.pop(k, None)
        super().__init__(name, source=source or SOURCES[name], env=merged, bin_dir=VENV_BIN)


class ServerPool:
    """Real servers shared by the session: one per (function, settings), started on first
    use and stopped when the session ends. A start is cheap (0.6 s to ready on the 2-core
    dev machine, models load on the first request), yet modules started a pair each
    with the same settings. For tests that only read a server; one that must start from a
    fresh process, count its threads or starve it keeps a `Server` of its own."""

    def __init__(self):
        self._servers: dict[tuple, Server] = {}
        self._read: dict[str, int] = {}  # log path -> characters already returned

    @staticmethod
    def _key(name: str, env: dict) -> tuple:
        return name, tuple(sorted((k, str(v)) for k, v in env.items()))

    def get(self, name: str, **env) -> Server:
        return self.several((name,), **env)[name]

    def several(self, names, **env) -> dict[str, Server]:
        """The servers of `names` with these settings, the missing ones started side by side."""
        wanted = {name: self._key(name, env) for name in names}
        missing = [name for name, key in wanted.items()
                   if key not in self._servers or self._servers[key].process is None
                   or self._servers[key].process.poll() is not None]
        fresh = {name: Server(name, env) for name in missing}
        try:
            for server in fresh.values():
                server.spawn()
            for server in fresh.values():
                server.wait_ready(timeout=90)
        except BaseException:
            for server in fresh.values():
                server.close()
            raise
        for name, server in fresh.items():
            self._servers[wanted[name]] = server
        return {name: self._servers[key] for name, key in wanted.items()}

    def new_log_lines(self) -> list[dict]:
        """The JSON log lines every pooled server wrote since the last call."""
        lines = []
        for server in self._servers.values():
            text = server.log_text()
            done = self._read.get(str(server.log_path), 0)
            self._read[str(server.log_path)] = len(text)
            for line in text[done:].splitlines():
                with contextlib.suppress(ValueError):
                    parsed = json.loads(line)
                    if isinstance(parsed, dict):
                        lines.append(parsed)
        return lines

    def close(self) -> None:
        for server in self._servers.values():
            server.close()
        self._servers.clear()


# ------------------------------------------------------------ the same calls over HTTP

TIMEOUT = 60


class HttpResponse:
    """A `requests` response read like Flask's test response (`.json` the parsed body,
    `.get_json()`), so that one assertion reads the answer of either transport."""

    def __init__(self, response):
        self.response = response
        self.status_code = response.status_code
        self.headers = response.headers
        self.data = response.content

    @property
    def json(self):
        try:
            return self.response.json()
        except ValueError:
            return None

    def get_json(self):
        return self.json


class HttpClient:
    """The calls tests make on Flask's test client (`open`, `post`, `get` with `data`,
    `json`, `content_type`, `headers`, `input_stream`, `query_string`), sent over real
    HTTP. An `input_stream` goes without a length, so requests sends it chunked (which
    `environ_overrides={"wsgi.input_terminated": True}` tells Flask's client); other
    environ overrides have no HTTP form and are refused."""

    def __init__(self, url: str):
        self.url = url

    def open(self, path: str, method: str = "GET", data=None, json=None, content_type=None,
             headers=None, input_stream=None, query_string=None, environ_overrides=None):
        unknown = set(environ_overrides or {}) - {"wsgi.input_terminated"}
        assert not unknown, f"no HTTP form for {unknown}"
        headers = dict(headers or {})
        if content_type:
            headers["Content-Type"] = content_type
        if input_stream is not None:
            data = iter(lambda: input_stream.read(8192), b"")
            headers.pop("Transfer-Encoding", None)  # requests adds it for a body of no length
        return HttpResponse(requests.request(method, self.url + path, data=data, json=json,
                                             headers=headers, params=query_string,
                                             timeout=TIMEOUT))

    def post(self, path: str, **kw):
        return self.open(path, method="POST", **kw)

    def get(self, path: str, **kw):
        return self.open(path, method="GET", **kw)


@dataclass
class ServedFunction(_Calls):
    """A real server called like a `LoadedFunction`."""

    name: str
    server: Server

    @property
    def client(self) -> HttpClient:
        return HttpClient(self.server.url)
