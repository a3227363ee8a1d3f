"""Check terraform/*.tf against the provider schema extracted by scripts/tf_schema.py.

What `terraform validate` would say about argument names, offline: for every
`resource` and `data` block, the type exists, every argument and nested block is
known where it is written (and written as an argument or as a block, as the schema
says), a block the schema allows once appears once, and every required argument
or block is set, directly or through a `dynamic` block. Values, types and
cross-argument rules (ExactlyOneOf, ConflictsWith) are not checked: only
`terraform plan` against a real project sees those.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import hcl2

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_FILE = ROOT / "terraform" / "schema" / "google-provider.json"

# Terraform's own meta-arguments, allowed at the top of a block of that kind.
META = {
    "resource": {"count", "for_each", "depends_on", "lifecycle", "provider", "provisioner", "connection"},
    "data": {"count", "for_each", "depends_on", "lifecycle", "provider"},
}
_CONDITION = {"arguments": {"condition": True, "error_message": True}, "blocks": {}}
LIFECYCLE = {
    "resource": {
        "arguments": {
            "create_before_destroy": False,
            "prevent_destroy": False,
            "ignore_changes": False,
            "replace_triggered_by": False,
        },
        "blocks": {
            "precondition": {**_CONDITION, "required": False, "max_one": False},
            "postcondition": {**_CONDITION, "required": False, "max_one": False},
        },
    },
}
LIFECYCLE["data"] = {"arguments": {}, "blocks": LIFECYCLE["resource"]["blocks"]}
DYNAMIC = {"for_each", "iterator", "labels", "content"}


@dataclass(frozen=True)
class Finding:
    """One problem: file and line (of the offending name when it can be found, else of the block)."""

    file: str
    line: int
    address: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.address}: {self.message}"


def load_schema(path: Path = SCHEMA_FILE) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _unquote(label: str) -> str:
    # python-hcl2 8 keeps the quotes of block labels.
    return label[1:-1] if len(label) >= 2 and label[0] == label[-1] == '"' else label


def _is_block(value: Any) -> bool:
    # python-hcl2 8 marks every block body; `x = {...}` or `x = [{...}]` has no marker.
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) and v.get("__is_block__") for v in value)


def _is_labelled_block(value: Any) -> bool:
    # `dynamic "x" { ... }`: a list of {label: body}, the marker inside the body.
    return (
        isinstance(value, list)
        and bool(value)
        and all(
            isinstance(v, dict) and all(_is_block([body]) for label, body in v.items() if not label.startswith("__"))
            for v in value
        )
    )


@functools.lru_cache(maxsize=256)
def _parse(text: str) -> dict:
    # Cached on the text: the tests re-check copies of terraform/ that differ in one file.
    return hcl2.loads(text)


# Names the Google resources use for the same idea, too far apart for difflib
# (Cloud Scheduler and Cloud Functions 1st gen say region, most others location).
_SYNONYMS = {"location": "region", "region": "location"}


def _suggest(name: str, known: Iterable[str]) -> str:
    known = sorted(known)
    close = [_SYNONYMS[name]] if _SYNONYMS.get(name) in known else []
    close = close or difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _where_else(name: str, schema: dict, prefix: str = "") -> list[str]:
    """Paths of the nested blocks of `schema` where `name` is known (for a misplaced name)."""
    found = []
    for block, sub in schema["blocks"].items():
        path = f"{prefix}{block}"
        if name in sub["arguments"] or name in sub["blocks"]:
            found.append(path)
        found.extend(_where_else(name, sub, path + "."))
    return found


class _Checker:
    def __init__(self, tf_type: str, root: dict | None, allowed: dict, file: str, text: str, address: str):
        self.tf_type, self.root, self.allowed = tf_type, root, allowed
        self.file, self.text, self.address = file, text, address
        kind, labels = address.split(".", 1) if address.startswith(("data.", "provider.")) else ("resource", address)
        quoted = r"\s+".join(f'"{re.escape(label)}"' for label in labels.split(".", 1))
        header = re.search(rf"^{kind}\s+{quoted}", text, re.M)
        self.start = header.start() if header else 0
        self.findings: list[Finding] = []

    def report(self, message: str, name: str | None = None) -> None:
        at = self.start
        if name is not None:  # first place after the block's header where `name` is written
            m = re.compile(rf'^[ \t]*(?:{re.escape(name)}[ \t]*[={{]|dynamic[ \t]+"{re.escape(name)}")', re.M)
            found = m.search(self.text, self.start)
            at = found.start() if found else at
        self.findings.append(Finding(self.file, self.text.count("\n", 0, at) + 1, self.address, message))

    def unknown(self, what: str, name: str, path: str, schema: dict, extra: set[str]) -> None:
        place = f"in {path}" if path else "at the top level"
        known = set(schema["arguments"]) | set(schema["blocks"]) | extra
        hint = _suggest(name, known)
        elsewhere = [p for p in _where_else(name, self.root) if p != path]
        if elsewhere:
            hint += f"; {name} belongs in {' or '.join(elsewhere)}"
        self.report(f'unknown {what} "{name}" {place}{hint}', name)

    def body(self, body: dict, schema: dict, path: str, meta: set[str], kind: str) -> None:
        present: set[str] = set()
        for key, value in body.items():
            if key.startswith("__"):
                continue
            if key in meta:
                if key == "lifecycle":
                    for occurrence in value if _is_block(value) else []:
                        self.body(occurrence, LIFECYCLE[kind], "lifecycle", set(), kind)
                continue
            if key == "dynamic" and _is_labelled_block(value):
                for entry in value:
                    for label, dyn in entry.items():
                        if not label.startswith("__"):
                            present.add(self.dynamic(_unquote(label), dyn, schema, path, kind))
                continue
            present.add(key)
            self.name(key, value, schema, path, kind, meta)
        self.required(present, schema, path)

    def name(self, key: str, value: Any, schema: dict, path: str, kind: str, meta: set[str]) -> None:
        where = f"{path}.{key}" if path else key
        if key in schema["arguments"]:
            if _is_block(value):
                self.report(f'"{where}" is an argument, not a block: write {key} = ...', key)
        elif key in schema["blocks"]:
            sub = schema["blocks"][key]
            if not _is_block(value):
                self.report(f'"{where}" is a block, not an argument: write {key} {{ ... }} (or dynamic "{key}")', key)
                return
            if sub["max_one"] and len(value) > 1:
                self.report(f'block "{where}" may appear at most once, found {len(value)}', key)
            for occurrence in value:
                self.body(occurrence, sub, where, set(), kind)
        elif (self.tf_type, where) not in self.allowed:
            self.unknown("block" if _is_block(value) else "argument", key, path, schema, meta)

    def dynamic(self, label: str, dyn: dict, schema: dict, path: str, kind: str) -> str:
        where = f"{path}.{label}" if path else label
        if label not in schema["blocks"]:
            if (self.tf_type, where) not in self.allowed:
                self.unknown("dynamic block", label, path, schema, set())
            return label
        for key in dyn:
            if not key.startswith("__") and key not in DYNAMIC:
                self.report(f'dynamic "{where}": unknown argument "{key}"{_suggest(key, DYNAMIC)}', label)
        for key in ("for_each", "content"):
            if key not in dyn:
                self.report(f'dynamic "{where}": missing "{key}"', label)
        content = dyn.get("content")
        for occurrence in content if _is_block(content) else []:
            self.body(occurrence, schema["blocks"][label], where, set(), kind)
        return label

    def required(self, present: set[str], schema: dict, path: str) -> None:
        place, block = (f" in {path}", path.rsplit(".", 1)[-1]) if path else ("", None)
        for name, required in sorted(schema["arguments"].items()):
            if required and name not in present:
                self.report(f'missing required argument "{name}"{place}', block)
        for name, sub in sorted(schema["blocks"].items()):
            if sub["required"] and name not in present:
                self.report(f'missing required block "{name}"{place}', block)


def check_file(path: Path, schema: dict, allowed: dict[tuple[str, str], Any], root: Path) -> list[Finding]:
    text = path.read_text(encoding="utf-8")
    doc = _parse(text)
    shown = str(path.relative_to(root.parent)) if path.is_relative_to(root.parent) else str(path)
    findings: list[Finding] = []
    for kind in ("resource", "data"):
        for entry in doc.get(kind, []):
            for raw_type, named in entry.items():
                if raw_type.startswith("__"):
                    continue
                tf_type = _unquote(raw_type)
                for raw_name, body in named.items():
                    if raw_name.startswith("__"):
                        continue
                    name = _unquote(raw_name)
                    address = f"{'data.' if kind == 'data' else ''}{tf_type}.{name}"
                    type_schema = schema[kind].get(tf_type)
                    checker = _Checker(tf_type, type_schema, allowed, shown, text, address)
                    if type_schema is None:
                        checker.report(_unknown_type(kind, tf_type, schema))
                    else:
                        checker.body(body, type_schema, "", META[kind], kind)
                    findings.extend(checker.findings)
    for entry in doc.get("provider", []):
        for raw_name, body in entry.items():
            name = _unquote(raw_name)
            if raw_name.startswith("__"):
                continue
            checker = _Checker(name, schema["provider"].get(name), allowed, shown, text, f"provider.{name}")
            if checker.root is None:
                checker.report(f'no schema for provider "{name}": add its bindings to scripts/tf_schema.py')
            else:
                checker.body(body, checker.root, "", set(), "provider")
            findings.extend(checker.findings)
    return findings


def _unknown_type(kind: str, tf_type: str, schema: dict) -> str:
    versions = " and ".join(f"hashicorp/{p} {v['version']}" for p, v in sorted(schema["providers"].items()))
    if tf_type in schema["known_types"][kind]:
        return f'{kind} type "{tf_type}" exists but is not in {SCHEMA_FILE.name}: run make tf-schema'
    hint = _suggest(tf_type, schema["known_types"][kind])
    return f'unknown {kind} type "{tf_type}": not in {versions}{hint}'


def check_dir(tf_dir: Path, schema: dict, allowed: dict[tuple[str, str], Any]) -> list[Finding]:
    """Findings for every *.tf file of tf_dir (new files are picked up by the glob)."""
    findings: list[Finding] = []
    for path in sorted(tf_dir.glob("*.tf")):
        findings.extend(check_file(path, schema, allowed, tf_dir))
    return findings
