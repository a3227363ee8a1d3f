"""scripts/package.py: what goes into a function bundle and what it refuses.

Each bundle (build/<fn>/: main.py, requirements.txt, the runtime part of velocast, and
its deterministic zip) carries no offline-only code or distribution; the checks refuse
unpinned or offline requirements and runtime code importing offline modules. Serving a
bundle is tests/e2e/test_bundle_serving.py.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

import pytest

pytest.register_assert_rewrite("tests.bundles")

from tests.bundles import (  # noqa: E402
    FUNCTIONS,
    OFFLINE_DISTRIBUTIONS,
    PACKAGE_SCRIPT,
    ROOT,
    PAGE_FILES,
    RUNTIME_MODULES,
    package,
    run_package,
)

pytest_plugins = ["tests.bundles"]

# Offline parts of shared/velocast/, never shipped.


def test_bundles_hold_main_requirements_and_runtime_modules_only(build_dir):
    for fn in FUNCTIONS:
        folder = build_dir / fn
        files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        expected = sorted(["main.py", "requirements.txt",
                           *(f"velocast/{m}.py" for m in RUNTIME_MODULES)])
        # The package's __init__.py and every file of core/, catalog/ and serving/ (its
        # static/ included): a new module there ships, one anywhere else does not.
        package_dir = ROOT / "shared" / "velocast"
        shipped = sorted(["main.py", "requirements.txt", "velocast/__init__.py", *(
            f"velocast/{p.relative_to(package_dir).as_posix()}"
            for layer in ("core", "catalog", "serving") for p in (package_dir / layer).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts)])
        assert files == shipped
        assert set(expected) <= set(files)
        assert {f"velocast/serving/static/{f}" for f in PAGE_FILES} <= set(files)
        assert not any(f.startswith("velocast/train") for f in files)
        assert not any(f.startswith(("velocast/dev", "velocast/models", "velocast/ingest",
                                     "velocast/retrain")) for f in files)
        assert (folder / "main.py").read_bytes() == (ROOT / "functions" / fn / "main.py").read_bytes()
        assert ((folder / "requirements.txt").read_bytes()
                == (ROOT / "functions" / fn / "requirements.txt").read_bytes())
        with zipfile.ZipFile(build_dir / f"{fn}.zip") as archive:
            names = archive.namelist()
            assert names == sorted(names) == files
            assert {i.date_time for i in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
            assert all(archive.read(n) == (folder / n).read_bytes() for n in names)
            assert archive.testzip() is None


def test_package_is_deterministic_and_rebuilds_from_scratch(build_dir, tmp_path):
    out = tmp_path / "again"
    stale = out / "regress" / "velocast" / "stale_module.py"
    stale.parent.mkdir(parents=True)
    stale.write_text("import sklearn\n")
    result = run_package(out)
    assert result.returncode == 0, result.stderr
    assert not stale.exists()
    for fn in FUNCTIONS:
        assert (out / f"{fn}.zip").read_bytes() == (build_dir / f"{fn}.zip").read_bytes()
        assert "files" in result.stdout and "KiB" in result.stdout


def test_requirements_are_pinned_and_runtime_only():
    for fn in FUNCTIONS:
        names = package.check_requirements(ROOT / "functions" / fn / "requirements.txt")
        assert not OFFLINE_DISTRIBUTIONS & set(names)
        assert {"functions-framework", "onnxruntime", "numpy"} <= set(names)


@pytest.mark.parametrize("line, reason", [
    ("scikit-learn==1.6.1", "offline-only"),
    ("scikit_learn==1.6.1", "offline-only"),
    ("Pandas==2.2.3", "offline-only"),
    ("skl2onnx==1.20.0", "offline-only"),
    ("onnx==1.17.0", "offline-only"),
    ("numpy>=2", "pin an exact version"),
    ("numpy", "pin an exact version"),
    ("-r ../other.txt", "not allowed"),
])
def test_package_refuses_bad_requirements(tmp_path, line, reason):
    path = tmp_path / "requirements.txt"
    path.write_text(f"onnxruntime==1.32.0  # fine\n{line}\n")
    with pytest.raises(package.PackagingError, match=reason):
        package.check_requirements(path)


@pytest.mark.parametrize("module, source", [
    ("serving/auth.py", "import sklearn\n"),
    ("serving/auth.py", "def f():\n    import pandas as pd\n"),
    ("serving/auth.py", "from skl2onnx import convert_sklearn\n"),
    ("serving/auth.py", "import onnx\n"),
    ("serving/auth.py", "from velocast.train.pipeline import train\n"),
    ("serving/auth.py", "from velocast import train\n"),
    ("serving/auth.py", "from ..train import pipeline\n"),
    ("serving/auth.py", "from .. import train\n"),
    ("__init__.py", "from .train import pipeline\n"),
    ("serving/auth.py", "import importlib\nimportlib.import_module('sklearn.linear_model')\n"),
    ("serving/auth.py", "__import__('pandas')\n"),
    ("serving/auth.py", "from velocast.dev.servers import FunctionServer\n"),
    ("serving/auth.py", "from velocast.train.publish import copy_store\n"),
])
def test_package_refuses_offline_imports(tmp_path, monkeypatch, module, source):
    shared = tmp_path / "shared" / "velocast"
    shutil.copytree(ROOT / "shared" / "velocast", shared,
                    ignore=shutil.ignore_patterns("__pycache__"))
    with (shared / module).open("a") as fh:
        fh.write("\n" + source)
    monkeypatch.setattr(package, "PACKAGE", shared)
    out = tmp_path / "build"
    with pytest.raises(package.PackagingError, match="offline-only"):
        package.build("regress", out)
    # No half-built bundle is left for terraform to zip.
    assert not (out / "regress").exists() and not (out / "regress.zip").exists()


def test_package_allows_onnxruntime_and_lookalikes(tmp_path):
    pkg = tmp_path / "velocast"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "ok.py").write_text("import onnxruntime\nimport pandasish\nfrom velocast import trainer\n"
                               "from .training import x\n")
    package.check_imports(pkg)


def test_package_cli_fails_loudly(tmp_path):
    result = subprocess.run([sys.executable, str(PACKAGE_SCRIPT), "--out", str(tmp_path), "nope"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "unknown function" in result.stderr


