"""Extract the Terraform schema of the resource types velocast uses into a small JSON.

`terraform init` cannot download the providers here, so `terraform validate` never
runs. The provider schemas are nevertheless published offline inside the prebuilt
CDK for Terraform bindings on npm: per resource, `lib/<resource>/index.js` names
every argument and nested block in snake_case (`synthesizeHclAttributes()` at the
top, one `<path>ToHclTerraform(struct)` function per nested block, each entry
flagged `isBlock`), and `index.d.ts` holds the matching TypeScript `*Config`
interfaces, where an optional argument carries a `?`. This script turns those two
files into resource -> arguments (required or not) -> nested blocks, for the
provider blocks and for the types named in terraform/*.tf plus EXTRA_TYPES, and writes
terraform/schema/google-provider.json, which tests/unit/test_terraform_schema.py reads.

    make tf-schema                       # npm pack into a temporary dir, extract, write
    python scripts/tf_schema.py --lib google=/tmp/x/package/lib --lib archive=...

Computed-only attributes are absent from those functions (they cannot be set), so
they are absent from the JSON too, as they are from what `terraform validate` accepts.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TF_DIR = ROOT / "terraform"
OUT = TF_DIR / "schema" / "google-provider.json"

# HashiCorp stopped publishing prebuilt bindings on 2025-12-10 (the packages are
# archived), so these are the last ones: google 16.12.1 = hashicorp/google 6.50.0,
# archive 11.0.1 = hashicorp/archive 2.7.1. Anything newer goes in the allow-list
# of tests/unit/test_terraform_schema.py.
PACKAGES = {
    "google": "@cdktf/provider-google@16.12.1",
    "archive": "@cdktf/provider-archive@11.0.1",
}

# Types other branches are adding (issues in flight), and a few neighbours they may
# reach for, extracted now so that their files are checked the moment they are merged.
EXTRA_TYPES = {
    "resource": {
        "google_bigquery_connection_iam_member",
        "google_bigquery_table",
        "google_secret_manager_secret_version",
        "google_artifact_registry_repository",
        "google_artifact_registry_repository_iam_member",
        "google_bigquery_connection",
        "google_bigquery_dataset",
        "google_bigquery_dataset_iam_member",
        "google_bigquery_routine",
        "google_cloud_run_service_iam_member",
        "google_cloud_run_v2_job",
        "google_cloud_run_v2_job_iam_member",
        "google_cloud_run_v2_service_iam_member",
        "google_cloud_scheduler_job",
        "google_iam_workload_identity_pool",
        "google_iam_workload_identity_pool_provider",
        "google_project_iam_custom_role",
        "google_project_iam_member",
        "google_service_account_iam_member",
        "google_storage_bucket_iam_member",
    },
    "data": {"archive_file"},
}

_ENTRY = re.compile(
    r'(\w+): \{\s*value: (.*?),\s*isBlock: (true|false),\s*type: "(\w+)",\s*storageClassType: "[^"]*",\s*\}',
    re.S,
)
_NESTED_FN = re.compile(r"(?<!cdktf\.)\b(\w+)ToHclTerraform\b")
_FIELD = re.compile(r"\b(?:struct|this)\??\.(\w+)")
_PLAIN_FN = r"function {name}ToTerraform\(struct\) \{{"


def _braced(text: str, start: int) -> str:
    """The text of the {...} group whose opening brace is at or after `start`."""
    open_at = text.index("{", start)
    depth = 0
    for i in range(open_at, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[open_at + 1 : i]
    raise ValueError("unbalanced braces")


def _interfaces(dts: str) -> dict[str, dict[str, tuple[bool, bool]]]:
    """{interface: {property: (optional, is_array)}} from the .d.ts text."""
    found: dict[str, dict[str, tuple[bool, bool]]] = {}
    # Doc comments may hold unbalanced braces (CEL examples): an interface ends at "}" in column 0.
    for m in re.finditer(r"^export interface (\w+)[^{\n]*\{\n(.*?)^\}$", dts, re.M | re.S):
        props = {}
        for p in re.finditer(r"^    readonly (\w+)(\??): ([^\n]*)", m.group(2), re.M):
            props[p.group(1)] = (p.group(2) == "?", "[]" in p.group(3))
        found[m.group(1)] = props
    return found


def _plain_names(js: str, fn: str | None) -> set[str]:
    """Names returned by synthesizeAttributes() / <fn>ToTerraform: the cross-check."""
    if fn is None:
        body = _braced(js, js.index("synthesizeAttributes() {") + len("synthesizeAttributes() "))
    else:
        m = re.search(_PLAIN_FN.format(name=fn), js)
        if m is None:
            return set()
        body = _braced(js, m.end() - 1)
        body = body[body.rfind("return {") :]
    return set(re.findall(r"^\s+(\w+): ", body, re.M))


def _block(js: str, dts: dict, fn: str | None, interface: str, where: str, renamed: dict) -> dict:
    """Schema of one block: the resource body (fn None) or the nested block `fn`."""
    if fn is None:
        start = js.index("synthesizeHclAttributes() {")
    else:
        m = re.search(rf"function {fn}ToHclTerraform\(struct\) \{{", js)
        if m is None:
            raise ValueError(f"{where}: no {fn}ToHclTerraform")
        start = m.start()
    body = _braced(js, start)
    attrs_at = body.find("const attrs = {")
    entries = _ENTRY.findall(_braced(body, attrs_at)) if attrs_at >= 0 else []
    props = dts.get(interface)
    if props is None:
        raise ValueError(f"{where}: no interface {interface} in index.d.ts")
    names = {e[0] for e in entries}
    plain = _plain_names(js, fn)
    if names != plain:
        raise ValueError(f"{where}: HCL and plain synthesis disagree: {sorted(names ^ plain)}")
    out: dict = {"arguments": {}, "blocks": {}}
    for name, value, is_block, _kind in entries:
        field = _FIELD.search(value)
        if field is None:
            raise ValueError(f"{where}.{name}: cannot read the field in {value!r}")
        prop = field.group(1).lstrip("_")
        if fn is None:  # config.buildAttribute lands in this._build: names clashing with cdktf's get renamed
            prop = renamed.get(prop, prop)
        if prop not in props:
            raise ValueError(f"{where}.{name}: {interface} has no property {prop}")
        optional, is_array = props[prop]
        if is_block == "true":
            nested = _NESTED_FN.search(value)
            if nested is None:
                raise ValueError(f"{where}.{name}: block without a conversion function")
            child = nested.group(1)
            schema = _block(js, dts, child, child[0].upper() + child[1:], f"{where}.{name}", renamed)
            schema["required"] = not optional
            schema["max_one"] = not is_array
            out["blocks"][name] = schema
        else:
            out["arguments"][name] = not optional
    return out


def _resource(lib_dir: Path) -> tuple[str, dict]:
    # The biggest resources (container_cluster, ...) keep their nested blocks in index-structs/.
    js = "\n".join(p.read_text(encoding="utf-8") for p in sorted(lib_dir.rglob("*.js")))
    dts = _interfaces("\n".join(p.read_text(encoding="utf-8") for p in sorted(lib_dir.rglob("*.d.ts"))))
    renamed = dict(re.findall(r"this\._(\w+)(?:\.internalValue)? = config\.(\w+);", js))
    m = re.search(r'^(\w+)\.tfResourceType = "(\w+)";', js, re.M)
    if m is None:
        raise ValueError(f"{lib_dir}: no tfResourceType")
    cls, tf_type = m.groups()
    return tf_type, _block(js, dts, None, f"{cls}Config", tf_type, renamed)


def _type_dirs(lib: Path) -> dict[tuple[str, str], Path]:
    """(kind, type) -> directory, read from the tfResourceType line of every binding."""
    found = {}
    for index in sorted(lib.glob("*/index.js")):
        with index.open(encoding="utf-8") as fh:
            text = fh.read()
        m = re.search(r'^\w+\.tfResourceType = "(\w+)";', text, re.M)
        kind = re.search(r"extends cdktf\.Terraform(DataSource|Resource) \{", text)
        if m and kind:  # the provider's own binding has a tfResourceType too
            found[("data" if kind.group(1) == "DataSource" else "resource", m.group(1))] = index.parent
    return found


def used_types(tf_dir: Path = TF_DIR) -> dict[str, set[str]]:
    """Types of the resource and data blocks of tf_dir/*.tf (terraform fmt puts them at column 0)."""
    used: dict[str, set[str]] = {"resource": set(), "data": set()}
    for path in sorted(tf_dir.glob("*.tf")):
        for kind, tf_type in re.findall(r'^(resource|data) "([\w-]+)"', path.read_text(encoding="utf-8"), re.M):
            used[kind].add(tf_type)
    return used


def _provider_version(lib: Path) -> tuple[str, str, str]:
    package = json.loads((lib.parent / "package.json").read_text(encoding="utf-8"))
    provider = package["cdktf"]["provider"]
    return package["name"] + "@" + package["version"], provider["name"], provider["version"]


def build(libs: dict[str, Path], wanted: dict[str, set[str]]) -> dict:
    doc: dict = {
        "_comment": "Generated by scripts/tf_schema.py (make tf-schema) from the CDKTF bindings; do not edit.",
        "providers": {},
        "known_types": {"resource": [], "data": []},
        "provider": {},
        "resource": {},
        "data": {},
    }
    for provider, lib in sorted(libs.items()):
        package, registry_name, version = _provider_version(lib)
        doc["providers"][provider] = {"npm": package, "provider": registry_name, "version": version}
        doc["provider"][provider] = _resource(lib / "provider")[1]
        dirs = _type_dirs(lib)
        for kind, tf_type in sorted(dirs):
            doc["known_types"][kind].append(tf_type)
            if tf_type in wanted[kind]:
                _type, schema = _resource(dirs[(kind, tf_type)])
                doc[kind][tf_type] = {"provider": provider, **schema}
    for kind in ("resource", "data"):
        doc["known_types"][kind].sort()
        missing = wanted[kind] - set(doc[kind])
        if missing:
            raise SystemExit(f"no schema for {kind} types {sorted(missing)} in {sorted(libs)}")
    return doc


def _npm_pack(spec: str, into: Path) -> Path:
    """npm pack `spec` into `into`, unpack it, return its lib/ directory."""
    name = subprocess.run(
        ["npm", "pack", "--silent", spec], cwd=into, check=True, capture_output=True, text=True
    ).stdout.split()[-1]
    target = into / name.removesuffix(".tgz")
    with tarfile.open(into / name) as tar:
        tar.extractall(target, filter="data")
    return target / "package" / "lib"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lib", action="append", default=[], metavar="PROVIDER=DIR",
                        help="an unpacked package's lib/ directory (default: npm pack into a temporary dir)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    wanted = used_types()
    for kind in wanted:
        wanted[kind] |= EXTRA_TYPES[kind]
    with tempfile.TemporaryDirectory(prefix="tf-schema-") as tmp:
        libs = {p: Path(d) for p, d in (item.split("=", 1) for item in args.lib)}
        for provider, spec in PACKAGES.items():
            if provider not in libs:
                print(f"npm pack {spec}", file=sys.stderr)
                libs[provider] = _npm_pack(spec, Path(tmp))
        doc = build(libs, wanted)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"{args.out.relative_to(ROOT)}: {len(doc['resource'])} resource and {len(doc['data'])} data types",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
