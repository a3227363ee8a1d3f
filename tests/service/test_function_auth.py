"""The functions' API-key auth end to end: the regress function in-process
(functions-framework's Flask app), reading its keys from files laid out as the
platform mounts the two secrets (terraform/functions.tf), configured only through
the environment variables Terraform sets in the cloud.

The KeyRing's own logic (TTL arithmetic, concurrency, error mapping) is unit-tested
with a fake clock in test_auth.py and test_auth_fail_closed.py; here the real clock,
file reads, HTTP layer and function entry point are in the loop.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import functions_framework
import pytest

pytest.register_assert_rewrite("tests.auth_files")

from tests.auth_files import KeyFiles  # noqa: E402
from tests.function_clients import OLD_BODIES  # noqa: E402
from velocast.serving import auth  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "functions" / "regress" / "main.py"
TTL = 1.0

OLD_BODY = OLD_BODIES["regress"]


@pytest.fixture
def files(tmp_path) -> KeyFiles:
    return KeyFiles(tmp_path / "secrets", client="k1\nk2", admin="adm")


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)

    def messages(self, logger: str, level: int = logging.DEBUG) -> list[str]:
        return [r.getMessage() for r in self.records if r.name == logger and r.levelno >= level]


@pytest.fixture
def logged():
    # velocast.serving.logs.configure() stops propagation at the "velocast" logger (JSON lines on
    # stdout), so listen there rather than through caplog.
    handler = Records()
    logger = logging.getLogger("velocast")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


@pytest.fixture
def function(monkeypatch, files, trained_store):
    """A fresh regress function (new instance globals) reading the key files."""
    for name in ("API_KEYS", "ADMIN_KEY", "API_KEYS_SECRET", "ADMIN_KEY_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("API_KEYS_FILE", str(files.client))
    monkeypatch.setenv("ADMIN_KEY_FILE", str(files.admin))
    monkeypatch.setenv("SECRET_TTL_SECONDS", str(int(TTL)))
    monkeypatch.setenv("MODEL_STORE", str(trained_store))
    # Both functions are main.py, loaded as the module `main`: never reuse another's.
    sys.modules.pop("main", None)
    app = functions_framework.create_app("regress", str(SOURCE))
    yield app.test_client()
    sys.modules.pop("main", None)


def predict(client, **headers):
    return client.post("/", json=OLD_BODY, headers=headers)


def error_of(response) -> dict:
    assert response.mimetype == "application/json", response.data
    return response.get_json()["error"]


def test_valid_key_as_x_api_key_or_bearer(function, files):
    response = predict(function, **{"X-API-Key": "k1"})
    assert response.status_code == 200, response.data
    body = response.get_json()
    assert len(body["predictions"]) == 1 and body["model"]["type"] == "nn"

    response = predict(function, Authorization="Bearer k2")
    assert response.status_code == 200, response.data
    assert response.get_json()["predictions"] == body["predictions"]
    # The keys came from the file, read once and cached: gone now, still served until the TTL.
    files.client.unlink()
    assert predict(function, **{"X-API-Key": "k1"}).status_code == 200


def test_wrong_key_is_403_json(function):
    for headers in ({"X-API-Key": "k3"}, {"Authorization": "Bearer nope"}, {"X-API-Key": "adm"}):
        response = predict(function, **headers)
        assert response.status_code == 403, headers
        error = error_of(response)
        assert error["code"] == "forbidden" and "invalid API key" in error["message"]


def test_missing_key_is_401_json(function):
    for headers in ({}, {"X-API-Key": "  "}, {"Authorization": "Basic azE6"}):
        response = predict(function, **headers)
        assert response.status_code == 401, headers
        assert error_of(response)["code"] == "unauthenticated"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert function.get("/models").status_code == 401
    assert function.get("/models", headers={"X-API-Key": "k1"}).status_code == 200


def test_health_needs_no_key(function):
    # Load balancer and uptime probes carry no key.
    response = function.get("/health")
    assert response.status_code == 200 and response.get_json()["models"]


def test_rotated_secret_is_picked_up_after_the_ttl_without_restart(function, files):
    assert predict(function, **{"X-API-Key": "k1"}).status_code == 200
    files.client.write_text("k3\n")  # k1 and k2 revoked, k3 issued
    time.sleep(TTL + 0.2)
    assert predict(function, **{"X-API-Key": "k3"}).status_code == 200
    assert predict(function, **{"X-API-Key": "k1"}).status_code == 403
    assert predict(function, Authorization="Bearer k2").status_code == 403


def test_unreadable_key_file_fails_closed(function, files, logged, monkeypatch):
    # Shorter than the default 5 s so that recovery is quick, long enough that the
    # requests below all fall inside it.
    monkeypatch.setattr(auth, "FAILURE_PAUSE_SECONDS", 2.0)
    assert predict(function, **{"X-API-Key": "k1"}).status_code == 200
    # What mounted secrets do when Secret Manager cannot be reached: reads of both fail.
    files.client.unlink()
    files.admin.unlink()
    time.sleep(TTL + 0.2)  # the cached keys expire and cannot be refreshed

    for key in ("k1", "k2", "adm", "anything"):
        response = predict(function, **{"X-API-Key": key})
        assert response.status_code == 503, (key, response.data)
        error = error_of(response)
        assert error["code"] == "auth_unavailable"
        assert int(response.headers["Retry-After"]) >= 1
    assert function.post("/refresh", headers={"X-API-Key": "adm"}).status_code == 503
    failures = logged.messages("velocast.auth", logging.ERROR)
    assert failures and "cannot read key file" in failures[0] and "api-keys" in failures[0]
    # One error line per failed read, not per request: the pause spares Secret Manager.
    assert len([m for m in failures if "api-keys" in m]) <= 2

    # Back up: served again without restarting the instance.
    files.client.write_text("k1\nk2")
    files.admin.write_text("adm")
    deadline = time.monotonic() + 30
    while predict(function, **{"X-API-Key": "k1"}).status_code != 200:
        assert time.monotonic() < deadline, "keys not readable again 30 s after recovery"
        time.sleep(0.3)
    assert any("readable again" in m for m in logged.messages("velocast.auth"))


def test_refresh_needs_the_admin_key(function):
    for route in ("/refresh", "/refresh_model"):
        assert function.post(route).status_code == 401
        response = function.post(route, headers={"X-API-Key": "k1"})
        assert response.status_code == 403 and error_of(response)["code"] == "forbidden"
        response = function.post(route, headers={"X-API-Key": "adm"})
        assert response.status_code == 200, response.data
        response = function.post(route, headers={"Authorization": "Bearer adm"})
        assert response.status_code == 200, response.data


def test_no_secret_manager_client_is_ever_imported(files, trained_store, tmp_path):
    code = f"""
import json, sys
import functions_framework
app = functions_framework.create_app("regress", {str(SOURCE)!r})
client = app.test_client()
body = {json.dumps(OLD_BODY, ensure_ascii=True)}
ok = client.post("/", json=body, headers={{"X-API-Key": "k2"}})
bad = client.post("/", json=body, headers={{"X-API-Key": "other"}})
admin = client.post("/refresh", headers={{"X-API-Key": "adm"}})
print(json.dumps({{"ok": ok.status_code, "bad": bad.status_code, "admin": admin.status_code,
    "loaded": sorted(m for m in sys.modules if m.startswith(("google.cloud.secretmanager", "grpc")))}}))
"""
    env = {k: v for k, v in os.environ.items()
           if not k.endswith(("_SECRET", "_FILE")) and k not in {"API_KEYS", "ADMIN_KEY", "PYTHONPATH"}}
    env.update(API_KEYS_FILE=str(files.client), ADMIN_KEY_FILE=str(files.admin),
               MODEL_STORE=str(trained_store))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome == {"ok": 200, "bad": 403, "admin": 200, "loaded": []}
