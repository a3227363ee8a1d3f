"""What the bundle tests share (a pytest plugin: ``pytest_plugins = ["tests.bundles"]``).

`package`: scripts/package.py loaded as a module; `build_dir`: that script run for
real into a private folder, once per test module.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from velocast.core.tasks import TASK_NAMES

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_SCRIPT = ROOT / "scripts" / "package.py"
FUNCTIONS = TASK_NAMES
# Modules a function needs, by their place in the layers (docs/architecture.md).
RUNTIME_MODULES = ("__init__", "core/paris_calendar", "core/features", "core/schema",
                   "catalog/store", "catalog/store_gcs", "catalog/registry", "catalog/__init__",
                   "serving/model_cache", "serving/service", "serving/logs", "serving/auth",
                   "serving/page", "catalog/promotions", "core/advisories")
# The forecast page's files, shipped in velocast/serving/static/ beside the API spec.
PAGE_FILES = ("forecast.html", "forecast.css", "forecast.js", "forecast-api.js",
              "forecast-map.js", "forecast-chart.js")
OFFLINE_DISTRIBUTIONS = {"scikit-learn", "pandas", "skl2onnx", "onnx"}


def _load_package_module():
    spec = importlib.util.spec_from_file_location("velocast_package_script", PACKAGE_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


package = _load_package_module()


def clean_env(**extra: str) -> dict[str, str]:
    """What a function instance sees: no PYTHONPATH, no venv of ours, no keys of the caller."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}
           and not k.startswith(("API_KEYS", "ADMIN_KEY", "SECRET_", "MODEL_STORE",
                                 "STORAGE_EMULATOR", "GCP_PROJECT", "GOOGLE_"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # keep __pycache__ out of the bundle folders
    env.update(extra)
    return env


def run_package(out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PACKAGE_SCRIPT), "--out", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory) -> Path:
    """scripts/package.py run for real once per session (read by the packaging and the
    bundle-serving tests), into a private folder: a concurrent `make package`
    or bench run must not rebuild build/ under the running servers (same script, same
    bytes: the zips are compared with a second run in test_packaging.py)."""
    out = tmp_path_factory.mktemp("bundles") / "build"
    result = run_package(out)
    assert result.returncode == 0, result.stderr
    for fn in FUNCTIONS:
        assert f"build/{fn}/" in result.stdout or f"{fn}/" in result.stdout
    print(result.stdout, end="")
    return out
