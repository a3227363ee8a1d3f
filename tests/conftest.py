"""Fixtures shared by the whole suite, all four tiers (README.md, "Tests").

`trained_store`: a folder store holding all four model types, trained once per session
on a small synthetic sample (the real pipeline, about 15 s on 2 cores).
Copying a store into another (e.g. a fake-gcs-server bucket): velocast.train.publish.copy_store.
`server_pool`: real functions-framework servers, one per (function, settings), shared by
every module of the session (tests.function_clients.ServerPool).
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from dataclasses import dataclass
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


# 90 days holding school and public holidays and the autumn DST change.
SAMPLE_START, SAMPLE_END = dt.date(2024, 9, 2), dt.date(2024, 12, 1)
SAMPLE_HOLDOUT_DAYS = 14


def one_openmp_thread():
    """HistGradientBoosting's OpenMP threads spin-wait for each other: on two cores
    shared with other jobs, two threads took 10x longer than one (418 s vs 38 s).
    Results do not depend on it; the suite's run time does."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="openmp")


@pytest.fixture(scope="session")
def sample_csv(tmp_path_factory) -> Path:
    from velocast.train.sample import write_sample

    path = tmp_path_factory.mktemp("sample") / "paris-sample.csv"
    write_sample(path, SAMPLE_START, SAMPLE_END)
    return path


@pytest.fixture(scope="session")
def sample_frame(sample_csv):
    from velocast.train.data import load_counts

    frame, _ = load_counts(sample_csv, report_to=None)
    return frame


@dataclass
class TrainedRun:
    store_dir: Path
    outcomes: list
    seconds: float


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, sample_frame) -> TrainedRun:
    """All four models trained once per session into a folder store."""
    from velocast.train.pipeline import MODELS, train

    folder = tmp_path_factory.mktemp("models")
    started = time.perf_counter()
    with one_openmp_thread():
        outcomes = train(sample_frame, str(folder), list(MODELS), SAMPLE_HOLDOUT_DAYS)
    seconds = time.perf_counter() - started
    print(f"\ntraining four models on {len(sample_frame):,} synthetic rows took {seconds:.1f} s",
          file=sys.stderr)
    return TrainedRun(folder, outcomes, seconds)


@pytest.fixture(scope="session")
def trained_store(trained_run) -> Path:
    refused = [(o.model_type, o.refused) for o in trained_run.outcomes if not o.published]
    assert not refused, refused
    return trained_run.store_dir


@pytest.fixture(scope="session")
def server_pool():
    from tests.function_clients import ServerPool

    pool = ServerPool()
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture(scope="session")
def served_pair(server_pool, trained_store) -> dict:
    """classify and regress on `trained_store` with nothing else set, as real servers: the
    contract over HTTP, the old front and schemathesis read the same two."""
    return server_pool.several(("classify", "regress"), MODEL_STORE=str(trained_store),
                               REFRESH_SECONDS="3600")
