"""schemathesis against openapi.yaml: both functions as real functions-framework
servers on loopback, on `trained_store`.

A bounded run per function (examples from the spec, boundary values, then 50 generated
cases per operation, valid and invalid; fixed seed so a failure reproduces) checking:
no 5xx, every status and header documented, content types and bodies as the spec
says, and schema-invalid requests rejected. Not checked: `positive_data_acceptance`,
since a schema-valid body may still be a 422 the schema cannot express (an unknown
counter without coordinates, a date that is not ISO 8601, a metric of the other task).

schemathesis is a dev dependency (pyproject's dev extras): missing, these tests fail
rather than skip, so a broken install cannot pass unnoticed.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.function_clients import ROOT, VENV_BIN

SPEC = ROOT / "openapi.yaml"
CLI = VENV_BIN / "schemathesis"
SEED = 20250517
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_headers_conformance", "response_schema_conformance",
          "negative_data_rejection")
# 413 is this API's answer to a request above its limits (docs/architecture.md, Request path, step 5), e.g. the
# 10,001 records schemathesis sends past `maxItems`; its default list lacks it.
CONFIG = """
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422",
                     "428", "429", "5xx"]
"""
RUN_TIMEOUT = 150  # seconds per function; a run takes about 10 s on 2 idle cores



@pytest.fixture(scope="module")
def servers(served_pair):
    """The session's classify and regress on `trained_store` (tests/conftest.py)."""
    return served_pair


@pytest.mark.parametrize("name", ["classify", "regress"])
def test_openapi_contract(servers, name, tmp_path):
    assert SPEC.exists(), SPEC
    server = servers[name]
    assert server.process is not None and server.process.poll() is None
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [str(CLI), "--config-file", str(config), "--no-color", "run", str(SPEC),
               "--url", server.url, "--phases", "examples,coverage,fuzzing",
               "--max-examples", "50", "--checks", ",".join(CHECKS), "--workers", "1",
               "--seed", str(SEED), "--request-timeout", "30"]
    try:
        result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True,
                                timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"schemathesis ran over {RUN_TIMEOUT} s: {(exc.stdout or '')[-4000:]}")
    report = result.stdout[-12000:] + result.stderr[-3000:]
    assert result.returncode == 0, f"{report}\n--- {name} server log ---\n" \
                                   f"{server.log_text()[-4000:]}"
    assert "generated" in result.stdout, report
    # Nothing the server logged as an unhandled error either.
    assert "unhandled error" not in server.log_text(), server.log_text()[-4000:]
