"""Build the Cloud Function bundles, one per velocast.core.tasks.TASKS entry: build/<fn>/.

    python scripts/package.py [--out build]

Each bundle is the folder Cloud Functions builds from (and terraform/ zips):

    build/<fn>/main.py            the function's entry point, copied
    build/<fn>/requirements.txt   the function's pinned runtime requirements, copied
    build/<fn>/velocast/          the runtime folders of shared/velocast/ (BUNDLED:
                                  core/, catalog/, serving/ with its static/: the API
                                  spec, the forecast page) and its __init__.py; never
                                  train/, dev/ or the offline commands

plus build/<fn>.zip, a deterministic zip of that folder (sorted entries, fixed
timestamps and modes: the same sources always give the same bytes), handy for
`gcloud functions deploy --source build/<fn>.zip` or to compare builds.

The build fails loudly, leaving no half-built bundle, when
  - a requirements.txt lists an offline-only distribution (scikit-learn, pandas,
    skl2onnx, onnx; onnxruntime is fine) or a requirement that is not pinned with ==;
  - a copied module imports sklearn, pandas, skl2onnx, onnx or an offline part of
    velocast (velocast.train, velocast.dev, velocast.train.publish)
    (AST scan of every copied file: top-level and lazy imports, relative imports,
    importlib.import_module("...") and __import__("...") with a literal name).

Every run rebuilds from scratch, so it is idempotent. Standard library only.
"""

from __future__ import annotations

import argparse
import ast
import re
import shutil
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from velocast.core.tasks import TASK_NAMES

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "shared" / "velocast"
FUNCTIONS = TASK_NAMES

# What a function ships, by folder (docs/architecture.md, "Layers"): everything else of
# velocast (train/, dev/, the ingest/retrain/models commands) stays offline, and a new
# module is in or out by where it lives, not by a list of names.
BUNDLED = ("core", "catalog", "serving")

# Distributions that must never be installed in a function (normalised per PEP 503).
FORBIDDEN_REQUIREMENTS = {"scikit-learn", "sklearn", "pandas", "skl2onnx", "onnx"}
# Modules the runtime code must never import (the module itself or any submodule).
FORBIDDEN_IMPORTS = ("sklearn", "pandas", "skl2onnx", "onnx", "velocast.train", "velocast.dev",
                     "velocast.train.publish")

# Fixed metadata for reproducible zips (the zip format cannot go below 1980).
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
ZIP_FILE_MODE = 0o644

_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


class PackagingError(Exception):
    """The bundle would be wrong; the message says what and where."""


@dataclass
class Bundle:
    name: str
    folder: Path
    zip_path: Path
    files: int
    bytes: int
    zip_bytes: int


# -- requirements ----------------------------------------------------------------------


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def check_requirements(path: Path) -> list[str]:
    """The pinned requirement names of `path`; PackagingError on anything off."""
    if not path.is_file():
        raise PackagingError(f"{_rel(path)} is missing: a function needs its requirements.txt")
    problems, names = [], []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        where = f"{_rel(path)}:{number}: {raw.strip()!r}"
        if line.startswith("-"):
            # -r, -c, --index-url, -e ...: the bundle must say exactly what it installs.
            problems.append(f"{where}: pip options and includes are not allowed in a bundle")
            continue
        match = _REQUIREMENT_NAME.match(line)
        if not match:
            problems.append(f"{where}: not a requirement line")
            continue
        name = _normalise(match.group(1).split("[", 1)[0])
        names.append(name)
        if name in FORBIDDEN_REQUIREMENTS:
            problems.append(f"{where}: {name} is offline-only (training) and must not be "
                            "installed in a function; remove it")
        spec = line.split(";", 1)[0]
        if "==" not in spec or any(op in spec for op in (">", "<", "~=", "!=", "*")):
            problems.append(f"{where}: pin an exact version with == so every build installs "
                            "the same thing")
    if not names:
        problems.append(f"{_rel(path)}: no requirement at all")
    if problems:
        raise PackagingError("bad requirements:\n  " + "\n  ".join(problems))
    return names


# -- imports ---------------------------------------------------------------------------


def _module_of(path: Path, package_root: Path) -> tuple[str, bool]:
    """Dotted module name of a file inside the copied package, and whether it is a package."""
    parts = list(path.relative_to(package_root.parent).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def _resolve_relative(module: str, is_package: bool, level: int, target: str | None) -> str:
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, target] if target else base)


def imported_modules(path: Path, package_root: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in `path`, however nested."""
    module, is_package = _module_of(path, package_root)
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as exc:
        raise PackagingError(f"{_rel(path)}: does not parse: {exc}") from None
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = (_resolve_relative(module, is_package, node.level, node.module)
                    if node.level else node.module or "")
            found.append((node.lineno, base))
            # `from velocast import train` imports velocast.train too.
            found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names
                         if alias.name != "*")
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = (func.attr if isinstance(func, ast.Attribute)
                      else func.id if isinstance(func, ast.Name) else None)
            first = node.args[0]
            if (called in ("import_module", "__import__") and isinstance(first, ast.Constant)
                    and isinstance(first.value, str)):
                found.append((node.lineno, first.value))
    return found


def _forbidden(name: str) -> str | None:
    for bad in FORBIDDEN_IMPORTS:
        if name == bad or name.startswith(bad + "."):
            return bad
    return None


def check_imports(package_root: Path) -> None:
    problems = []
    for path in sorted(package_root.rglob("*.py")):
        for line, name in imported_modules(path, package_root):
            bad = _forbidden(name)
            if bad:
                problems.append(f"{path.relative_to(package_root.parent)}:{line}: imports {name} "
                                f"({bad} is offline-only and absent from the function)")
    if problems:
        raise PackagingError("runtime code imports offline-only modules:\n  "
                             + "\n  ".join(problems))


# -- copy and zip ----------------------------------------------------------------------


def _runtime_sources(package: Path) -> list[Path]:
    if not (package / "__init__.py").is_file():
        raise PackagingError(f"{_rel(package)}/__init__.py is missing")
    sources = [package / "__init__.py"]
    for folder in BUNDLED:
        if not (package / folder / "__init__.py").is_file():
            raise PackagingError(f"{_rel(package / folder)}/__init__.py is missing")
        sources += [path for path in sorted((package / folder).rglob("*"))
                    if path.is_file() and "__pycache__" not in path.parts]
    return sources


def write_zip(folder: Path, zip_path: Path) -> None:
    """Deterministic zip of `folder`: sorted '/'-separated names, fixed dates and modes."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    tmp = zip_path.with_name(zip_path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w") as archive:
        for path in sorted(files, key=lambda p: p.relative_to(folder).as_posix()):
            info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o100000 | ZIP_FILE_MODE) << 16  # regular file, rw-r--r--
            info.create_system = 3  # unix, so the mode above is honoured everywhere
            archive.writestr(info, path.read_bytes(), compresslevel=9)
    tmp.replace(zip_path)


def build(name: str, out: Path) -> Bundle:
    source = ROOT / "functions" / name
    folder = out / name
    zip_path = out / f"{name}.zip"
    # From scratch: nothing of a previous build (deleted modules, __pycache__) survives.
    shutil.rmtree(folder, ignore_errors=True)
    zip_path.unlink(missing_ok=True)
    try:
        if not (source / "main.py").is_file():
            raise PackagingError(f"{_rel(source)}/main.py is missing")
        check_requirements(source / "requirements.txt")
        folder.mkdir(parents=True)
        shutil.copyfile(source / "main.py", folder / "main.py")
        shutil.copyfile(source / "requirements.txt", folder / "requirements.txt")
        package = folder / "velocast"
        for path in _runtime_sources(PACKAGE):
            target = package / path.relative_to(PACKAGE)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        # Scan what was copied (main.py included), not the sources: that is what ships.
        check_imports(package)
        for line, imported in imported_modules(folder / "main.py", folder):
            bad = _forbidden(imported)
            if bad:
                raise PackagingError(f"{_rel(source)}/main.py:{line}: imports {imported} "
                                     f"({bad} is offline-only)")
        check_requirements(folder / "requirements.txt")
        write_zip(folder, zip_path)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        zip_path.unlink(missing_ok=True)
        raise
    files = [p for p in folder.rglob("*") if p.is_file()]
    return Bundle(name, folder, zip_path, len(files), sum(p.stat().st_size for p in files),
                  zip_path.stat().st_size)


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/package.py", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build",
                        help="output folder (default: build/; terraform's source_dir)")
    parser.add_argument("functions", nargs="*", metavar="FUNCTION",
                        help=f"any of {', '.join(FUNCTIONS)} (default: all)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.functions) - set(FUNCTIONS))
    if unknown:
        parser.error(f"unknown function(s) {', '.join(unknown)}; choose from {', '.join(FUNCTIONS)}")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    try:
        for name in args.functions or FUNCTIONS:
            bundle = build(name, out)
            print(f"package: {_rel(bundle.folder)}/  {bundle.files} files, "
                  f"{bundle.bytes / 1024:.1f} KiB; {_rel(bundle.zip_path)} "
                  f"{bundle.zip_bytes / 1024:.1f} KiB", flush=True)
    except PackagingError as exc:
        print(f"package: FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
