"""The Terraform configuration parsed offline, for the Terraform tests (a pytest plugin:
``pytest_plugins = ["tests.terraform_config"]`` gives the `tf` fixture) and the
helpers that read it: resources of a type, every string below a node, the roles a
binding grants, the bindings that name a service account."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import hcl2
import pytest

from velocast.core.tasks import TASK_NAMES

ROOT = Path(__file__).resolve().parents[1]
TF_DIR = ROOT / "terraform"
TF_FILES = sorted(TF_DIR.glob("*.tf"))

# One function (and one runtime service account) per Task.
FUNCTION_SAS = TASK_NAMES
RUNTIME_SAS = (*TASK_NAMES, "trainer")
FUNCTION_ENV = {
    "MODEL_STORE",
    "COUNTS_STORE",
    "GCP_PROJECT",
    "API_KEYS_FILE",
    "ADMIN_KEY_FILE",
    "REFRESH_SECONDS",
    "MAX_RECORDS",
    "LOG_LEVEL",
    "CLASSIFY_URL",
    "ALLOWED_ORIGINS",
}


# ---------------------------------------------------------------------------
# Parsing helpers
# ---------------------------------------------------------------------------


def _unquote(value: Any) -> Any:
    # python-hcl2 8 keeps the quotes of string literals and block labels
    # ("\"python312\"") and adds bookkeeping keys (__is_block__, __comments__,
    # __inline_comments__); older versions do neither. Normalise to plain values
    # so the assertions read naturally and comments never count as config.
    if isinstance(value, str):
        if len(value) >= 2 and value[0] == value[-1] == '"':
            return value[1:-1]
        return value
    if isinstance(value, list):
        return [_unquote(v) for v in value]
    if isinstance(value, dict):
        return {_unquote(k): _unquote(v) for k, v in value.items() if not str(k).startswith("__")}
    return value


def _load(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as fh:
        return _unquote(hcl2.load(fh))


@pytest.fixture(scope="session")
def tf() -> dict[str, dict[str, Any]]:
    """All .tf files merged into {kind: {label: body}} (resources keyed "type.name"),
    parsed once per session for the four Terraform test modules (they only read it)."""
    assert TF_FILES, f"no .tf files in {TF_DIR}"
    merged: dict[str, dict[str, Any]] = {
        "resource": {},
        "data": {},
        "variable": {},
        "output": {},
        "locals": {},
    }
    for path in TF_FILES:
        doc = _load(path)
        for kind in ("resource", "data"):
            for entry in doc.get(kind, []):
                for rtype, named in entry.items():
                    for name, body in named.items():
                        key = f"{rtype}.{name}"
                        assert key not in merged[kind], f"{kind} {key} declared twice"
                        merged[kind][key] = body
        for kind in ("variable", "output"):
            for entry in doc.get(kind, []):
                for name, body in entry.items():
                    assert name not in merged[kind], f"{kind} {name} declared twice"
                    merged[kind][name] = body
        for entry in doc.get("locals", []):
            merged["locals"].update(entry)
    return merged


def _of_type(tf: dict, rtype: str) -> dict[str, Any]:
    return {k: v for k, v in tf["resource"].items() if k.split(".", 1)[0] == rtype}


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)


def _text(node: Any) -> str:
    return "\n".join(_strings(node))


def _block(body: dict, name: str) -> dict:
    """First (only) nested block called `name`."""
    blocks = body.get(name)
    assert blocks, f"missing block {name!r}"
    return blocks[0] if isinstance(blocks, list) else blocks


def _roles(body: dict) -> set[str]:
    """Literal roles a binding grants: `role`, or the keys/values its for_each expands."""
    role = body.get("role", "")
    if "each." not in role:
        return {role}
    return set(re.findall(r"roles/[A-Za-z0-9_.]+", _text(body.get("for_each", ""))))


def _sa_ref(sa: str) -> re.Pattern[str]:
    """A reference to service account `sa`.

    The function accounts are instances of `google_service_account.fn` (for_each
    over local.functions): `fn["classify"]`, or `fn[each.key]` /
    `fn[each.value.function]` inside a resource that iterates over the
    functions, which therefore applies to every one of them.
    """
    if sa in FUNCTION_SAS:
        return re.compile(rf'google_service_account\.fn\[\s*("{sa}"|each\.[A-Za-z0-9_.]+)\s*\]')
    return re.compile(rf"google_service_account\.{sa}\b")


def _iterates_functions(body: dict) -> bool:
    """Does this resource's for_each range over local.functions (every function)?"""
    for_each = _text(body.get("for_each", ""))
    return for_each == "${local.functions}" or "keys(local.functions)" in for_each


def _functions(tf: dict) -> dict[str, Any]:
    """The functions Terraform deploys by default, each with its optional() defaults resolved."""
    variable = tf["variable"]["functions"]
    defaults = _optional_defaults(variable["type"])
    return {name: {**defaults, "entry_point": name, **entry} for name, entry in variable["default"].items()}


def _optional_defaults(type_expr: str) -> dict[str, Any]:
    """{attribute: default} of the optional(type, default) attributes of an object type."""
    found = {}
    for name, kind, default in re.findall(r"(\w+)\s*=\s*optional\((\w+)(?:,\s*([^)]+))?\)", type_expr):
        if default:
            found[name] = default.strip('"') if kind == "string" else float(default)
    return found


def _object_attributes(type_expr: str) -> set[str]:
    """Attribute names of `map(object({...}))`."""
    body = re.search(r"object\(\{(.*)\}\)", type_expr, re.S)
    assert body, type_expr
    return set(re.findall(r"(?:^|,)\s*(\w+)\s*=", body.group(1)))


def _iam_bindings(tf: dict) -> dict[str, Any]:
    return {
        k: v
        for k, v in tf["resource"].items()
        if re.search(r"_iam_(member|binding|policy)$", k.split(".", 1)[0])
    }


def _bindings_of(tf: dict, sa: str) -> dict[str, Any]:
    ref = _sa_ref(sa)
    return {k: v for k, v in _iam_bindings(tf).items() if ref.search(_text(v))}
