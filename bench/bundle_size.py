"""Phase 6: bundle size. The installed size of each function: site-packages of a venv
built from the bundle's requirements.txt (velocast.dev.venvs; cached in WORK/bundle-venvs,
installed in the background during training, at most BUNDLE_BUDGET_SECONDS), else
build/bundle-sizes.json (tests/e2e/test_bundle_serving.py); the old design's size is
estimated from the dev venv's RECORD files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

from bench.common import FUNCTIONS, ROOT, say
from velocast.dev.venvs import (VENV_SCAFFOLDING, VenvError, create_venv, site_packages,
                                sizes_by_distribution, tree_bytes)

BUNDLE_BUDGET_SECONDS = 120.0


def requirements_for(name: str) -> Path:
    built = ROOT / "build" / name / "requirements.txt"
    return built if built.exists() else ROOT / "functions" / name / "requirements.txt"


def requirements_bytes(site: Path, skip_pycache: bool = False) -> int:
    """Bytes of site-packages without what `python -m venv` put there by itself."""
    return sum(v for k, v in sizes_by_distribution(site, skip_pycache).items()
               if k not in VENV_SCAFFOLDING)


class BundleVenvs:
    """Installs each distinct bundle requirements.txt into a cached venv, in the
    background, within BUNDLE_BUDGET_SECONDS; site-packages size = installed size."""

    def __init__(self, work: Path, allowed: bool):
        self.work = work / "bundle-venvs"
        self.allowed = allowed
        self.results: dict[str, dict] = {}
        self.thread: threading.Thread | None = None
        self.deadline = 0.0

    def _key(self, reqs: Path) -> str:
        return hashlib.sha256(reqs.read_bytes()).hexdigest()[:16]

    def cached(self, reqs: Path) -> Path | None:
        folder = self.work / self._key(reqs)
        return folder if (folder / ".bench-installed").exists() else None

    def start(self, requirements: list[Path] | None = None) -> None:
        """Install `requirements` (default: each function's) in the background."""
        todo = {}
        for reqs in requirements or [requirements_for(name) for name in FUNCTIONS]:
            if reqs.exists() and not self.cached(reqs):
                todo[self._key(reqs)] = reqs
        if not todo or not self.allowed:
            return
        self.deadline = time.monotonic() + BUNDLE_BUDGET_SECONDS

        def build():
            for key, reqs in todo.items():
                folder = self.work / key
                shutil.rmtree(folder, ignore_errors=True)
                started = time.monotonic()
                try:
                    create_venv(folder, reqs, timeout=max(1, self.deadline - time.monotonic()))
                    (folder / ".bench-installed").write_text(str(reqs))
                    self.results[key] = {"install_s": round(time.monotonic() - started, 1)}
                except subprocess.TimeoutExpired:
                    self.results[key] = {"error": f"not measured: install took more than "
                                                  f"{BUNDLE_BUDGET_SECONDS:.0f} s"}
                    shutil.rmtree(folder, ignore_errors=True)
                except (VenvError, subprocess.CalledProcessError, OSError) as exc:
                    self.results[key] = {"error": f"not measured: venv install failed: "
                                                  f"{str(exc)[-300:]}"}
                    shutil.rmtree(folder, ignore_errors=True)

        say(f"installing the bundle requirements into a venv in the background "
            f"(at most {BUNDLE_BUDGET_SECONDS:.0f} s)")
        self.thread = threading.Thread(target=build, daemon=True)
        self.thread.start()

    def wait(self) -> None:
        if self.thread is not None:
            self.thread.join(max(0.0, self.deadline - time.monotonic()) + 5)

    def measure(self, name: str) -> dict:
        reqs = requirements_for(name)
        code_folder = ROOT / "build" / name
        if code_folder.exists():
            code = tree_bytes(code_folder, skip_pycache=True)
            code_source = f"build/{name}"
        else:
            code = (ROOT / "functions" / name / "main.py").stat().st_size + sum(
                p.stat().st_size for p in (ROOT / "shared" / "velocast").rglob("*.py")
                # scripts/package.py's OFFLINE_PARTS are not shipped
                if p.relative_to(ROOT / "shared" / "velocast").parts[0]
                not in ("train", "dev", "publish.py"))
            code_source = "functions/main.py + shared/velocast (runtime part)"
        out = {"requirements": str(reqs.relative_to(ROOT)), "code_bytes": code,
               "code_source": code_source}
        sizes_file = ROOT / "build" / "bundle-sizes.json"
        packaged = None
        if sizes_file.exists():
            with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
                data = json.loads(sizes_file.read_text())
                packaged = data.get(name, data.get("functions", {}).get(name))
                out["bundle_sizes_json"] = packaged
        folder = self.cached(reqs)
        if folder is not None:
            site = site_packages(folder)
            installed = requirements_bytes(site, skip_pycache=True)
            with_pycache = requirements_bytes(site)
            out["installed_bytes"] = installed
            out["installed_mb"] = round(installed / 2**20, 1)
            out["installed_with_pycache_mb"] = round(with_pycache / 2**20, 1)
            out["method"] = ("site-packages of a fresh venv with only the bundle's "
                             "requirements.txt (pip, setuptools and __pycache__ excluded)")
            out["install_s"] = self.results.get(self._key(reqs), {}).get("install_s", "cached")
            out["largest"] = largest_distributions(site)
        elif isinstance(packaged, dict) and packaged.get("site_packages_bytes_without_pip"):
            installed = int(packaged["site_packages_bytes_without_pip"])
            out["installed_bytes"] = installed
            out["installed_mb"] = round(installed / 2**20, 1)
            out["method"] = ("build/bundle-sizes.json site_packages_bytes_without_pip "
                             "(scripts/package.py; includes __pycache__ and setuptools)")
        else:
            out["installed_bytes"] = None
            out["installed_mb"] = None
            out["method"] = self.results.get(self._key(reqs), {}).get(
                "error", "not measured: run make package + tests/e2e/test_bundle_serving.py, or "
                         "bench/run.py without --quick")
        out["estimate_from_dev_venv_mb"] = round(installed_estimate(reqs) / 2**20, 1)
        return out


# What `python -m venv` puts in site-packages by itself, not the bundle's requirements.


def largest_distributions(site: Path, top: int = 6) -> list:
    sizes = [(k, v) for k, v in sizes_by_distribution(site, skip_pycache=True).items()
             if k not in VENV_SCAFFOLDING and k != "__pycache__"]
    return [{"name": k, "mb": round(v / 2**20, 1)} for k, v in sizes[:top]]


def installed_estimate(reqs: Path | list[str]) -> int:
    """Installed bytes of a requirement set and its dependency closure, from the RECORD
    files of this (dev) venv: no install, no network. Versions are this venv's."""
    from importlib import metadata  # noqa: PLC0415

    from packaging.requirements import Requirement  # noqa: PLC0415

    if isinstance(reqs, Path):
        lines = [line.split("#", 1)[0].strip() for line in reqs.read_text().splitlines()]
    else:
        lines = reqs
    todo = [Requirement(line) for line in lines if line]
    seen, total = set(), 0
    while todo:
        req = todo.pop()
        key = req.name.lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            continue
        for f in dist.files or []:
            if "__pycache__" in f.parts:
                continue
            with contextlib.suppress(OSError):
                total += f.locate().stat().st_size
        for raw in dist.requires or []:
            dep = Requirement(raw)
            if dep.marker is None or any(dep.marker.evaluate({"extra": e})
                                         for e in (req.extras or {""})):
                todo.append(dep)
    return total


OLD_REQUIREMENTS = ["functions-framework", "google-cloud-storage", "pandas", "scikit-learn",
                    "joblib", "numpy"]


def measure_bundles(bundles: BundleVenvs) -> dict:
    bundle = {fn: bundles.measure(fn) for fn in FUNCTIONS}
    bundle["old_estimate_mb"] = round(installed_estimate(OLD_REQUIREMENTS) / 2**20, 1)
    bundle["old_estimate_method"] = ("RECORD sizes in the dev venv of " + ", ".join(
        OLD_REQUIREMENTS) + " and their dependencies (no install)")
    return bundle
