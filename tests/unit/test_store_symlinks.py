"""A folder store never reads or lists through a symlink that leaves its root: a link
planted in the store (to a file or a folder elsewhere) would otherwise be served as
a model, a card or a registry entry. Links that stay inside the root keep working,
and so does a root that is itself reached through a link."""

from __future__ import annotations

import os

import pytest

from velocast.catalog.store import LocalStore, NotFound


@pytest.fixture
def outside(tmp_path):
    folder = tmp_path / "outside"
    (folder / "sub").mkdir(parents=True)
    (folder / "secret.json").write_bytes(b"{}")
    (folder / "sub" / "entry.json").write_bytes(b"{}")
    return folder


@pytest.fixture
def store(tmp_path):
    store = LocalStore(tmp_path / "store")
    store.write_once("registry/regress/real.json", b"{}")
    return store


def test_a_file_link_out_of_the_root_is_neither_read_nor_listed(store, outside):
    os.symlink(outside / "secret.json", os.path.join(store.root, "registry", "regress", "x.json"))
    with pytest.raises(NotFound, match="symlink"):
        store.read("registry/regress/x.json")
    assert store.list("registry/") == ["registry/regress/real.json"]


def test_a_folder_link_out_of_the_root_is_neither_read_nor_listed(store, outside):
    os.symlink(outside / "sub", os.path.join(store.root, "registry", "classify"))
    with pytest.raises(NotFound, match="symlink"):
        store.read("registry/classify/entry.json")
    assert store.list("registry/classify/") == []
    assert store.list("") == ["registry/regress/real.json"]


def test_links_inside_the_root_and_a_linked_root_still_work(store, tmp_path):
    os.symlink(os.path.join(store.root, "registry", "regress", "real.json"),
               os.path.join(store.root, "registry", "regress", "alias.json"))
    assert store.read("registry/regress/alias.json") == b"{}"
    linked = LocalStore(tmp_path / "linked-root")
    os.symlink(store.root, linked.root)
    assert linked.list("registry/") == ["registry/regress/alias.json", "registry/regress/real.json"]
    assert linked.read("registry/regress/real.json") == b"{}"
