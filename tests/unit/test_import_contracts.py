"""The layers of docs/architecture.md, checked by import-linter (pyproject.toml's
[tool.importlinter]) on this tree and shown to fail on a planted violation."""

import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
LINT = pathlib.Path(sys.executable).with_name("lint-imports")


def _lint(config: pathlib.Path, shared: pathlib.Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--config", str(config), "--no-cache"], cwd=shared.parent,
                          env={"PYTHONPATH": str(shared), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=300)


def test_every_contract_is_kept_on_this_tree():
    result = _lint(ROOT / "pyproject.toml", ROOT / "shared")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def _planted(tmp_path, module: str, line: str) -> subprocess.CompletedProcess:
    shared = tmp_path / "shared"
    shutil.copytree(ROOT / "shared" / "velocast", shared / "velocast",
                    ignore=shutil.ignore_patterns("__pycache__"))
    target = shared / "velocast" / module
    # Inside a function, as a lazy import would be: it ships all the same.
    target.write_text(target.read_text(encoding="utf-8") +
                      f"\n\ndef _planted():\n    {line}\n", encoding="utf-8")
    return _lint(ROOT / "pyproject.toml", shared)


def test_serving_importing_training_code_breaks_the_bundle_contract(tmp_path):
    result = _planted(tmp_path, "serving/page.py", "from velocast.train import pipeline")
    assert result.returncode != 0
    assert "what a function bundles never imports offline code" in result.stdout
    assert "velocast.serving.page -> velocast.train.pipeline" in result.stdout


def test_core_reaching_up_to_the_catalog_breaks_the_layers(tmp_path):
    result = _planted(tmp_path, "core/prediction.py", "from velocast.catalog import LoadedModel")
    assert result.returncode != 0
    assert "serving sits on catalog, catalog on core BROKEN" in result.stdout
