"""README "Adding a function", followed word for word on a copy of the project.

The README's own snippets and commands (the Task entry, the copy-and-rename of a
function folder, the Terraform map entry) are applied to a copy of shared/velocast, functions/, the
packaging script and terraform/; then the new function is packaged, given a model
through the registry, served by functions-framework from its bundle over loopback
HTTP, listed by the models CLI, and planned by terraform. Training a new model type
is not part of this test: the model is a real ONNX regressor from `trained_store`,
published for the new task through velocast.catalog.registry.publish like training does.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.tf_plan import functions_module, resolved, terraform
from velocast.dev.bodies import OLD_BODIES
from velocast.dev.servers import FunctionServer

ROOT = Path(__file__).resolve().parents[2]
NAME = "peak"


def walkthrough() -> dict[str, str]:
    """The README section's snippets and commands, by what they are."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## Adding a function\n(.*?)^## ", readme, re.S | re.M)
    assert section, "README has no 'Adding a function' section"
    fences = re.findall(r"^( *)```(\w+)\n(.*?)^ *```", section.group(1), re.S | re.M)
    assert [lang for _, lang, _ in fences] == ["python", "hcl"], fences
    # Strip the list item's indentation only: what is left is what goes in the file.
    task, entry = (re.sub(rf"^{indent}", "", code, flags=re.M) for indent, _, code in fences)
    copy = re.search(r"`cp -r (functions/\w+) (functions/\w+)`, then replace every `(\w+)` by "
                     r"`(\w+)` in\s+`(functions/\w+/main\.py)`", section.group(1))
    assert copy, "the copy-and-rename step is not in the walkthrough"
    source, target, old, new, main = copy.groups()
    return {"task": task, "entry": entry, "source": source, "target": target, "old": old,
            "new": new, "main": main}


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """A copy of the project with the walkthrough applied."""
    steps = walkthrough()
    tree = tmp_path_factory.mktemp("third-function")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".terraform*", ".bundles", "*.tfstate*")
    for folder in ("shared/velocast", "functions", "terraform"):
        shutil.copytree(ROOT / folder, tree / folder, ignore=ignore)
    (tree / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "package.py", tree / "scripts")

    # 1. The Task, at the end of TASKS.
    tasks = tree / "shared" / "velocast" / "core" / "tasks.py"
    text = tasks.read_text(encoding="utf-8")
    end = text.index("\n}\nTASK_NAMES")
    tasks.write_text(text[:end + 1] + steps["task"] + text[end + 1:], encoding="utf-8")
    # 2. The entry point: a copy of another function's folder, renamed.
    assert (steps["target"], steps["new"], steps["main"]) == (f"functions/{NAME}", NAME,
                                                              f"functions/{NAME}/main.py")
    shutil.copytree(tree / steps["source"], tree / steps["target"])
    main = tree / steps["main"]
    main.write_text(re.sub(rf"\b{steps['old']}\b", steps["new"], main.read_text(encoding="utf-8")),
                    encoding="utf-8")
    # 3. The map entry, in the default of variable "functions".
    variables = tree / "terraform" / "variables.tf"
    text = variables.read_text(encoding="utf-8")
    at = text.index("\n", text.index("  default = {", text.index('variable "functions"'))) + 1
    variables.write_text(text[:at] + steps["entry"] + text[at:], encoding="utf-8")
    return tree


def _env(tree: Path, **extra: str) -> dict[str, str]:
    drop = {"MODEL_STORE", "STORAGE_EMULATOR_HOST", "API_KEYS", "ADMIN_KEY", "API_KEYS_FILE",
            "ADMIN_KEY_FILE", "PYTHONPATH"}
    return {**{k: v for k, v in os.environ.items() if k not in drop},
            "PYTHONPATH": str(tree / "shared"), **extra}


def _python(tree: Path, code: str, **env: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], cwd=tree, env=_env(tree, **env),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_copy_is_what_runs(tree):
    out = _python(tree, "import velocast.core.tasks as t; print(t.__file__); print(*t.TASK_NAMES)")
    where, names = out.splitlines()
    assert where.startswith(str(tree)), where
    assert names.split() == ["classify", "regress", NAME]


@pytest.fixture(scope="module")
def bundle(tree) -> Path:
    result = subprocess.run([sys.executable, "scripts/package.py", "--out", str(tree / "build")],
                            cwd=tree, env=_env(tree), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"build/{NAME}/" in result.stdout or f"{NAME}/" in result.stdout, result.stdout
    return tree / "build" / NAME


@pytest.fixture(scope="module")
def store(tree, trained_store, tmp_path_factory) -> Path:
    """A store holding one model for the new task, published through the registry."""
    store = tmp_path_factory.mktemp("peak-store")
    code = f"""
from velocast.catalog import registry
from velocast.catalog.store import LocalStore
source, target = LocalStore({str(trained_store)!r}), LocalStore({str(store)!r})
[entry] = [e for e in registry.list_entries(source, "regress") if e.model_type == "nn"][:1]
card = registry.read_card(source, entry)
for key in ("version", "onnx_path", "card_path", "published_at"):
    card.pop(key, None)
card.update(task={NAME!r}, model_type="peaknn")
print(registry.publish(target, registry.read_model_bytes(source, entry), card).version)
"""
    _python(tree, code)
    return store


def _call(method: str, url: str, body: dict | None = None) -> tuple[int, dict]:
    response = requests.request(method, url, json=body, timeout=30)
    return response.status_code, response.json()


@pytest.fixture(scope="module")
def server(tree, bundle, store):
    # The bundle first on the path: the dev venv's editable velocast (without the new
    # Task) must not be what serves. Finding the Task at all proves it is the bundle's.
    env = _env(tree, MODEL_STORE=str(store), PYTHONPATH=str(bundle))
    with FunctionServer(NAME, source=bundle / "main.py", env=env, cwd=bundle) as running:
        running.wait_ready(ok=lambda status: status == 200)
        yield running.url


def test_the_bundle_is_built_like_the_others(tree, bundle):
    assert (bundle / "main.py").read_text() == (tree / "functions" / NAME / "main.py").read_text()
    assert (bundle / "requirements.txt").read_text() == \
        (ROOT / "functions" / "regress" / "requirements.txt").read_text()
    main = (bundle / "main.py").read_text()
    assert 'Service("peak")' in main and "def peak(request)" in main and "regress" not in main
    assert f'"{NAME}": Task(' in (bundle / "velocast" / "core" / "tasks.py").read_text()
    assert not (bundle / "velocast" / "train").exists()
    for name in ("classify", "regress"):
        assert (tree / "build" / name / "main.py").is_file()


def test_the_new_function_answers_over_call(server):
    status, health = _call("GET", f"{server}/health")
    assert health["task"] == NAME and [m["type"] for m in health["models"]] == ["peaknn"]

    status, body = _call("POST", f"{server}/predict", {"records": OLD_BODIES["regress"]["records"] * 2})
    assert status == 200, body
    # The answer is the Task's response: 0/1 per record, no classifier label.
    assert body["predictions"] in ([0, 0], [1, 1]) and "label" not in body
    assert (body["model"]["task"], body["model"]["type"]) == (NAME, "peaknn")
    assert body["model"]["metric"] == "rmse_log"  # the Task's first metric is its default

    status, models = _call("GET", f"{server}/models")
    assert status == 200 and [m["model_type"] for m in models["models"]] == ["peaknn"]
    status, error = _call("POST", f"{server}/predict", {**OLD_BODIES["regress"], "model_type": "gbdt"})
    assert status == 422 and error["error"]["details"][0]["field"] == "model_type"


def test_the_new_function_answers_bigquery_and_vertex_bodies(server):
    """Its kind (REGRESSION) gives its other callers' outputs: a BigQuery call and a
    Vertex AI instance get the Task's own answer, 0 or 1 per row."""
    record = OLD_BODIES["regress"]["records"][0]
    call = [record["nom_du_compteur"], record["date_et_heure_de_comptage"], 48.8672, 2.3501]
    status, body = _call("POST", f"{server}/predict", {
        "requestId": "r1", "caller": "//bigquery", "sessionUser": "u@example.com",
        "userDefinedContext": {}, "calls": [call, call]})
    assert status == 200, body
    assert body["replies"] in ([0, 0], [1, 1])
    status, body = _call("POST", f"{server}/predict", {"instances": [record], "parameters": {}})
    assert status == 200, body
    assert body["predictions"] in ([0], [1]) and body["modelVersionId"]
    # An output its kind does not have is the caller's error, in BigQuery's shape.
    status, body = _call("POST", f"{server}/predict", {
        "requestId": "r2", "caller": "//bigquery", "sessionUser": "u@example.com",
        "userDefinedContext": {"output": "label"}, "calls": [call]})
    assert status == 400 and "count, interval" in body["errorMessage"]


def test_the_models_cli_lists_it(tree, store):
    result = subprocess.run([sys.executable, "-m", "velocast.models", "--store", str(store),
                             "--task", NAME], cwd=tree, env=_env(tree), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    # Its metrics in the Task's order, the default choice marked by its first metric.
    assert f"{NAME}: 1 model (* = default choice, best by rmse_log)" in result.stdout
    assert re.search(r"TYPE +VERSION +RMSE_LOG +RMSE +MAE +R2", result.stdout), result.stdout


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform binary not on PATH")
def test_terraform_takes_the_entry_with_its_defaults(tree, tmp_path):
    fmt = terraform(tree / "terraform", "fmt", "-check", "-diff", "variables.tf")
    assert fmt.returncode == 0, "the README's map entry is not terraform-fmt clean:\n" + fmt.stdout
    functions = resolved(functions_module(tree / "terraform", tmp_path))
    assert set(functions) == {"classify", "regress", NAME}
    assert functions[NAME]["entry_point"] == NAME
    assert (functions[NAME]["memory"], functions[NAME]["cpu"], functions[NAME]["max_instances"]) == ("512Mi", "1", 5)
