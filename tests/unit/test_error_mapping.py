"""velocast.core.errors: domain errors carry no HTTP; one table maps them at the edge."""

import ast
import pathlib

import pytest

from velocast.core import errors
from velocast.core.features import UnknownCounterError

PACKAGE = pathlib.Path(errors.__file__).parents[1]
# Below the HTTP edge: they may raise domain errors, never an HTTP status.
DOMAIN = [path for layer in ("core", "catalog") for path in (PACKAGE / layer).glob("*.py")
          if path.name != "errors.py"]


def test_every_domain_error_maps_to_one_status_and_code():
    for domain in (errors.NoModelAvailable("m"), errors.UnknownModelChoice("metric", "m"),
                   errors.RecordError(0, "f", "m", "r"), errors.InvalidRequest("m"),
                   errors.InvalidRecords("m")):
        assert not hasattr(domain, "status"), "a domain error decides no HTTP status"
    assert errors.as_http(errors.NoModelAvailable("nothing yet", 7)).headers == {"Retry-After": "7"}
    choice = errors.as_http(errors.UnknownModelChoice("metric", "unknown metric 'x'"))
    assert (choice.status, choice.code, choice.details) == (
        422, "invalid_request", [{"field": "metric", "reason": "unknown metric 'x'"}])
    # A subclass defined elsewhere maps by its base.
    record = errors.as_http(UnknownCounterError(3, "Nowhere"))
    assert (record.status, record.code, record.details[0]["record"]) == (422, "invalid_records", 3)


def test_an_error_without_a_mapping_is_a_bug_not_a_silent_500():
    class Unmapped(errors.Error):
        pass

    with pytest.raises(TypeError, match="Unmapped"):
        errors.as_http(Unmapped("?"))


def test_domain_modules_never_build_an_http_error():
    assert len(DOMAIN) > 10
    for path in DOMAIN:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)} | \
            {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
        assert "ApiError" not in used, f"{path.name} builds an HTTP error; raise a domain error"
