"""A refused model is listed under `refused` while its entry exists, and no longer once
it is deleted from the store (issue 25, N15: `/models` kept entries for deleted versions)."""

from __future__ import annotations

import os
import shutil

from tests.e2e.test_faults import FAULTS
from velocast import catalog
from velocast.serving.model_cache import ModelCache
from velocast.catalog.store import LocalStore


def test_a_deleted_refused_version_leaves_the_refused_list(trained_store, tmp_path):
    folder = tmp_path / "store"
    shutil.copytree(trained_store, folder)
    store = LocalStore(folder)
    good = catalog.Snapshot.read(store, "regress").default()
    bad = FAULTS["corrupt_bytes"][0](store, good, "29991231T235959Z-bad009")
    cache = ModelCache(str(folder), "regress")
    assert cache.get().entry.version == good.version
    assert bad.version in cache.health()["refused"]
    os.remove(os.path.join(store.root, *bad.registry_path.split("/")))
    cache.refresh()
    assert bad.version not in cache.health()["refused"]
    assert cache.get().entry.version == good.version
