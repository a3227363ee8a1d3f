"""Model store: a local folder. The same contract on GCS (real client against
fake-gcs-server) and what only GCS does: tests/e2e/test_store_gcs.py."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.threads import race
from velocast.catalog.store import (
    AlreadyExists,
    GCSStore,
    LocalStore,
    NotFound,
    StoreError,
    StoreUnavailable,
    open_store,
)

# ------------------------------------- both stores (on GCS: tests/e2e/test_store_gcs.py)

@pytest.fixture
def store(tmp_path):
    return LocalStore(tmp_path / "store")


def test_written_bytes_read_back(store):
    store.write_once("models/a/model.onnx", b"\x08\x07onnx")
    assert store.read("models/a/model.onnx") == b"\x08\x07onnx"


def test_write_once_refuses_to_overwrite(store):
    store.write_once("registry/x.json", b"first")
    with pytest.raises(AlreadyExists):
        store.write_once("registry/x.json", b"second")
    assert store.read("registry/x.json") == b"first"


def test_concurrent_writers_of_one_name_exactly_one_wins(store):
    results = race(8, lambda i: store.write_once("race.json", f"writer {i}".encode()))
    winners = [i for i, r in enumerate(results) if r is None]
    assert len(winners) == 1, results
    assert all(isinstance(r, AlreadyExists) for r in results if r is not None), results
    assert store.read("race.json") == f"writer {winners[0]}".encode()


def test_reading_a_missing_name_raises_not_found(store):
    with pytest.raises(NotFound):
        store.read("models/none/model.onnx")


def test_list_is_sorted_relative_and_filtered_by_prefix(store):
    for name in ["registry/regress/b.json", "registry/regress/a.json", "registry/classify/c.json",
                 "models/regress/gbdt/v/model.onnx"]:
        store.write_once(name, b"{}")
    assert store.list() == sorted(["registry/regress/b.json", "registry/regress/a.json",
                                   "registry/classify/c.json", "models/regress/gbdt/v/model.onnx"])
    assert store.list("registry/regress/") == ["registry/regress/a.json", "registry/regress/b.json"]
    assert store.list("registry/cl") == ["registry/classify/c.json"]
    assert store.list("nothing/") == []


@pytest.mark.parametrize("name", ["model.pkl", "m/model.PICKLE", "m/model.joblib", "m/model.pkl.gz"])
def test_pickle_and_joblib_names_are_refused(store, name):
    with pytest.raises(StoreError, match="pickle"):
        store.write_once(name, b"data")
    assert store.list() == []


@pytest.mark.parametrize("name", ["", "/abs", "a/../b", "a//b", "./a", "a\\b"])
def test_unsafe_names_are_refused(store, name):
    with pytest.raises(StoreError):
        store.write_once(name, b"data")


# ------------------------------------------------------------------ local only

def test_local_store_folder_is_created_on_first_write_only(tmp_path):
    store = open_store(str(tmp_path / "new"))
    assert isinstance(store, LocalStore)
    assert store.list() == []
    assert not (tmp_path / "new").exists()
    store.write_once("a/b.json", b"{}")
    assert (tmp_path / "new" / "a" / "b.json").read_bytes() == b"{}"


def test_local_write_leaves_no_temp_files_even_when_refused(tmp_path):
    store = LocalStore(tmp_path)
    store.write_once("d/x.json", b"1")
    with pytest.raises(AlreadyExists):
        store.write_once("d/x.json", b"2")
    assert sorted(os.listdir(tmp_path / "d")) == ["x.json"]


def test_local_written_files_are_readable_by_others(tmp_path):
    old = os.umask(0o022)
    try:
        LocalStore(tmp_path).write_once("x.json", b"1")
    finally:
        os.umask(old)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o644


def test_local_store_that_is_a_file_is_unavailable(tmp_path):
    (tmp_path / "f").write_text("not a folder")
    store = LocalStore(tmp_path / "f")
    with pytest.raises(StoreUnavailable):
        store.list()
    with pytest.raises(StoreUnavailable):
        store.write_once("a.json", b"{}")


# ------------------------------------------------------------------ URIs

def test_open_store_parses_uris(tmp_path):
    s = open_store("gs://my-bucket")
    assert isinstance(s, GCSStore) and (s.bucket_name, s.prefix, s.uri) == ("my-bucket", "", "gs://my-bucket")
    s = open_store("gs://my-bucket/a/b/")
    assert (s.bucket_name, s.prefix, s.uri) == ("my-bucket", "a/b", "gs://my-bucket/a/b")
    s = open_store(f"file://{tmp_path}")
    assert isinstance(s, LocalStore) and s.uri == str(tmp_path)
    assert isinstance(open_store(tmp_path), LocalStore)


@pytest.mark.parametrize("uri", ["", "gs://", "gs:///prefix", "gs://Bad_Bucket", "s3://bucket/x", "file://relative"])
def test_open_store_rejects_bad_uris(uri):
    with pytest.raises(StoreError):
        open_store(uri)


def test_importing_and_using_local_store_does_not_import_google_storage(tmp_path):
    code = (
        "import sys, velocast.catalog.store, velocast.catalog.registry, velocast.models\n"
        f"s = velocast.catalog.store.open_store({str(tmp_path)!r}); s.write_once('a', b'1'); s.list()\n"
        "assert 'google.cloud.storage' not in sys.modules, 'imported eagerly'\n"
        "velocast.catalog.store.open_store('gs://some-bucket')\n"
        "assert 'google.cloud.storage' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
