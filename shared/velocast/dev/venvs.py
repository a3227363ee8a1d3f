"""A function's dependencies installed as Cloud Functions installs them: a fresh venv,
`pip install -r requirements.txt` and nothing else; and what that weighs.

Used by tests/e2e/test_bundle_serving.py (serve a bundle from such a venv) and the bench
(installed size per function).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

# What `python -m venv` puts in site-packages by itself, not the requirements.
VENV_SCAFFOLDING = ("pip", "setuptools", "pkg_resources", "_distutils_hack",
                    "distutils-precedence.pth")


class VenvError(Exception):
    """The venv could not be made; the message carries pip's output."""


def create_venv(folder: Path, requirements: Path, *, timeout: float,
                env: dict | None = None) -> Path:
    """A new venv in `folder` with `requirements` installed (subprocess.TimeoutExpired
    past `timeout` seconds in all)."""
    deadline = time.monotonic() + timeout
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, timeout=timeout,
                   capture_output=True, env=env)
    result = subprocess.run(
        [str(folder / "bin" / "python"), "-m", "pip", "install", "--quiet",
         "--disable-pip-version-check", "-r", str(requirements)],
        capture_output=True, text=True, env=env,
        timeout=max(1.0, deadline - time.monotonic()))
    if result.returncode != 0:
        raise VenvError(f"pip install -r {requirements} failed (PyPI reachable? pip cache?):\n"
                        f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return folder


def site_packages(venv: Path) -> Path:
    return next(venv.glob("lib/python*/site-packages"))


def tree_bytes(folder: Path, skip_pycache: bool = False) -> int:
    """Bytes of the regular files below `folder` (symlinks not followed)."""
    return sum(p.lstat().st_size for p in folder.rglob("*")
               if p.is_file() and not p.is_symlink()
               and not (skip_pycache and "__pycache__" in p.parts))


def sizes_by_distribution(site: Path, skip_pycache: bool = False) -> dict[str, int]:
    """Bytes per top-level entry of site-packages, NAME-x.y.dist-info counted with
    NAME; largest first."""
    sizes: dict[str, int] = {}
    for entry in site.iterdir():
        name = entry.name.split("-")[0] if entry.name.endswith(".dist-info") else entry.name
        if skip_pycache and name == "__pycache__":
            continue
        size = tree_bytes(entry, skip_pycache) if entry.is_dir() else entry.lstat().st_size
        sizes[name] = sizes.get(name, 0) + size
    return dict(sorted(sizes.items(), key=lambda kv: -kv[1]))
