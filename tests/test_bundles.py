"""The function bundles, as Cloud Functions would build and run them.

scripts/package.py builds build/<fn>/ (main.py, requirements.txt, the runtime part of
velocast). Here each bundle is installed the way the platform does it: a fresh venv,
`pip install -r requirements.txt` and nothing else (no repo checkout on sys.path, no
PYTHONPATH), then served by that venv's functions-framework and sent the old
system's requests. Also: the bundle carries no offline-only code or distribution,
the packaging checks refuse what they must, and scripts/cloud.sh stops with a
helpful message when a prerequisite is missing (with stand-in terraform/gcloud).

The venv install is the slow part (~100 MB of wheels, from the pip cache once
warm); it is done once per distinct requirements.txt for the whole module.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.function_clients import OLD_BODIES

pytest_plugins = ["tests.gcs_fixtures"]

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_SCRIPT = ROOT / "scripts" / "package.py"
CLOUD_SCRIPT = ROOT / "scripts" / "cloud.sh"
FUNCTIONS = ("classify", "regress")
RUNTIME_MODULES = ("__init__", "paris_calendar", "features", "schema", "store", "registry",
                   "model_cache", "service", "logs", "auth", "models", "promotions")
OFFLINE_DISTRIBUTIONS = {"scikit-learn", "pandas", "skl2onnx", "onnx"}
OFFLINE_MODULES = ("sklearn", "pandas", "skl2onnx", "onnx")
API_KEY = "bundle-test-key"


def _load_package_module():
    spec = importlib.util.spec_from_file_location("velocast_package_script", PACKAGE_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


package = _load_package_module()


def _clean_env(**extra: str) -> dict[str, str]:
    """What a function instance sees: no PYTHONPATH, no venv of ours, no keys of the caller."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}
           and not k.startswith(("API_KEYS", "ADMIN_KEY", "SECRET_", "MODEL_STORE",
                                 "STORAGE_EMULATOR", "GCP_PROJECT", "GOOGLE_"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # keep __pycache__ out of the bundle folders
    env.update(extra)
    return env


def _tree_bytes(folder: Path) -> int:
    return sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


# -- building ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory) -> Path:
    """scripts/package.py run for real, into a private folder: a concurrent `make package`
    or bench run must not rebuild build/ under the running servers (same script, same
    bytes: the zips are compared with a second run below)."""
    out = tmp_path_factory.mktemp("bundles") / "build"
    result = subprocess.run([sys.executable, str(PACKAGE_SCRIPT), "--out", str(out)],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    for fn in FUNCTIONS:
        assert f"build/{fn}/" in result.stdout or f"{fn}/" in result.stdout
    print(result.stdout, end="")
    return out


def test_bundles_hold_main_requirements_and_runtime_modules_only(build_dir):
    for fn in FUNCTIONS:
        folder = build_dir / fn
        files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        expected = sorted(["main.py", "requirements.txt",
                           *(f"velocast/{m}.py" for m in RUNTIME_MODULES)])
        # Every .py of shared/velocast/ except the offline subpackages (train/ and the
        # ingest/ and retrain/ commands): a new runtime module is shipped too.
        shipped = sorted(["main.py", "requirements.txt", *(
            f"velocast/{p.relative_to(ROOT / 'shared' / 'velocast').as_posix()}"
            for p in (ROOT / "shared" / "velocast").rglob("*.py")
            if not {"train", "ingest", "retrain"} & set(p.relative_to(ROOT / "shared" / "velocast").parts)
            and "__pycache__" not in p.parts)])
        assert files == shipped
        assert set(expected) <= set(files)
        assert not any(f.startswith("velocast/train") for f in files)
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
    result = subprocess.run([sys.executable, str(PACKAGE_SCRIPT), "--out", str(out)],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
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
    ("auth.py", "import sklearn\n"),
    ("auth.py", "def f():\n    import pandas as pd\n"),
    ("auth.py", "from skl2onnx import convert_sklearn\n"),
    ("auth.py", "import onnx\n"),
    ("auth.py", "from velocast.train.pipeline import train\n"),
    ("auth.py", "from velocast import train\n"),
    ("auth.py", "from .train import pipeline\n"),
    ("auth.py", "from . import train\n"),
    ("__init__.py", "from .train import pipeline\n"),
    ("auth.py", "import importlib\nimportlib.import_module('sklearn.linear_model')\n"),
    ("auth.py", "__import__('pandas')\n"),
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


# -- installing and serving -------------------------------------------------------------


class Venvs:
    """One venv per distinct requirements.txt, created on first use.

    Both functions pin the same requirements today, so one venv serves both bundles:
    installing the identical set twice would only double the slowest step. The venv
    holds the requirements and nothing else; each bundle's own velocast comes from its
    folder, which is the server's cwd and --source.
    """

    def __init__(self, root: Path, build_dir: Path):
        self.root = root
        self.build_dir = build_dir
        self._venvs: dict[str, Path] = {}
        self.sizes: dict[str, dict] = {}

    def for_function(self, fn: str) -> Path:
        requirements = self.build_dir / fn / "requirements.txt"
        digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
        venv = self._venvs.get(digest)
        if venv is None:
            venv = self.root / f"venv-{digest[:12]}"
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
            result = subprocess.run(
                [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                 "--disable-pip-version-check", "-r", str(requirements)],
                capture_output=True, text=True, timeout=1800, env=_clean_env())
            assert result.returncode == 0, (
                f"pip install -r {requirements} failed (PyPI reachable? pip cache?):\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
            print(f"\n{fn}: venv installed in {time.perf_counter() - started:.0f} s")
            self._venvs[digest] = venv
        if fn not in self.sizes:
            self.sizes[fn] = self._measure(fn, venv, digest)
        return venv

    def _measure(self, fn: str, venv: Path, digest: str) -> dict:
        site = next(venv.glob("lib/python*/site-packages"))
        tooling = {"pip", "setuptools", "_distutils_hack", "pkg_resources"}
        by_top: dict[str, int] = {}
        for entry in site.iterdir():
            name = entry.name.split("-")[0] if entry.name.endswith(".dist-info") else entry.name
            size = _tree_bytes(entry) if entry.is_dir() else entry.lstat().st_size
            by_top[name] = by_top.get(name, 0) + size
        total = sum(by_top.values())
        without_tooling = sum(v for k, v in by_top.items()
                              if k.split(".")[0].lower() not in tooling)
        bundle = self.build_dir / fn
        files = [p for p in bundle.rglob("*") if p.is_file()]
        sizes = {
            "bundle_files": len(files),
            "bundle_bytes": sum(p.stat().st_size for p in files),
            "zip_bytes": (self.build_dir / f"{fn}.zip").stat().st_size,
            "site_packages_bytes": total,
            "site_packages_bytes_without_pip": without_tooling,
            "largest": {k: v for k, v in sorted(by_top.items(), key=lambda kv: -kv[1])[:8]},
            "python": f"{sys.version_info.major}.{sys.version_info.minor}",
            "requirements_sha256": digest,
        }
        print(f"\n{fn}: bundle {sizes['bundle_files']} files, {sizes['bundle_bytes'] / 1024:.1f} KiB "
              f"(zip {sizes['zip_bytes'] / 1024:.1f} KiB); installed site-packages "
              f"{total / 2**20:.1f} MiB ({without_tooling / 2**20:.1f} MiB without pip)")
        return sizes

    def write_report(self) -> None:
        if not self.sizes:
            return
        path = ROOT / "build" / "bundle-sizes.json"
        path.parent.mkdir(exist_ok=True)
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError):
            report = {}
        report.update(self.sizes)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        tmp.replace(path)


@pytest.fixture(scope="module")
def venvs(tmp_path_factory, build_dir):
    # Per-module, not per-test: the install is minutes cold, seconds warm.
    pool = Venvs(tmp_path_factory.mktemp("venvs"), build_dir)
    yield pool
    pool.write_report()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(method: str, url: str, body: dict | None = None, headers: dict | None = None,
          timeout: float = 60) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
    request = urllib.request.Request(url, data=data, method=method, headers={
        **({"Content-Type": "application/json"} if data is not None else {}), **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@contextlib.contextmanager
def serving(venv: Path, bundle: Path, fn: str, store: Path, log_path: Path):
    """`functions-framework` from the venv, serving the bundle; always stopped."""
    port = _free_port()
    env = _clean_env(MODEL_STORE=str(store), API_KEYS=API_KEY, ADMIN_KEY="bundle-admin",
                     PATH=f"{venv / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin")
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(venv / "bin" / "functions-framework"), "--target", fn,
             "--source", str(bundle / "main.py"), "--port", str(port), "--host", "127.0.0.1"],
            cwd=bundle, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 90
            while True:
                if process.poll() is not None:
                    pytest.fail(f"{fn} server exited with {process.returncode}:\n"
                                f"{log_path.read_text(errors='replace')[-4000:]}")
                try:
                    _http("GET", f"{url}/health", timeout=30)
                    break
                except (urllib.error.URLError, ConnectionError, OSError):
                    if time.monotonic() > deadline:
                        pytest.fail(f"{fn} server not answering after 90 s:\n"
                                    f"{log_path.read_text(errors='replace')[-4000:]}")
                    time.sleep(0.2)
            yield process, url
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_bundle_venv_has_runtime_dependencies_only(fn, venvs, build_dir, tmp_path):
    venv = venvs.for_function(fn)
    python = str(venv / "bin" / "python")
    probe = (
        "import importlib.metadata as m, importlib.util as u, json\n"
        "print(json.dumps({'dists': sorted(d.metadata['Name'] for d in m.distributions()),\n"
        f"  'modules': {{n: u.find_spec(n) is not None for n in {list(OFFLINE_MODULES)!r}}}}}))\n"
    )
    result = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=60,
                            cwd=tmp_path, env=_clean_env())
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    dists = {package._normalise(d) for d in found["dists"]}
    assert not OFFLINE_DISTRIBUTIONS & dists, OFFLINE_DISTRIBUTIONS & dists
    assert not any(found["modules"].values()), found["modules"]
    assert {"functions-framework", "onnxruntime", "numpy", "google-cloud-storage",
            "google-cloud-secret-manager"} <= dists
    check = subprocess.run([python, "-m", "pip", "check", "--disable-pip-version-check"],
                           capture_output=True, text=True, timeout=120, env=_clean_env())
    assert check.returncode == 0, check.stdout + check.stderr

    # The venv carries no velocast of its own (so a server can only import the bundle's)...
    outside = subprocess.run([python, "-c", "import velocast"], capture_output=True, text=True,
                             timeout=60, cwd=tmp_path, env=_clean_env())
    assert outside.returncode != 0 and "No module named 'velocast'" in outside.stderr
    # ...and from the bundle folder every runtime module imports with the pinned
    # requirements alone, including the lazily imported cloud clients.
    bundle = build_dir / fn
    modules = ", ".join(f"velocast.{m}" for m in RUNTIME_MODULES if m != "__init__")
    code = (f"import sys, velocast, {modules}\n"
            "import google.cloud.storage, google.cloud.secretmanager_v1, onnxruntime, "
            "functions_framework\n"
            "import main\n"
            "assert not [m for m in sys.modules if m.split('.')[0] in "
            f"{list(OFFLINE_MODULES)!r} or m.startswith('velocast.train')]\n"
            "print(velocast.__file__); print(main.__file__)\n")
    inside = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=bundle, env=_clean_env())
    assert inside.returncode == 0, inside.stderr
    velocast_file, main_file = (Path(line) for line in inside.stdout.split())
    assert velocast_file.resolve() == (bundle / "velocast" / "__init__.py").resolve()
    assert main_file.resolve() == (bundle / "main.py").resolve()


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_bundle_serves_the_old_systems_request(fn, venvs, build_dir, trained_store, tmp_path):
    venv = venvs.for_function(fn)
    bundle = build_dir / fn
    log_path = tmp_path / f"{fn}.log"
    with serving(venv, bundle, fn, trained_store, log_path) as (process, url):
        # The server runs from the bundle, with no PYTHONPATH pointing back at the repo.
        assert Path(f"/proc/{process.pid}/cwd").resolve() == bundle.resolve()
        environ = Path(f"/proc/{process.pid}/environ").read_bytes().split(b"\0")
        assert not [v for v in environ if v.startswith(b"PYTHONPATH=")]

        status, body = _http("POST", url, OLD_BODIES[fn], {"X-API-Key": API_KEY})
        assert status == 200, body
        assert len(body["predictions"]) == 1
        assert body["model"]["task"] == fn
        if fn == "classify":
            assert body["predictions"][0] in (0, 1)
            assert body["label"] == [("faible", "forte")[body["predictions"][0]]]
            assert 0.0 <= body["probabilities"][0] <= 1.0
        else:
            assert body["model"]["type"] == "nn" and body["model"]["metric"] == "r2"
            assert body["predictions"][0] >= 0.0

        status, same = _http("POST", f"{url}/predict", OLD_BODIES[fn], {"X-API-Key": API_KEY})
        assert status == 200 and same["predictions"] == body["predictions"]
        status, health = _http("GET", f"{url}/health")
        assert status == 200 and health["models"], health
        status, error = _http("POST", url, OLD_BODIES[fn], {"X-API-Key": "wrong"})
        assert status == 403 and error["error"]["code"] == "forbidden"

    assert process.poll() is not None  # stopped
    log = log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-4000:]


# -- scripts/cloud.sh -------------------------------------------------------------------

# Stand-ins for terraform and gcloud: bash builtins only, so that PATH can hold
# nothing else. They log their arguments and play a deployed stack.
FAKE_TERRAFORM = r"""#!/bin/bash
printf 'terraform %s\n' "$*" >>"$FAKE_LOG"
case "$*" in
  "version -json") printf '{"terraform_version": "%s"}\n' "${FAKE_TF_VERSION:-1.9.8}" ;;
  *" output -raw api_keys_secret_id") printf 'velocast-api-keys' ;;
  *" output -raw admin_key_secret_id") printf 'velocast-admin-key' ;;
  *" output -raw models_bucket") printf '%s' "${FAKE_BUCKET:-p-velocast-models}" ;;
  *" output -raw trainer_service_account") printf 'velocast-trainer@p.iam.gserviceaccount.com' ;;
  *" output -raw classify_url") printf 'https://classify.example' ;;
  *" output -raw regress_url") printf 'https://regress.example' ;;
esac
exit 0
"""

FAKE_GCLOUD = r"""#!/bin/bash
printf 'gcloud %s\n' "$*" >>"$FAKE_LOG"
case "$*" in
  "auth list "*) printf '%s\n' "${FAKE_ACCOUNT:-}" ;;
  "auth application-default print-access-token") exit "${FAKE_ADC_RC:-0}" ;;
  "secrets versions access latest "*)
    if [[ -n "${FAKE_SECRET:-}" ]]; then printf '%s' "$FAKE_SECRET"; exit 0; fi
    printf 'ERROR: (gcloud.secrets.versions.access) NOT_FOUND: Secret [x] not found or has no versions.\n' >&2
    exit 1 ;;
  "secrets versions add "*)
    # Test double only: keep what would have been sent to Secret Manager.
    payload="$(</dev/stdin)"
    printf '%s' "$payload" >"$FAKE_ADDED" ;;
esac
exit 0
"""


@pytest.fixture
def fake_cloud(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("terraform", FAKE_TERRAFORM), ("gcloud", FAKE_GCLOUD)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    for tool in ("mktemp", "rm"):  # the only external commands cloud.sh needs after its checks
        os.symlink(shutil.which(tool), bin_dir / tool)
    tfvars = tmp_path / "terraform.tfvars"
    tfvars.write_text('project_id = "velocast-test-123"\nregion = "europe-west9"\n')
    log = tmp_path / "calls.log"
    log.touch()
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "TFVARS": str(tfvars),
           "FAKE_LOG": str(log), "FAKE_ADDED": str(tmp_path / "added"),
           "FAKE_ACCOUNT": "ana@example.com", "LANG": "C.UTF-8"}
    return env, log, tmp_path


def _cloud(command: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([shutil.which("bash"), str(CLOUD_SCRIPT), command], input=stdin,
                          capture_output=True, text=True, timeout=60, env=env, cwd="/")


def test_cloud_script_is_valid_bash():
    assert subprocess.run(["bash", "-n", str(CLOUD_SCRIPT)]).returncode == 0
    if shutil.which("shellcheck"):
        result = subprocess.run(["shellcheck", str(CLOUD_SCRIPT)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout


def test_cloud_deploy_without_terraform_or_gcloud_says_what_to_install(tmp_path):
    empty = tmp_path / "empty-bin"  # PATH with neither terraform nor gcloud (nor anything)
    empty.mkdir()
    result = _cloud("deploy", {"PATH": str(empty), "HOME": str(tmp_path)})
    assert result.returncode != 0
    assert "terraform is not on PATH" in result.stderr
    assert "https://developer.hashicorp.com/terraform/install" in result.stderr


@pytest.mark.parametrize("command", ["plan", "deploy", "destroy", "publish", "api-key", "admin-key"])
def test_cloud_commands_check_gcloud(fake_cloud, command):
    env, _, _ = fake_cloud
    (Path(env["PATH"]) / "gcloud").unlink()
    result = _cloud(command, env)
    assert result.returncode != 0
    assert "gcloud (the Google Cloud CLI) is not on PATH" in result.stderr
    assert "gcloud auth login" in result.stderr


def test_cloud_checks_terraform_version(fake_cloud):
    env, _, _ = fake_cloud
    result = _cloud("plan", {**env, "FAKE_TF_VERSION": "1.4.6"})
    assert result.returncode != 0 and "too old" in result.stderr and ">= 1.5" in result.stderr


def test_cloud_needs_an_active_account_and_adc(fake_cloud):
    env, _, _ = fake_cloud
    result = _cloud("deploy", {**env, "FAKE_ACCOUNT": ""})
    assert result.returncode != 0
    assert "no active account" in result.stderr and "gcloud auth login" in result.stderr
    result = _cloud("deploy", {**env, "FAKE_ADC_RC": "1"})
    assert result.returncode != 0
    assert "gcloud auth application-default login" in result.stderr


def test_cloud_needs_tfvars_with_a_real_project(fake_cloud):
    env, _, tmp = fake_cloud
    result = _cloud("deploy", {**env, "TFVARS": str(tmp / "missing.tfvars")})
    assert result.returncode != 0
    assert ("copy terraform/terraform.tfvars.example to terraform/terraform.tfvars and set "
            "project_id") in result.stderr
    example = tmp / "example.tfvars"
    example.write_text((ROOT / "terraform" / "terraform.tfvars.example").read_text())
    result = _cloud("deploy", {**env, "TFVARS": str(example)})
    assert result.returncode != 0 and "my-gcp-project" in result.stderr


def test_cloud_deploy_inits_and_applies_with_the_tfvars(fake_cloud):
    env, log, _ = fake_cloud
    built = (ROOT / "build" / "classify" / "main.py").exists() and \
        (ROOT / "build" / "regress" / "main.py").exists()
    if not built:
        subprocess.run([sys.executable, str(PACKAGE_SCRIPT)], check=True, capture_output=True)
    result = _cloud("deploy", {**env, "AUTO_APPROVE": "1"})
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    tf = [c for c in calls if c.startswith("terraform -chdir=")]
    assert tf[0] == f"terraform -chdir={ROOT / 'terraform'} init -input=false"
    assert tf[1] == (f"terraform -chdir={ROOT / 'terraform'} apply -var-file={env['TFVARS']} "
                     "-auto-approve")
    assert "https://classify.example" in result.stderr and "make api-key" in result.stderr


def test_cloud_api_key_adds_a_key_and_keeps_the_old_ones(fake_cloud):
    env, log, tmp = fake_cloud
    result = _cloud("api-key", {**env, "FAKE_SECRET": "old1\nold2\n"})
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert len(key) >= 40 and "\n" not in key  # token_urlsafe(32): 43 chars
    assert (tmp / "added").read_text().split("\n") == [key, "old1", "old2"]
    assert "gcloud secrets versions add velocast-api-keys --project=velocast-test-123 " \
           "--data-file=-" in log.read_text()
    assert "KEEP_ONLY_NEW=1" in result.stderr  # how to retire the old keys
    assert key not in log.read_text()  # never on a command line

    again = _cloud("api-key", {**env, "FAKE_SECRET": "old1\nold2\n", "KEEP_ONLY_NEW": "1"})
    assert again.returncode == 0, again.stderr
    assert (tmp / "added").read_text().split("\n") == [again.stdout.strip()]
    assert again.stdout.strip() != key


def test_cloud_api_key_on_an_empty_secret(fake_cloud):
    env, _, tmp = fake_cloud
    result = _cloud("api-key", env)  # the fake secret has no version yet
    assert result.returncode == 0, result.stderr
    assert (tmp / "added").read_text().split("\n") == [result.stdout.strip()]


def test_cloud_admin_key_replaces_the_admin_key(fake_cloud):
    env, log, tmp = fake_cloud
    result = _cloud("admin-key", {**env, "FAKE_SECRET": "previous-admin"})
    assert result.returncode == 0, result.stderr
    assert (tmp / "added").read_text().split("\n") == [result.stdout.strip()]
    assert "secrets versions add velocast-admin-key" in log.read_text()
    assert "secrets versions access" not in log.read_text()


def test_cloud_publish_copies_a_folder_store_write_once(fake_cloud, fake_gcs, trained_store):
    from velocast import registry

    env, log, _ = fake_cloud
    bucket = fake_gcs.new_bucket("publish")
    env = {**env, **fake_gcs.env, "FAKE_BUCKET": bucket, "FROM": str(trained_store)}
    result = _cloud("publish", env)
    assert result.returncode == 0, result.stderr
    objects = sorted(p.relative_to(trained_store).as_posix()
                     for p in trained_store.rglob("*") if p.is_file())
    assert f"{len(objects)} object(s) copied, 0 already there" in result.stderr
    destination = fake_gcs.store(bucket)
    assert destination.list("") == objects
    assert {e.task for e in registry.list_entries(destination)} == {"classify", "regress"}

    # Again: nothing is overwritten, nothing fails.
    again = _cloud("publish", env)
    assert again.returncode == 0, again.stderr
    assert f"0 object(s) copied, {len(objects)} already there" in again.stderr
    assert "output -raw models_bucket" in log.read_text()


def test_cloud_publish_refuses_missing_data(fake_cloud):
    env, _, tmp = fake_cloud
    result = _cloud("publish", {**env, "DATA": str(tmp / "nope.csv")})
    assert result.returncode != 0 and "nope.csv not found" in result.stderr
    result = _cloud("publish", {**env, "FROM": str(tmp / "no-store")})
    assert result.returncode != 0 and "is not a folder store" in result.stderr


def test_cloud_retire_keys_keeps_the_newest(fake_cloud):
    env, log, tmp = fake_cloud
    result = _cloud("retire-keys", {**env, "FAKE_SECRET": "newest\nolder\noldest\n"})
    assert result.returncode == 0, result.stderr
    assert (tmp / "added").read_text().split("\n") == ["newest"]
    assert result.stdout == "" and "2 older key(s)" in result.stderr  # no key printed

    result = _cloud("retire-keys", {**env, "FAKE_SECRET": "newest\nolder\noldest", "KEEP": "2"})
    assert result.returncode == 0, result.stderr
    assert (tmp / "added").read_text().split("\n") == ["newest", "older"]

    (tmp / "added").unlink()
    result = _cloud("retire-keys", {**env, "FAKE_SECRET": "only"})
    assert result.returncode == 0 and "nothing to retire" in result.stderr
    assert not (tmp / "added").exists()
    result = _cloud("retire-keys", {**env, "KEEP": "0"})
    assert result.returncode != 0 and "KEEP=0" in result.stderr
