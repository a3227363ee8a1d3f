"""scripts/smoke_health.py, the post-deploy check of deploy.yml, against loopback servers.

Each stand-in function answers GET /health with a scripted sequence of statuses
and bodies; the script must pass on 200 and on the app's own 503 (no model yet),
retry while instances cold-start, and fail on anything else.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "smoke_health.py"

HEALTHY = (200, {"status": "ok", "models": [{"type": "affluence"}]})
NO_MODEL = (503, {"status": "unavailable", "models": [], "error": "no model published yet"})
PLATFORM_503 = (503, "Service Unavailable")  # not the app's body: an instance that cannot start
BROKEN = (500, {"error": {"code": "internal"}})
COLD = (502, "Bad Gateway")


class Function:
    """A loopback server answering /health with `answers` in turn (the last one repeats)."""

    def __init__(self, answers: list[tuple[int, object]]):
        self.answers = list(answers)
        self.requests: list[dict[str, str]] = []
        function = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                function.requests.append({"path": self.path, **dict(self.headers)})
                status, body = function.answers.pop(0) if len(function.answers) > 1 else function.answers[0]
                data = (json.dumps(body) if isinstance(body, dict) else body).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def functions() -> Iterator[list[Function]]:
    started: list[Function] = []
    yield started
    for function in started:
        function.close()


def _start(functions: list[Function], *answers: tuple[int, object]) -> Function:
    function = Function(list(answers))
    functions.append(function)
    return function


def _smoke(*targets: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--attempts", "3", "--delay", "0.05", "--timeout", "5", *targets],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    )


def test_passes_when_both_functions_serve_a_model(functions):
    classify, regress = _start(functions, HEALTHY), _start(functions, HEALTHY)
    result = _smoke(f"classify={classify.url}", f"regress={regress.url}")
    assert result.returncode == 0, result.stderr
    assert [r["path"] for r in classify.requests + regress.requests] == ["/health", "/health"]


def test_passes_on_the_apps_503_before_the_first_publish(functions):
    classify, regress = _start(functions, NO_MODEL), _start(functions, HEALTHY)
    result = _smoke(f"classify={classify.url}", f"regress={regress.url}")
    assert result.returncode == 0, result.stderr
    assert "no model published yet" in result.stdout


def test_fails_on_a_503_that_is_not_the_apps(functions):
    classify, regress = _start(functions, PLATFORM_503), _start(functions, HEALTHY)
    result = _smoke(f"classify={classify.url}", f"regress={regress.url}")
    assert result.returncode == 1
    assert "classify: FAILED, 503" in result.stderr


def test_fails_on_a_server_error_without_retrying_it(functions):
    classify = _start(functions, BROKEN, HEALTHY)
    result = _smoke(f"classify={classify.url}")
    assert result.returncode == 1
    assert len(classify.requests) == 1


def test_retries_while_instances_cold_start(functions):
    regress = _start(functions, COLD, COLD, HEALTHY)
    result = _smoke(f"regress={regress.url}")
    assert result.returncode == 0, result.stderr
    assert len(regress.requests) == 3


def test_gives_up_after_the_last_attempt(functions):
    regress = _start(functions, COLD)
    result = _smoke(f"regress={regress.url}")
    assert result.returncode == 1
    assert len(regress.requests) == 3


def test_fails_when_nothing_listens():
    result = _smoke("classify=http://127.0.0.1:9/")
    assert result.returncode == 1
    assert "no answer" in result.stderr


def test_sends_each_functions_own_id_token(functions):
    classify, regress = _start(functions, HEALTHY), _start(functions, HEALTHY)
    env = {"CLASSIFY_ID_TOKEN": "token-for-classify", "REGRESS_ID_TOKEN": ""}
    result = _smoke(f"classify={classify.url}", f"regress={regress.url}", env=env)
    assert result.returncode == 0, result.stderr
    assert classify.requests[0]["Authorization"] == "Bearer token-for-classify"
    assert "Authorization" not in regress.requests[0]


def test_rejects_a_target_without_a_name():
    result = _smoke("https://example.invalid")
    assert result.returncode == 2
    assert "NAME=URL" in result.stderr
