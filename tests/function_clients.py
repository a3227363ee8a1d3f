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
the test only.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

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


# ------------------------------------------------------------------------ in process

@dataclass
class LoadedFunction:
    name: str
    module: object
    app: object
    client: object

    @property
    def service(self):
        return self.module.service

    def post(self, body=None, path: str = "/predict", headers=None, **kw):
        if body is not None and "data" not in kw:
            kw["data"] = json.dumps(body, ensure_ascii=False).encode()
            kw.setdefault("content_type", "application/json")
        return self.client.post(path, headers=headers or {}, **kw)

    def get(self, path: str, headers=None, **kw):
        return self.client.get(path, headers=headers or {}, **kw)


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
