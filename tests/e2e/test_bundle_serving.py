"""A function bundle installed and served the way Cloud Functions does it.

Each bundle (built by scripts/package.py, see tests/unit/test_packaging.py) is installed the
way the platform does it: a fresh venv, `pip install -r requirements.txt` and nothing
else (no repo checkout on sys.path, no PYTHONPATH), then served by that venv's
functions-framework and sent the old system's requests.

The venv install is the slow part (~100 MB of wheels, from the pip cache once
warm); it is done once per distinct requirements.txt for the whole module.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.register_assert_rewrite("tests.bundles", "tests.function_clients")

from tests.bundles import (  # noqa: E402
    FUNCTIONS,
    OFFLINE_DISTRIBUTIONS,
    ROOT,
    RUNTIME_MODULES,
    clean_env,
    package,
)
from tests.function_clients import OLD_BODIES  # noqa: E402
from velocast.dev.servers import FunctionServer  # noqa: E402
from velocast.dev.venvs import (  # noqa: E402
    VENV_SCAFFOLDING,
    VenvError,
    create_venv,
    site_packages,
    sizes_by_distribution,
)

pytest_plugins = ["tests.bundles"]

OFFLINE_MODULES = ("sklearn", "pandas", "skl2onnx", "onnx")
API_KEY = "bundle-test-key"


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
            started = time.perf_counter()
            try:
                venv = create_venv(self.root / f"venv-{digest[:12]}", requirements,
                                   timeout=2100, env=clean_env())
            except VenvError as exc:
                pytest.fail(str(exc))
            print(f"\n{fn}: venv installed in {time.perf_counter() - started:.0f} s")
            self._venvs[digest] = venv
        if fn not in self.sizes:
            self.sizes[fn] = self._measure(fn, venv, digest)
        return venv

    def _measure(self, fn: str, venv: Path, digest: str) -> dict:
        by_top = sizes_by_distribution(site_packages(venv))
        total = sum(by_top.values())
        without_tooling = sum(v for k, v in by_top.items()
                              if k.split(".")[0].lower() not in VENV_SCAFFOLDING)
        bundle = self.build_dir / fn
        files = [p for p in bundle.rglob("*") if p.is_file()]
        sizes = {
            "bundle_files": len(files),
            "bundle_bytes": sum(p.stat().st_size for p in files),
            "zip_bytes": (self.build_dir / f"{fn}.zip").stat().st_size,
            "site_packages_bytes": total,
            "site_packages_bytes_without_pip": without_tooling,
            "largest": dict(list(by_top.items())[:8]),
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
    """`functions-framework` from the venv, serving the bundle from its folder; always
    stopped."""
    env = clean_env(MODEL_STORE=str(store), API_KEYS=API_KEY, ADMIN_KEY="bundle-admin",
                    PATH=f"{venv / 'bin'}:/usr/bin:/bin")
    server = FunctionServer(fn, source=bundle / "main.py", env=env, bin_dir=venv / "bin",
                            cwd=bundle, log=log_path)
    try:
        yield server.start(timeout=90)
    finally:
        server.close()


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
                            cwd=tmp_path, env=clean_env())
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    dists = {package._normalise(d) for d in found["dists"]}
    assert not OFFLINE_DISTRIBUTIONS & dists, OFFLINE_DISTRIBUTIONS & dists
    assert not any(found["modules"].values()), found["modules"]
    assert {"functions-framework", "onnxruntime", "numpy", "google-cloud-storage"} <= dists
    # Keys are files mounted by the platform: no Secret Manager client, no gRPC.
    assert not {"google-cloud-secret-manager", "grpcio"} & dists, dists
    check = subprocess.run([python, "-m", "pip", "check", "--disable-pip-version-check"],
                           capture_output=True, text=True, timeout=120, env=clean_env())
    assert check.returncode == 0, check.stdout + check.stderr

    # The venv carries no velocast of its own (so a server can only import the bundle's)...
    outside = subprocess.run([python, "-c", "import velocast"], capture_output=True, text=True,
                             timeout=60, cwd=tmp_path, env=clean_env())
    assert outside.returncode != 0 and "No module named 'velocast'" in outside.stderr
    # ...and from the bundle folder every runtime module imports with the pinned
    # requirements alone, including the lazily imported cloud clients.
    bundle = build_dir / fn
    modules = ", ".join("velocast." + m.removesuffix("/__init__").replace("/", ".")
                        for m in RUNTIME_MODULES if m != "__init__")
    code = (f"import sys, velocast, {modules}\n"
            "import google.cloud.storage, onnxruntime, "
            "functions_framework\n"
            "import main\n"
            "assert not [m for m in sys.modules if m.split('.')[0] in "
            f"{list(OFFLINE_MODULES)!r} or m.startswith('velocast.train')]\n"
            "print(velocast.__file__); print(main.__file__)\n")
    inside = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=bundle, env=clean_env())
    assert inside.returncode == 0, inside.stderr
    velocast_file, main_file = (Path(line) for line in inside.stdout.split())
    assert velocast_file.resolve() == (bundle / "velocast" / "__init__.py").resolve()
    assert main_file.resolve() == (bundle / "main.py").resolve()


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_bundle_serves_the_old_systems_request(fn, venvs, build_dir, trained_store, tmp_path):
    venv = venvs.for_function(fn)
    bundle = build_dir / fn
    log_path = tmp_path / f"{fn}.log"
    with serving(venv, bundle, fn, trained_store, log_path) as server:
        process, url = server.process, server.url
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
        # The forecast page's files ship in the bundle (velocast/serving/static/) and are served.
        for path, marker in (("/app", b"app/forecast.js"), ("/app/forecast-map.js", b"drawMap")):
            with urllib.request.urlopen(url + path, timeout=30) as page:
                assert page.status == 200 and marker in page.read()

    assert process.poll() is not None  # stopped
    log = log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-4000:]


