"""A provider-free cut of terraform/ that the real terraform binary can plan offline:
the `functions` variable as variables.tf declares it, the `functions` and
`memory_mib` locals as functions.tf computes them, and the function resource's
lifecycle preconditions on a built-in `terraform_data` resource (no provider
download). `terraform plan` then resolves the optional() defaults and runs every
validation and precondition as a real plan would, in about 0.3 s a plan.
Used by test_terraform_functions_plan.py and test_adding_a_function.py.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path


def _braced(text: str, start: int) -> str:
    """text[start:] up to the brace closing the first `{` after start."""
    depth, i = 0, text.index("{", start)
    while True:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
        if depth == 0:
            return text[start:i]


def _extract(path: Path, pattern: str) -> str:
    text = path.read_text(encoding="utf-8")
    match = re.search(pattern, text, re.M)
    assert match, f"{pattern!r} not found in {path.name}"
    return _braced(text, match.start())


def terraform(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["terraform", f"-chdir={folder}", *args, "-no-color"], capture_output=True,
                          text=True, timeout=120, env={"PATH": "/usr/bin:/bin:/usr/local/bin",
                                                       "TF_CLI_CONFIG_FILE": "/dev/null",
                                                       "CHECKPOINT_DISABLE": "1"})


def functions_module(tf_dir: Path, folder: Path) -> Path:
    """Write the cut of `tf_dir` into `folder` and `terraform init` it."""
    variable = _extract(tf_dir / "variables.tf", r'^variable "functions" \{')
    functions_tf = tf_dir / "functions.tf"
    local_functions = _extract(functions_tf, r"^  functions = \{")
    local_memory = _extract(functions_tf, r"^  memory_mib = \{")
    resource = _extract(functions_tf, r'^resource "google_cloudfunctions2_function" "fn" \{')
    lifecycle = _braced(resource, resource.index("lifecycle {"))
    (folder / "main.tf").write_text(
        f"{variable}\n\nlocals {{\n{local_functions}\n\n{local_memory}\n}}\n\n"
        f'resource "terraform_data" "fn" {{\n  for_each = local.functions\n  input = each.value\n\n'
        f"  {lifecycle}\n}}\n\noutput \"functions\" {{\n  value = local.functions\n}}\n",
        encoding="utf-8")
    init = terraform(folder, "init", "-input=false", "-backend=false")
    assert init.returncode == 0, init.stdout + init.stderr
    return folder


def plan(module: Path, functions: dict | None = None) -> subprocess.CompletedProcess:
    args = ["plan", "-input=false", "-out=plan.out"]
    if functions is not None:
        (module / "case.tfvars.json").write_text(json.dumps({"functions": functions}))
        args.append("-var-file=case.tfvars.json")
    return terraform(module, *args)


def resolved(module: Path, functions: dict | None = None) -> dict:
    """local.functions as the plan computes it."""
    result = plan(module, functions)
    assert result.returncode == 0, result.stdout + result.stderr
    shown = terraform(module, "show", "-json", "plan.out")
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)["planned_values"]["outputs"]["functions"]["value"]
