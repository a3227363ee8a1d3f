"""Concurrent first requests share one model load (a cold instance taking a burst loaded
the same model once per gunicorn thread before: 8 copies, worker RSS 423 MB)."""

from __future__ import annotations

import time

import pytest

from tests.threads import race
from velocast.serving.model_cache import ModelCache, NoModelAvailable
from velocast.catalog.store import StoreUnavailable

THREADS = 8


def _burst(fn, threads: int = THREADS) -> list:
    return race(threads, lambda _: fn())


def _counting(cache: ModelCache, before=None):
    calls = []
    real = cache._load

    def load(entry):
        calls.append(entry.version)
        if before:
            before()
        return real(entry)

    cache._load = load
    return calls


def test_concurrent_first_requests_load_each_model_once(trained_store):
    cache = ModelCache(str(trained_store), "regress")
    calls = _counting(cache, before=lambda: time.sleep(0.05))
    for model_type in ("gbdt", "rf", "nn"):
        results = _burst(lambda: cache.get(model_type))
        assert all(not isinstance(r, Exception) for r in results), results
        assert len({id(r) for r in results}) == 1  # every thread got the same session
    assert len(calls) == 3 and len(set(calls)) == 3, calls


def test_store_outage_is_not_retried_once_per_waiting_request(trained_store):
    cache = ModelCache(str(trained_store), "regress")
    cache.entries()  # the registry was read; the model store then fails

    def fail():
        time.sleep(0.2)
        raise StoreUnavailable("store down")

    calls = _counting(cache, before=fail)
    results = _burst(lambda: cache.get("gbdt"))
    assert all(isinstance(r, NoModelAvailable) for r in results), results
    assert len(calls) == 1, calls
    # Not the version's fault: a later request tries again.
    with pytest.raises(NoModelAvailable):
        cache.get("gbdt")
    assert len(calls) == 2
