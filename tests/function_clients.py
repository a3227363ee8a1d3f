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

As real servers: `Server` starts ``functions-framework`` from the project's venv
on a free loopback port in its own process group and stops the whole group.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from velocast.tasks import TASK_NAMES

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"
SOURCES = {name: ROOT / "functions" / name / "main.py" for name in TASK_NAMES}

# The bodies the old system's clients send today (README, Using the functions; docs/architecture.md, Request path).
OLD_RECORD = {
    "nom_du_compteur": "35 boulevard de Ménilmontant NO-SE",
    "date_et_heure_de_comptage": "2025-05-17 18:00:00+02:00",
    "coordonnées_géographiques": "48.8672, 2.3501",
    "mois_annee_comptage": "mai 2025",
}
OLD_BODIES = {
    "classify": {"records": [OLD_RECORD]},
    "regress": {"records": [OLD_RECORD], "model_type": "nn", "metric": "r2"},
}
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

# Everything velocast.service / velocast.auth read: cleared before each load so the
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

    from velocast import logs

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

def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`functions-framework --target NAME` as a real process on loopback."""

    def __init__(self, name: str, env: dict, source: Path | None = None):
        self.name = name
        self.env = {**os.environ, **{k: str(v) for k, v in env.items()}}
        for k in SERVICE_ENV:
            if k not in env:
                self.env.pop(k, None)
        self.source = source or SOURCES[name]
        self.port = 0
        self.process: subprocess.Popen | None = None
        self.log = tempfile.NamedTemporaryFile(prefix=f"velocast-{name}-", suffix=".log",
                                               delete=False)
        self.started_at = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self) -> "Server":
        """Start the process on a free port (returns at once; see wait_ready)."""
        self.port = free_port()
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            [str(VENV_BIN / "functions-framework"), f"--target={self.name}",
             f"--source={self.source}", f"--port={self.port}", "--host=127.0.0.1"],
            env=self.env, cwd=str(ROOT), stdin=subprocess.DEVNULL, stdout=self.log,
            stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def wait_ready(self, timeout: float = 60.0, path: str = "/health") -> "Server":
        """Wait until GET `path` answers (any status): the process serves requests.
        Respawns on another port if the chosen one was taken meanwhile."""
        import requests

        for _ in range(3):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    requests.get(self.url + path, timeout=30)
                    return self
                except requests.ConnectionError:
                    time.sleep(0.1)
            self.stop()
            if "Address already in use" not in self.log_text():
                break
            self.spawn()
        raise RuntimeError(f"{self.name} did not start within {timeout:.0f} s:\n"
                           f"{self.log_text()[-4000:]}")

    def start(self, timeout: float = 60.0) -> "Server":
        return self.spawn().wait_ready(timeout)

    def log_text(self) -> str:
        self.log.flush()
        with open(self.log.name, encoding="utf-8", errors="replace") as f:
            return f.read()

    def log_lines(self) -> list[dict]:
        lines = []
        for line in self.log_text().splitlines():
            with contextlib.suppress(ValueError):
                lines.append(json.loads(line))
        return [line for line in lines if isinstance(line, dict)]

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def close(self) -> None:
        self.stop()
        self.log.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log.name)

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


# ------------------------------------------------------- contract shared by both functions

DATE = "date_et_heure_de_comptage"
COUNTER = "nom_du_compteur"


class ContractTests:
    """The HTTP contract both functions share (routes, limits, errors, auth, logs).

    A test module subclasses it as ``class TestContract(ContractTests): FUNCTION = ...``
    so each function runs every test against its own app.
    """

    FUNCTION = ""

    @pytest.fixture
    def fn(self, request) -> LoadedFunction:
        return request.getfixturevalue(f"{self.FUNCTION}_fn")

    @pytest.fixture
    def store(self, trained_store) -> str:
        return str(trained_store)

    def body(self, records) -> dict:
        return {"records": records}

    # -- happy paths -------------------------------------------------------------------
    def test_export_headers_and_snake_case_give_the_same_answer(self, fn):
        snake = fn.post(self.body([SNAKE_RECORD]))
        export = fn.post(self.body([EXPORT_RECORD]))
        assert snake.status_code == export.status_code == 200, (snake.json, export.json)
        assert snake.json["predictions"] == export.json["predictions"]
        assert "warnings" not in export.json  # a known counter

    def test_root_path_predicts_too(self, fn):
        a = fn.post(self.body([SNAKE_RECORD]), path="/")
        b = fn.post(self.body([SNAKE_RECORD]), path="/predict")
        assert a.status_code == b.status_code == 200
        assert a.json["predictions"] == b.json["predictions"]

    def test_unknown_counter_with_coordinates_is_predicted_with_a_warning(self, fn):
        unknown = {**SNAKE_RECORD, "nom_du_compteur": "Compteur inconnu 12 rue Imaginaire",
                   "coordonnées_géographiques": "48.8600, 2.3400"}
        r = fn.post(self.body([SNAKE_RECORD, unknown, SNAKE_RECORD]))
        assert r.status_code == 200, r.json
        assert len(r.json["predictions"]) == 3
        assert [(w["record"], w["field"]) for w in r.json["warnings"]] == [(1, COUNTER)]
        assert "Compteur inconnu" in r.json["warnings"][0]["message"]

    def test_batch_keeps_length_and_order(self, fn):
        hours = [f"2025-05-20T{h:02d}:00:00+02:00" for h in range(24)]
        records = [{**SNAKE_RECORD, DATE: h} for h in hours]
        batch = fn.post(self.body(records))
        assert batch.status_code == 200
        assert len(batch.json["predictions"]) == 24
        singles = [fn.post(self.body([r])).json["predictions"][0] for r in records[6:9]]
        assert batch.json["predictions"][6:9] == singles

    # -- errors ------------------------------------------------------------------------
    def test_400_body_not_json(self, fn):
        r = fn.post(data=b'{"records": [', content_type="application/json")
        assert r.status_code == 400
        assert error_of(r)["code"] == "invalid_json"

    def test_400_invalid_utf8(self, fn):
        r = fn.post(data=b'{"records": "\xff"}', content_type="application/json")
        assert r.status_code == 400
        error_of(r)

    @pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                              None])
    def test_415_wrong_content_type(self, fn, content_type):
        kw = {"content_type": content_type} if content_type else {}
        r = fn.client.post("/predict", data=json.dumps(self.body([SNAKE_RECORD])), **kw)
        assert r.status_code == 415
        assert error_of(r)["code"] == "unsupported_media_type"

    def test_json_with_charset_is_accepted(self, fn):
        r = fn.post(data=json.dumps(self.body([SNAKE_RECORD])).encode(),
                    content_type="application/json; charset=utf-8")
        assert r.status_code == 200

    @pytest.mark.parametrize("method,path,allow", [
        ("GET", "/predict", "POST"), ("GET", "/", "POST"), ("PUT", "/predict", "POST"),
        ("POST", "/health", "GET"), ("DELETE", "/models", "GET"), ("GET", "/refresh", "POST"),
        ("GET", "/refresh_model", "POST")])
    def test_405_wrong_method(self, fn, method, path, allow):
        r = fn.client.open(path, method=method)
        assert r.status_code == 405
        assert r.headers["Allow"] == allow
        assert error_of(r)["code"] == "method_not_allowed"

    @pytest.mark.parametrize("path", ["/nope", "/predict/extra", "/v1/predict"])
    def test_404_unknown_route(self, fn, path):
        r = fn.client.post(path, json=self.body([SNAKE_RECORD]))
        assert r.status_code == 404
        assert error_of(r)["code"] == "not_found"

    def test_422_unparseable_date_names_record_and_field(self, fn):
        bad = {**SNAKE_RECORD, DATE: "17/05/2025 18h"}
        r = fn.post(self.body([SNAKE_RECORD, SNAKE_RECORD, bad]))
        assert r.status_code == 422
        error = error_of(r)
        assert error["code"] == "invalid_records"
        assert len(error["details"]) == 1
        detail = error["details"][0]
        assert (detail["record"], detail["field"]) == (2, DATE)
        assert "ISO 8601" in detail["reason"]
        assert "record 2" in error["message"]

    def test_422_lists_every_bad_field(self, fn):
        records = [{COUNTER: KNOWN_COUNTER},                               # no date
                   {**SNAKE_RECORD, "nom_du_compteur": ""},               # empty name
                   {**SNAKE_RECORD, "coordonnées_géographiques": "north"},  # bad coordinates
                   "not an object"]
        r = fn.post(self.body(records))
        assert r.status_code == 422
        details = error_of(r)["details"]
        assert [(d["record"], d["field"]) for d in details] == [
            (0, DATE), (1, COUNTER), (2, "coordonnees_geographiques"), (3, "")]
        assert all(d["reason"] for d in details)

    def test_422_unknown_counter_without_coordinates(self, fn):
        stranger = {COUNTER: "Compteur inconnu", DATE: "2025-05-17 18:00:00+02:00"}
        r = fn.post(self.body([SNAKE_RECORD, stranger]))
        assert r.status_code == 422
        error = error_of(r)
        assert error["code"] == "invalid_records"
        [detail] = error["details"]
        assert (detail["record"], detail["field"]) == (1, COUNTER)
        assert "Compteur inconnu" in detail["reason"] and "coordonnees" in detail["reason"]

    @pytest.mark.parametrize("body,field", [
        ({}, "records"), ({"records": None}, "records"), ({"records": []}, "records"),
        ({"records": {"a": 1}}, "records"), ([SNAKE_RECORD], "(body)")])
    def test_422_malformed_request(self, fn, body, field):
        r = fn.post(body)
        assert r.status_code == 422
        error = error_of(r)
        assert error["code"] == "invalid_request"
        assert error["details"][0]["field"] == field

    @pytest.mark.parametrize("option,value", [
        ("model_type", "xgboost"), ("metric", "bogus"), ("metric", 3), ("model_type", ""),
        ("model_type", ["nn"])])
    def test_422_unknown_model_type_or_metric(self, fn, option, value):
        r = fn.post({**self.body([SNAKE_RECORD]), option: value})
        assert r.status_code == 422, r.json
        error = error_of(r)
        assert error["code"] == "invalid_request"
        assert error["details"][0]["field"] == option

    def test_413_above_max_records(self, make_function, store):
        fn = make_function(self.FUNCTION, MODEL_STORE=store, MAX_RECORDS="3")
        assert fn.post(self.body([SNAKE_RECORD] * 3)).status_code == 200
        r = fn.post(self.body([SNAKE_RECORD] * 4))
        assert r.status_code == 413
        error = error_of(r)
        assert error["code"] == "too_many_records"
        assert "3" in error["message"]

    def test_413_above_max_body_bytes(self, make_function, store):
        fn = make_function(self.FUNCTION, MODEL_STORE=store, MAX_BODY_BYTES="2000")
        small = json.dumps(self.body([SNAKE_RECORD])).encode()
        assert len(small) < 2000
        assert fn.post(data=small, content_type="application/json").status_code == 200
        big = json.dumps(self.body([SNAKE_RECORD] * 20)).encode()
        assert len(big) > 2000
        r = fn.post(data=big, content_type="application/json")
        assert r.status_code == 413
        assert error_of(r)["code"] == "payload_too_large"

    def test_413_without_content_length(self, make_function, store):
        # Chunked uploads carry no Content-Length: the limit must hold on the stream.
        fn = make_function(self.FUNCTION, MODEL_STORE=store, MAX_BODY_BYTES="2000")
        big = json.dumps(self.body([SNAKE_RECORD] * 20)).encode()
        r = fn.client.post("/predict", input_stream=io.BytesIO(big),
                           headers={"Content-Type": "application/json",
                                    "Transfer-Encoding": "chunked"},
                           environ_overrides={"wsgi.input_terminated": True})
        assert r.status_code == 413
        error_of(r)

    def test_503_with_retry_after_when_store_is_empty(self, make_function, tmp_path):
        fn = make_function(self.FUNCTION, MODEL_STORE=str(tmp_path / "empty"))
        r = fn.post(OLD_BODIES[self.FUNCTION])
        assert r.status_code == 503
        assert error_of(r)["code"] == "no_model"
        assert int(r.headers["Retry-After"]) > 0
        health = fn.get("/health")
        assert health.status_code == 503
        assert int(health.headers["Retry-After"]) > 0
        assert health.json["models"] == [] and health.json["status"] == "unavailable"
        models = fn.get("/models")
        assert models.status_code == 200
        assert models.json["models"] == [] and models.json["default"] is None

    # -- health, models, refresh -----------------------------------------------------
    def test_health_reports_loaded_models(self, fn):
        assert fn.post(self.body([SNAKE_RECORD])).status_code == 200  # default model served
        r = fn.get("/health")
        assert r.status_code == 200
        body = r.json
        assert body["status"] == "ok" and body["task"] == self.FUNCTION
        assert body["models"], body
        default = [m for m in body["models"] if m["model_type"] is None]
        assert default and default[0]["metric"] == DEFAULT_METRICS[self.FUNCTION]
        for model in body["models"]:
            assert model["version"] and model["type"] in MODEL_TYPES[self.FUNCTION]
        assert fn.get("/health/").status_code == 200

    def test_models_lists_published_entries(self, fn, trained_store):
        from velocast import registry
        from velocast.store import open_store

        published = registry.list_entries(open_store(str(trained_store)), task=self.FUNCTION)
        r = fn.get("/models")
        assert r.status_code == 200
        body = r.json
        assert body["task"] == self.FUNCTION
        assert {m["version"] for m in body["models"]} == {e.version for e in published}
        assert {m["model_type"] for m in body["models"]} == MODEL_TYPES[self.FUNCTION]
        best = registry.best(published, self.FUNCTION)
        assert body["default"]["version"] == best.version
        for m in body["models"]:
            assert {"sha256", "metrics", "trained_from", "trained_to"} <= set(m)

    def test_refresh_is_open_without_any_key_configured(self, make_function, store):
        fn = make_function(self.FUNCTION, MODEL_STORE=store)
        r = fn.post(path="/refresh")
        assert r.status_code == 200 and r.json["refreshed"] is True

    @pytest.mark.parametrize("path", ["/refresh", "/refresh_model"])
    def test_refresh_needs_the_admin_key(self, make_function, store, path):
        fn = make_function(self.FUNCTION, MODEL_STORE=store, ADMIN_KEY="admin-secret")
        missing = fn.post(path=path)
        assert missing.status_code == 401
        assert error_of(missing)["code"] == "unauthenticated"
        assert "Bearer" in missing.headers["WWW-Authenticate"]
        wrong = fn.post(path=path, headers={"X-API-Key": "guess"})
        assert wrong.status_code == 403
        assert error_of(wrong)["code"] == "forbidden"
        ok = fn.post(path=path, headers={"X-API-Key": "admin-secret"})
        assert ok.status_code == 200, ok.json
        assert ok.json["refreshed"] is True and ok.json["models"]
        bearer = fn.post(path=path, headers={"Authorization": "Bearer admin-secret"})
        assert bearer.status_code == 200
        # Without API_KEYS, predictions stay open.
        assert fn.post(self.body([SNAKE_RECORD])).status_code == 200

    def test_api_keys_guard_predict(self, make_function, store):
        fn = make_function(self.FUNCTION, MODEL_STORE=store, API_KEYS="k1, k2",
                           ADMIN_KEY="admin-secret")
        body = self.body([SNAKE_RECORD])
        assert fn.post(body).status_code == 401
        assert error_of(fn.post(body))["code"] == "unauthenticated"
        assert fn.post(body, headers={"X-API-Key": "k3"}).status_code == 403
        assert fn.post(body, headers={"X-API-Key": "k2"}).status_code == 200
        assert fn.post(body, headers={"Authorization": "Bearer k1"}).status_code == 200
        # A client key is not an admin key, nor the reverse.
        assert fn.post(path="/refresh", headers={"X-API-Key": "k1"}).status_code == 403
        assert fn.post(body, headers={"X-API-Key": "admin-secret"}).status_code == 403
        assert fn.get("/models").status_code == 401
        assert fn.get("/models", headers={"X-API-Key": "k1"}).status_code == 200
        # Probes carry no key.
        assert fn.get("/health").status_code == 200

    # -- logs --------------------------------------------------------------------------
    def test_one_json_log_line_per_request(self, fn, json_logs):
        trace = "105445aa7843bc8bf206b12000100000"
        fn.get("/health")  # the model is loaded before the measured requests
        json_logs()
        ok = fn.post(self.body([SNAKE_RECORD] * 3),
                     headers={"X-Cloud-Trace-Context": f"{trace}/1;o=1",
                              "User-Agent": "velocast-test"})
        assert ok.status_code == 200
        bad = fn.post(data=b"nope", content_type="application/json")
        assert bad.status_code == 400
        lines = json_logs()
        requests_logged = [line for line in lines if "httpRequest" in line]
        assert len(requests_logged) == 2, lines
        first, second = requests_logged
        assert first["severity"] == "INFO"
        assert first["records"] == 3
        assert first["latency_ms"] >= 0
        http = first["httpRequest"]
        assert http["requestMethod"] == "POST" and http["status"] == 200
        assert http["requestUrl"].endswith("/predict")
        assert http["userAgent"] == "velocast-test"
        assert http["latency"].endswith("s") and float(http["latency"][:-1]) >= 0
        assert int(http["responseSize"]) > 0 and int(http["requestSize"]) > 0
        assert first["task"] == self.FUNCTION
        # Without a configured project the bare trace id is logged.
        assert first["logging.googleapis.com/trace"] == trace
        assert second["severity"] == "WARNING"
        assert second["httpRequest"]["status"] == 400
        assert second["error_code"] == "invalid_json"
        assert "logging.googleapis.com/trace" not in second

    def test_trace_names_the_project(self, make_function, store, json_logs):
        fn = make_function(self.FUNCTION, MODEL_STORE=store, GCP_PROJECT="P")
        json_logs()
        r = fn.post(self.body([SNAKE_RECORD]), headers={"X-Cloud-Trace-Context": "T/1;o=1"})
        assert r.status_code == 200
        logged = [line for line in json_logs() if "httpRequest" in line]
        assert len(logged) == 1
        assert logged[0]["logging.googleapis.com/trace"] == "projects/P/traces/T"
        assert logged[0]["records"] == 1
