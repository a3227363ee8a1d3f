"""Fixtures shared by the whole suite.

`trained_store`: a folder store holding all four model types, trained once per session
on a small synthetic sample (the real pipeline, about 15 s on 2 cores).
`copy_store(src, dst)`: copy every object of one store into another (e.g. into a
fake-gcs-server bucket), through the write-once interface.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    return Path(os.environ.get("VELOCAST_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    folder = shared_data_dir()
    if not (folder / "paris-bike-counts-2020-09-01_2021-08-09.csv.gz").exists():
        pytest.skip(f"real Paris data not found in {folder} (set VELOCAST_SHARED_DATA)")
    return folder


@pytest.fixture(scope="session")
def sample_csv(tmp_path_factory) -> Path:
    from velocast.train.sample import write_sample

    path = tmp_path_factory.mktemp("sample") / "paris-sample.csv"
    write_sample(path, dt.date(2025, 3, 1), dt.date(2025, 6, 1))
    return path


@pytest.fixture(scope="session")
def trained_store(tmp_path_factory, sample_csv) -> Path:
    from velocast.train.data import load_counts
    from velocast.train.pipeline import MODELS, train

    folder = tmp_path_factory.mktemp("models")
    frame, _ = load_counts(sample_csv, report_to=None)
    outcomes = train(frame, str(folder), list(MODELS), holdout_days=14)
    refused = [(o.model_type, o.refused) for o in outcomes if not o.published]
    assert not refused, refused
    return folder


def copy_store(source, destination) -> int:
    names = source.list("")
    # Registry entries last, as publish does, so no entry ever points at a missing file.
    names.sort(key=lambda n: n.startswith("registry/"))
    for name in names:
        destination.write_once(name, source.read(name))
    return len(names)
