"""Run scripts/checkov.sh (its own venv) and return its summary; shared by the
Terraform and the workflow tests. checkov is fetched from PyPI like every other test
tool: if it cannot be installed the test fails, it does not skip."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.conftest import ROOT


def checkov_summary(*args: str) -> tuple[int, int, int]:
    """(passed, failed, skipped) after asserting checkov ran clean."""
    if os.environ.get("VELOCAST_SKIP_CHECKOV"):
        pytest.skip("VELOCAST_SKIP_CHECKOV is set")
    result = subprocess.run(["bash", str(ROOT / "scripts" / "checkov.sh"), *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=900)
    summary = re.search(r"Passed checks: (\d+), Failed checks: (\d+), Skipped checks: (\d+)",
                        result.stdout)
    assert summary, f"no checkov summary (rc={result.returncode}):\n{result.stdout}\n{result.stderr}"
    passed, failed, skipped = (int(g) for g in summary.groups())
    assert failed == 0, result.stdout
    assert result.returncode == 0, result.stdout + result.stderr
    assert passed > 0, "checkov scanned nothing"
    return passed, failed, skipped
