"""`var.functions` run by the real terraform binary, offline, on the provider-free
cut of terraform/ that tests/tf_plan.py makes: defaults, every validation and every
plan-time precondition, as a real plan applies them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.tf_plan import functions_module, plan, resolved
from velocast.core.tasks import TASK_NAMES

ROOT = Path(__file__).resolve().parents[2]
TF_DIR = ROOT / "terraform"

pytestmark = pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform binary not on PATH")


@pytest.fixture(scope="module")
def module(tmp_path_factory) -> Path:
    return functions_module(TF_DIR, tmp_path_factory.mktemp("tf-functions"))


def refused(module: Path, functions: dict) -> str:
    result = plan(module, functions)
    assert result.returncode != 0, f"accepted {functions}"
    return " ".join((result.stdout + result.stderr).split())


def test_defaults_give_one_function_per_task_with_the_old_sizes(module):
    functions = resolved(module)
    assert set(functions) == set(TASK_NAMES)
    for name, fn in functions.items():
        assert fn["entry_point"] == name and fn["runtime"] == "python312"
        assert (fn["cpu"], fn["min_instances"], fn["max_instances"]) == ("1", 0, 5)
        assert (fn["concurrency"], fn["timeout_seconds"]) == (8, 60)
    assert functions["classify"]["memory"] == "512Mi" and functions["regress"]["memory"] == "1Gi"


def test_a_third_function_is_one_entry_and_left_out_attributes_take_defaults(module):
    functions = resolved(module, {
        "classify": {"description": "velocast: c"},
        "regress": {"description": "velocast: r", "memory": "1Gi"},
        "peak": {"description": "velocast: p", "cpu": "2", "memory": "2Gi", "max_instances": 3},
    })
    assert functions["peak"] == {
        "description": "velocast: p", "entry_point": "peak", "runtime": "python312",
        "memory": "2Gi", "cpu": "2", "min_instances": 0, "max_instances": 3, "concurrency": 8,
        "timeout_seconds": 60, "memory_mib": 2048, "max_memory_mib": 8192, "min_memory_mib": 128,
    }


@pytest.mark.parametrize("entry, message", [
    ({"memory": "3Gi"}, "functions[*].memory must be one of"),
    ({"cpu": "3"}, "functions[*].cpu must be one of"),
    ({"runtime": "python27"}, "functions[*].runtime must be"),
    ({"entry_point": "not-python"}, "functions[*].entry_point must be a Python function name"),
    ({"min_instances": -1}, "functions[*].min_instances must be a whole number"),
    ({"max_instances": 0}, "functions[*].max_instances must be a whole number"),
    ({"concurrency": 1.5}, "functions[*].concurrency must be a whole number"),
    ({"timeout_seconds": 3601}, "functions[*].timeout_seconds must be a whole number"),
    ({"description": " "}, "functions[*].description must be 1-512 chars"),
])
def test_every_attribute_is_validated(module, entry, message):
    assert message in refused(module, {"classify": {"description": "velocast: c", **entry}})


@pytest.mark.parametrize("functions", [{}, {"Classify": {"description": "x"}},
                                       {"tenletters": {"description": "x"}}])
def test_keys_are_validated(module, functions):
    assert "functions needs at least one entry" in refused(module, functions)


def test_a_missing_description_is_a_type_error(module):
    assert "attribute \"description\" is required" in refused(module, {"classify": {}})


@pytest.mark.parametrize("entry, message", [
    ({"cpu": "0.333", "concurrency": 1, "memory": "1Gi"}, "does not fit its cpu 0.333: Cloud Run allows 128-512 MiB"),
    ({"cpu": "4", "memory": "1Gi"}, "does not fit its cpu 4: Cloud Run allows 2048-16384 MiB"),
    ({"cpu": "0.583", "concurrency": 2, "memory": "512Mi"}, "concurrency > 1 needs cpu >= 1"),
    ({"min_instances": 6, "max_instances": 5}, "min_instances must not exceed max_instances"),
])
def test_preconditions_refuse_what_cloud_run_would(module, entry, message):
    out = refused(module, {"classify": {"description": "velocast: c", **entry}})
    assert "Resource precondition failed" in out and "functions.classify" in out
    assert message in out


def test_preconditions_accept_the_edges(module):
    functions = resolved(module, {
        "small": {"description": "velocast: s", "cpu": "0.583", "memory": "1Gi", "concurrency": 1},
        "big": {"description": "velocast: b", "cpu": "4", "memory": "2Gi", "min_instances": 5},
    })
    assert set(functions) == {"small", "big"}
