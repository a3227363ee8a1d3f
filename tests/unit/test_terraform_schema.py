"""terraform/*.tf use only arguments and blocks the Google provider knows, where it knows them.

The offline stand-in for `terraform validate` (which needs the provider binary):
tests/tf_schema_check.py walks every resource, data and provider block against
terraform/schema/google-provider.json (hashicorp/google 6.50.0, extracted by
`make tf-schema`). Every terraform/*.tf is checked, so new files are covered the
day they land; the planted cases show that a mistake fails with a message naming
the file, the line, the resource address, the name and the closest known name.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import textwrap
from pathlib import Path

import pytest

from tests.tf_schema_check import Finding, check_dir, load_schema

ROOT = Path(__file__).resolve().parents[2]
TF_DIR = ROOT / "terraform"

# Arguments terraform/ needs from a provider release newer than the extracted
# schema (6.50.0), which the check would otherwise call unknown. One entry per
# argument, never a whole resource: (type, dotted path) -> (first release that
# has it, its docs). Raise the lower bound in versions.tf to that release too.
# An entry reads (placeholders in capitals):
#   ("google_TYPE", "BLOCK.ARGUMENT"): (
#       "7.N.0", "https://registry.terraform.io/providers/hashicorp/google/7.N.0/docs/resources/TYPE#ARGUMENT"),
NEWER_THAN_SCHEMA: dict[tuple[str, str], tuple[str, str]] = {}


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


@pytest.fixture(scope="module")
def schema() -> dict:
    return load_schema()


def _extractor():
    spec = importlib.util.spec_from_file_location("tf_schema", ROOT / "scripts" / "tf_schema.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------
# The committed schema
# ---------------------------------------------------------------------------


def test_schema_names_the_packages_and_provider_versions_it_came_from(schema):
    assert schema["providers"]["google"] == {
        "npm": "@cdktf/provider-google@16.12.1",
        "provider": "registry.terraform.io/hashicorp/google",
        "version": "6.50.0",
    }
    assert schema["providers"]["archive"]["provider"] == "registry.terraform.io/hashicorp/archive"
    assert _extractor().PACKAGES["google"] == schema["providers"]["google"]["npm"]


def test_schema_version_is_inside_the_pinned_provider_range(schema):
    versions = (TF_DIR / "versions.tf").read_text(encoding="utf-8")
    google = re.search(r"google = \{[^}]*version\s*=\s*\">=\s*([\d.]+),\s*<\s*(\d+)\"", versions, re.S)
    assert google, "versions.tf no longer pins google as '>= X, < Y'; update this test"
    low, high = _version(google.group(1)), _version(google.group(2))
    assert low <= _version(schema["providers"]["google"]["version"]) < high


def test_schema_holds_every_type_in_use_and_in_flight(schema):
    extractor = _extractor()
    used = extractor.used_types(TF_DIR)
    for kind in ("resource", "data"):
        wanted = used[kind] | extractor.EXTRA_TYPES[kind]
        assert wanted <= set(schema[kind]), f"run make tf-schema: {sorted(wanted - set(schema[kind]))}"
    assert schema["data"]["archive_file"]["arguments"]["output_path"] is True
    assert len(schema["known_types"]["resource"]) > 1000, "the full type list feeds the did-you-mean"


def test_extracted_schema_knows_nesting_and_required_names(schema):
    function = schema["resource"]["google_cloudfunctions2_function"]
    secret_volumes = function["blocks"]["service_config"]["blocks"]["secret_volumes"]
    assert set(secret_volumes["arguments"]) == {"mount_path", "project_id", "secret"}
    assert "secret_volumes" not in function["blocks"]
    assert function["blocks"]["service_config"]["max_one"] is True
    assert function["arguments"]["location"] is True and function["arguments"]["description"] is False
    assert schema["resource"]["google_secret_manager_secret"]["blocks"]["replication"]["required"] is True
    assert "region" in schema["resource"]["google_cloud_scheduler_job"]["arguments"]


# ---------------------------------------------------------------------------
# Today's terraform/
# ---------------------------------------------------------------------------


def test_every_block_in_terraform_matches_the_provider_schema(schema):
    assert list(TF_DIR.glob("*.tf"))
    findings = check_dir(TF_DIR, schema, NEWER_THAN_SCHEMA)
    assert not findings, "terraform/ does not match the provider schema:\n" + "\n".join(map(str, findings))


def test_allow_list_entries_are_newer_documented_and_still_needed(schema):
    versions = (TF_DIR / "versions.tf").read_text(encoding="utf-8")
    low = _version(re.search(r"google = \{[^}]*version\s*=\s*\">=\s*([\d.]+)", versions, re.S).group(1))
    schema_version = _version(schema["providers"]["google"]["version"])
    for (tf_type, path), (release, docs) in NEWER_THAN_SCHEMA.items():
        entry = f"{tf_type} {path}"
        assert _version(release) > schema_version, f"{entry}: {release} is in the schema already; drop the entry"
        assert low >= _version(release), f"{entry}: versions.tf must require google >= {release}"
        assert docs.startswith("https://registry.terraform.io/providers/hashicorp/google/"), entry
        assert tf_type.split("_", 1)[1] in docs, f"{entry}: {docs} is not that resource's page"
        node = schema["resource"][tf_type]
        *parents, name = path.split(".")
        for parent in parents:
            node = node["blocks"][parent]
        assert name not in node["arguments"] and name not in node["blocks"], f"{entry}: known now, drop it"


# ---------------------------------------------------------------------------
# Planted mistakes in a copy of terraform/
# ---------------------------------------------------------------------------


@pytest.fixture
def tf_copy(tmp_path) -> Path:
    copy = tmp_path / "terraform"
    copy.mkdir()
    for path in TF_DIR.glob("*.tf"):
        shutil.copy(path, copy / path.name)
    return copy


def _planted(tf_copy: Path, schema: dict, text: str, allowed=None) -> list[str]:
    """Plant `text` as a new file of the copy; the findings about that file."""
    (tf_copy / "planted.tf").write_text(text, encoding="utf-8")
    findings = check_dir(tf_copy, schema, NEWER_THAN_SCHEMA if allowed is None else allowed)
    assert all(f.file == "terraform/planted.tf" for f in findings), findings
    return [f"{f.line}: {f.address}: {f.message}" for f in findings]


def test_a_misspelt_argument_fails_with_file_line_address_and_suggestion(tf_copy, schema):
    functions = tf_copy / "functions.tf"
    text = functions.read_text(encoding="utf-8")
    assert len(re.findall(r"^\s+available_memory\s+=", text, re.M)) == 1, "the planted anchor moved"
    functions.write_text(re.sub(r"^(\s+)available_memory(\s+)=", r"\1available_memroy\2=", text, flags=re.M))
    line = 1 + text[: text.index("available_memory")].count("\n")

    findings = check_dir(tf_copy, schema, NEWER_THAN_SCHEMA)

    assert findings == [
        Finding(
            "terraform/functions.tf",
            line,
            "google_cloudfunctions2_function.fn",
            'unknown argument "available_memroy" in service_config (did you mean "available_memory"?)',
        )
    ]
    assert str(findings[0]).startswith(f"terraform/functions.tf:{line}: google_cloudfunctions2_function.fn: ")


def _function(body: str) -> str:
    """A Cloud Functions resource with its required arguments on lines 1-3, then `body` from line 4."""
    head = 'resource "google_cloudfunctions2_function" "planted" {\n  name     = "planted"\n  location = "eu"\n'
    return head + textwrap.indent(textwrap.dedent(body), "  ") + "}\n"


FN = "google_cloudfunctions2_function.planted"
BUCKET = "google_storage_bucket.planted"
SECRET = "google_secret_manager_secret.planted"

# case -> (planted.tf, the findings as "line: address: message")
CASES = {
    "block outside its parent": (
        _function("""\
            secret_volumes {
              mount_path = "/s"
              project_id = "p"
              secret     = "s"
            }
        """),
        [f'4: {FN}: unknown block "secret_volumes" at the top level; secret_volumes belongs in service_config'],
    ),
    "missing required arguments and blocks": (
        'resource "google_secret_manager_secret" "planted" {\n  labels = {}\n}\n',
        [
            f'1: {SECRET}: missing required argument "secret_id"',
            f'1: {SECRET}: missing required block "replication"',
        ],
    ),
    "missing required argument inside a block": (
        _function("""\
            service_config {
              secret_volumes {
                mount_path = "/s"
              }
            }
        """),
        [
            f'5: {FN}: missing required argument "project_id" in service_config.secret_volumes',
            f'5: {FN}: missing required argument "secret" in service_config.secret_volumes',
        ],
    ),
    "location where Cloud Scheduler wants region": (
        'resource "google_cloud_scheduler_job" "planted" {\n  name     = "x"\n  location = "europe-west1"\n}\n',
        ['3: google_cloud_scheduler_job.planted: unknown argument "location" at the top level '
         '(did you mean "region"?)'],
    ),
    "a block written as an argument": (
        'resource "google_secret_manager_secret" "planted" {\n  secret_id   = "x"\n  replication = { auto = {} }\n}\n',
        [f'3: {SECRET}: "replication" is a block, not an argument: '
         'write replication { ... } (or dynamic "replication")'],
    ),
    "an argument written as a block": (
        _function("""\
            service_config {
              environment_variables {
                A = 1
              }
            }
        """),
        [f'5: {FN}: "service_config.environment_variables" is an argument, not a block: '
         "write environment_variables = ..."],
    ),
    "a single block repeated": (
        _function("build_config {\n}\nbuild_config {\n}\n"),
        [f'4: {FN}: block "build_config" may appear at most once, found 2'],
    ),
    "a misspelt dynamic block, dynamic content and lifecycle argument": (
        """\
resource "google_storage_bucket" "planted" {
  name     = "x"
  location = "EU"
  dynamic "loging" {
    for_each = []
    content {}
  }
  dynamic "versioning" {
    for_each = [1]
    content {
      enable = true
    }
  }
  lifecycle {
    prevent_destroyed = true
  }
}
""",
        [
            f'4: {BUCKET}: unknown dynamic block "loging" at the top level (did you mean "logging"?)',
            f'11: {BUCKET}: unknown argument "enable" in versioning (did you mean "enabled"?)',
            f'8: {BUCKET}: missing required argument "enabled" in versioning',
            f'15: {BUCKET}: unknown argument "prevent_destroyed" in lifecycle (did you mean "prevent_destroy"?)',
        ],
    ),
    "an unknown resource type": (
        'resource "google_storage_bukcet" "planted" {\n}\n',
        [
            '1: google_storage_bukcet.planted: unknown resource type "google_storage_bukcet": not in '
            'hashicorp/archive 2.7.1 and hashicorp/google 6.50.0 (did you mean "google_storage_bucket"?)'
        ],
    ),
    "a provider type not yet extracted": (
        'data "google_dns_managed_zone" "planted" {\n  name = "x"\n}\n',
        [
            '1: data.google_dns_managed_zone.planted: data type "google_dns_managed_zone" exists but is not in '
            "google-provider.json: run make tf-schema"
        ],
    ),
    "a misspelt provider argument": (
        'provider "google" {\n  alias         = "planted"\n  default_label = {}\n}\n',
        ['3: provider.google: unknown argument "default_label" at the top level (did you mean "default_labels"?)'],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_planted_mistake_fails_with_a_clear_message(tf_copy, schema, case):
    text, expected = CASES[case]
    assert _planted(tf_copy, schema, text) == expected


def test_meta_arguments_and_dynamic_blocks_are_accepted(tf_copy, schema):
    text = """resource "google_secret_manager_secret" "planted" {
  count     = 1
  provider  = google
  secret_id = "x"
  dynamic "replication" {
    for_each = [1]
    iterator = r
    content {
      auto {}
    }
  }
  lifecycle {
    prevent_destroy = true
    ignore_changes  = [labels]
    precondition {
      condition     = true
      error_message = "never"
    }
  }
  depends_on = [google_project_service.this]
}

data "archive_file" "planted" {
  for_each    = toset(["a"])
  type        = "zip"
  output_path = "x.zip"
  source {
    content  = "x"
    filename = "x"
  }
}
"""
    assert _planted(tf_copy, schema, text) == []


def test_only_allow_listed_newer_arguments_pass(tf_copy, schema):
    text = _function("service_config {\n  future_knob = 1\n}\n")
    unknown = [f'5: {FN}: unknown argument "future_knob" in service_config']
    assert _planted(tf_copy, schema, text, allowed={}) == unknown
    entry = ("7.99.0", "https://registry.terraform.io/providers/hashicorp/google/latest/docs")
    fn_type = "google_cloudfunctions2_function"
    assert _planted(tf_copy, schema, text, allowed={(fn_type, "service_config.future_knob"): entry}) == []
    # An entry is for that one path: the same name elsewhere is still unknown.
    assert _planted(tf_copy, schema, text, allowed={(fn_type, "future_knob"): entry}) == unknown
