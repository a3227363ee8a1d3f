"""Model store on GCS (the real google-cloud-storage client against fake-gcs-server):
the store contract tests/unit/test_store.py runs on a folder, run here on a bucket, and
what only GCS does."""

from __future__ import annotations

import time

import pytest

from tests.unit.test_store import (  # noqa: F401  (collected here too, on the GCS `store`)
    test_written_bytes_read_back,
    test_write_once_refuses_to_overwrite,
    test_concurrent_writers_of_one_name_exactly_one_wins,
    test_reading_a_missing_name_raises_not_found,
    test_list_is_sorted_relative_and_filtered_by_prefix,
    test_pickle_and_joblib_names_are_refused,
    test_unsafe_names_are_refused,
)
from velocast.catalog.store import AlreadyExists, GCSStore, StoreUnavailable, open_store

pytest_plugins = ["tests.gcs_fixtures"]


@pytest.fixture
def store(fake_gcs):
    return fake_gcs.store(prefix="some/prefix")


def test_gcs_uris_with_and_without_prefix_share_one_bucket(fake_gcs_env):
    bucket = fake_gcs_env.new_bucket()
    root = open_store(f"gs://{bucket}")
    nested = open_store(f"gs://{bucket}/team/models")
    nested.write_once("registry/e.json", b"{}")
    root.write_once("top.json", b"{}")

    raw = sorted(b.name for b in fake_gcs_env.client().list_blobs(bucket))
    assert raw == ["team/models/registry/e.json", "top.json"]
    assert root.list() == ["team/models/registry/e.json", "top.json"]
    assert nested.list() == ["registry/e.json"]
    assert nested.read("registry/e.json") == root.read("team/models/registry/e.json")
    # "team/models" must not see a sibling prefix that merely starts the same way.
    root.write_once("team/models2/x.json", b"{}")
    assert nested.list() == ["registry/e.json"]


def test_gcs_second_write_once_is_refused_by_the_server(fake_gcs_env):
    bucket = fake_gcs_env.new_bucket()
    first, second = open_store(f"gs://{bucket}/p"), open_store(f"gs://{bucket}/p")  # two clients
    first.write_once("x.json", b"first", "application/json")
    with pytest.raises(AlreadyExists):
        second.write_once("x.json", b"second")
    blob = fake_gcs_env.client().bucket(bucket).get_blob("p/x.json")
    assert blob.download_as_bytes() == b"first" and blob.content_type == "application/json"


def test_gcs_missing_bucket_is_unavailable_not_empty(fake_gcs_env):
    store = open_store("gs://no-such-bucket-here")
    with pytest.raises(StoreUnavailable):
        store.list()
    with pytest.raises(StoreUnavailable):
        store.write_once("a.json", b"{}")


def test_gcs_unreachable_server_is_unavailable_within_the_retry_deadline():
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project="test", credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": "http://127.0.0.1:9"})
    store = GCSStore("bucket", "p", client=client, timeout=1, retry_deadline=1)
    t0 = time.monotonic()
    for op in (lambda: store.read("a.json"), store.list, lambda: store.write_once("a.json", b"{}")):
        with pytest.raises(StoreUnavailable):
            op()
    assert time.monotonic() - t0 < 15
