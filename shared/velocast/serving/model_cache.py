"""Per-instance cache of ONNX sessions, kept in global scope by the functions.

The first request that needs a model reads the registry and loads the best one for
its (model type, metric) straight from bytes into onnxruntime (no /tmp file, which
would count against the instance's memory). A model whose bytes do not match their
sha256 or whose feature spec differs from this code's is never served; the last good
model stays. The registry is re-read at most every `refresh_seconds`, in a background
thread, so no request waits on it.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref

from velocast import catalog

from velocast.catalog import registry

from velocast.core import tasks
from velocast.catalog import LoadedModel
from velocast.core.errors import NoModelAvailable, UnknownModelChoice
from velocast.core.features import FEATURE_SPEC_VERSION
from velocast.catalog.store import Store, StoreError, StoreUnavailable, open_store

log = logging.getLogger("velocast.model_cache")

# After a failed registry read, wait this long before the next attempt a request may
# trigger: a store outage must not turn every request into a slow failing call.
RETRY_AFTER_FAILURE_SECONDS = 2.0
# Requests wait on the store (a cold start lists the registry and reads a model), so
# a gs:// store is read with bounded timeouts and retries: unreachable, it gives a
# 503 within seconds instead of after GCSStore's default minute of retries.
STORE_TIMEOUT_SECONDS = (3.0, 10.0)   # connect, read
STORE_RETRY_DEADLINE_SECONDS = 4.0


class ModelCache:
    def __init__(self, store_uri: str, task: str, refresh_seconds: float = 300.0,
                 threads_per_session: int = 1, store: Store | None = None):
        self.store_uri = store_uri
        self.task = task
        self.refresh_seconds = refresh_seconds
        self.threads_per_session = threads_per_session
        self._store = store
        self._lock = threading.RLock()
        self._entries: list[registry.Entry] | None = None
        self._snapshot = catalog.Snapshot(task, (), ())
        self._listed_at = 0.0
        self._failed_at = 0.0
        self._last_error: str | None = None
        self._loaded: dict[str, LoadedModel] = {}       # version -> model
        self._serving: dict[tuple, LoadedModel] = {}    # (type, metric) -> model
        self._bad_versions: dict[str, str] = {}         # version -> why it is refused
        self._refreshing = False
        # One load at a time, so concurrent first requests share a load (see _first_good).
        self._load_lock = threading.Lock()
        self._unavailable_at: dict[str, float] = {}     # version -> last store failure
        self._timer: threading.Thread | None = None

    # -- registry -------------------------------------------------------------------
    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = open_store(self.store_uri, timeout=STORE_TIMEOUT_SECONDS,
                                     retry_deadline=STORE_RETRY_DEADLINE_SECONDS)
        return self._store

    def _list(self) -> list[registry.Entry]:
        snapshot = catalog.Snapshot.read(self.store, self.task)
        entries = list(snapshot.entries)
        with self._lock:
            self._snapshot = snapshot
            self._entries = entries
            self._listed_at = time.monotonic()
            self._last_error = None
            start = self._timer is None
            if start:
                self._timer = threading.Thread(target=_keep_fresh, args=(weakref.ref(self),),
                                               name="velocast-refresh-timer", daemon=True)
        if start:
            self._timer.start()
        return entries

    def _note_store_failure(self, exc: Exception) -> None:
        with self._lock:
            self._failed_at = time.monotonic()
            self._last_error = str(exc)

    def entries(self) -> list[registry.Entry]:
        """The registry as last read; read it now if never read or empty (raises when
        the store cannot be reached and nothing was read before)."""
        with self._lock:
            # An empty listing is re-read (at most every few seconds): the first
            # publish must be seen at once, not one refresh period later.
            if self._entries:
                return self._entries
            if time.monotonic() - self._failed_at < RETRY_AFTER_FAILURE_SECONDS:
                if self._last_error is None and self._entries is not None:
                    return self._entries
                raise NoModelAvailable(f"model store unavailable: {self._last_error}", 5)
        try:
            entries = self._list()
        except StoreError as exc:
            self._note_store_failure(exc)
            log.error("cannot read the registry at %s: %s", self.store_uri, exc)
            raise NoModelAvailable(f"model store unavailable: {exc}", 5) from exc
        if not entries:
            with self._lock:
                self._failed_at = time.monotonic()
        return entries

    def snapshot(self) -> catalog.Snapshot:
        """The catalog as last read (read now if never read)."""
        self.entries()
        with self._lock:
            return self._snapshot

    def ranked(self, model_type: str | None, metric: str) -> list[registry.Entry]:
        """Entries to try for (type, metric), best first (velocast.catalog decides)."""
        with self._lock:
            return self._snapshot.served(model_type, metric)

    # -- loading ----------------------------------------------------------------------
    def _load(self, entry: registry.Entry) -> LoadedModel:
        return catalog.load(self.store, entry, self.threads_per_session)

    def _first_good(self, candidates: list[registry.Entry]) -> LoadedModel | None:
        for entry in candidates:
            asked_at = time.monotonic()
            with self._lock:
                loaded = self._loaded.get(entry.version)
                refused = self._bad_versions.get(entry.version)
            if loaded:
                return loaded
            if refused:
                continue
            # One load at a time: when a cold instance takes a burst, the concurrent first
            # requests for a model wait for one load instead of each loading its own copy
            # (gunicorn's 8 threads loaded the rf model 8 times: worker RSS 423 MB instead
            # of 148 MB, see bench/README.md).
            with self._load_lock:
                with self._lock:
                    loaded = self._loaded.get(entry.version)
                    refused = self._bad_versions.get(entry.version)
                    # A store failure met by the load this thread waited for counts for
                    # it too: an outage is not retried once per waiting request.
                    unavailable = self._unavailable_at.get(entry.version, float("-inf")) >= asked_at
                if loaded:
                    return loaded
                if refused or unavailable:
                    continue
                try:
                    model = self._load(entry)
                except Exception as exc:  # noqa: BLE001
                    # onnxruntime raises its own exception types on corrupt bytes; whatever
                    # the cause, this version is not served.
                    with self._lock:
                        if isinstance(exc, StoreUnavailable):
                            # Not the version's fault: try it again later.
                            self._unavailable_at[entry.version] = time.monotonic()
                        else:
                            self._bad_versions[entry.version] = str(exc)
                    log.error("refusing model %s %s %s: %s", self.task, entry.model_type,
                              entry.version, exc)
                    continue
                with self._lock:
                    self._loaded[entry.version] = model
            log.info("loaded model %s %s %s (%d bytes)", self.task, entry.model_type,
                     entry.version, entry.size_bytes)
            return model
        return None

    def get(self, model_type: str | None = None, metric: str | None = None) -> LoadedModel:
        task = tasks.get(self.task)
        metric = metric or task.default_metric
        if metric not in task.metrics:
            raise UnknownModelChoice("metric", f"unknown metric {metric!r} for {self.task}; "
                                     f"choose from {', '.join(task.metrics)}")
        model_type = task.model_type(model_type)
        key = (model_type, metric)
        self._maybe_refresh_in_background()
        with self._lock:
            serving = self._serving.get(key)
        if serving:
            return serving
        entries = self.entries()
        if not entries:
            raise NoModelAvailable(f"no {self.task} model is published in {self.store_uri} yet")
        if model_type is not None and model_type not in {e.model_type for e in entries}:
            types = sorted({e.model_type for e in entries})
            raise UnknownModelChoice("model_type", f"no published {self.task} model of type "
                                     f"{model_type!r}; published: {', '.join(types)}")
        model = self._first_good(self.ranked(model_type, metric))
        if model is None:
            raise NoModelAvailable(f"no loadable {self.task} model for type "
                                   f"{model_type or 'any'} and metric {metric}")
        with self._lock:
            self._serving.setdefault(key, model)
            return self._serving[key]

    # -- refresh ----------------------------------------------------------------------
    def refresh(self) -> dict:
        """Re-read the registry and move every served (type, metric) to its best
        loadable model; a model that fails to load leaves the previous one in place."""
        with self._lock:
            before = {k: m.entry.version for k, m in self._serving.items()}
        try:
            entries = self._list()
        except StoreError as exc:
            self._note_store_failure(exc)
            with self._lock:
                self._listed_at = time.monotonic()  # keep serving; try again next period
            log.error("registry refresh failed, keeping current models: %s", exc)
            return {"refreshed": False, "error": str(exc), "models": self.serving()}
        keys = set(before) or {(None, tasks.get(self.task).default_metric)}
        for model_type, metric in keys:
            model = self._first_good(self.ranked(model_type, metric))
            if model is not None:
                with self._lock:
                    self._serving[(model_type, metric)] = model
        with self._lock:
            listed = {e.version for e in entries}
            for version in list(self._bad_versions):
                if version not in listed:   # deleted from the store: nothing to report
                    del self._bad_versions[version]
            in_use = {m.entry.version for m in self._serving.values()}
            for version in list(self._loaded):
                if version not in in_use:
                    del self._loaded[version]  # frees the session's memory
            after = {k: m.entry.version for k, m in self._serving.items()}
            refused = dict(self._bad_versions)
        changed = [{"model_type": k[0], "metric": k[1], "from": before.get(k), "to": version}
                   for k, version in after.items() if before.get(k) != version]
        return {"refreshed": True, "changed": changed, "models": self.serving(),
                "refused": refused}

    def _maybe_refresh_in_background(self) -> None:
        """A refresh in the background when due. Normally the timer thread does it; on
        Cloud Run the CPU is throttled between requests, so a request also checks."""
        with self._lock:
            due = (self._entries is not None and not self._refreshing and
                   time.monotonic() - self._listed_at >= self.refresh_seconds)
            if not due:
                return
            self._refreshing = True

        def run():
            try:
                self.refresh()
            finally:
                with self._lock:
                    self._refreshing = False

        threading.Thread(target=run, name="velocast-refresh", daemon=True).start()

    # -- reporting -------------------------------------------------------------------
    def serving(self) -> list[dict]:
        with self._lock:
            items = list(self._serving.items())
        return [{"model_type": k[0], "metric": k[1], **m.describe(k[1])} for k, m in items]

    def health(self) -> dict:
        """Loads the default model if nothing is loaded yet, so a probe warms the
        instance; never raises."""
        error = None
        self._maybe_refresh_in_background()
        if not self._serving:
            try:
                self.get()
            except (NoModelAvailable, UnknownModelChoice) as exc:
                error = str(exc)
        with self._lock:
            refused, last_error = dict(self._bad_versions), self._last_error
        return {"task": self.task, "store": self.store_uri,
                "feature_spec_version": FEATURE_SPEC_VERSION,
                "models": self.serving(), "error": error or last_error, "refused": refused}


def _keep_fresh(cache_ref) -> None:
    """Re-read the registry every refresh period whether or not requests arrive: a
    classify instance with no traffic served a 34-minute-old version while 25 newer
    promotions existed (refresh every 20 s). Holds only a weak reference, so a cache
    that is dropped (tests make many) ends its thread."""
    while True:
        cache = cache_ref()
        if cache is None:
            return
        with cache._lock:
            wait = cache._listed_at + cache.refresh_seconds - time.monotonic()
        if wait <= 0:
            cache._maybe_refresh_in_background()
            wait = max(cache.refresh_seconds, 0.05)
        del cache
        time.sleep(min(max(wait, 0.05), 60.0))
