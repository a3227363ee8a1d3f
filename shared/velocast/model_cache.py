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
from dataclasses import dataclass, field

import numpy as np

from velocast import intervals, model_checks, promotions, registry, tasks
from velocast.errors import NoModelAvailable, UnknownModelChoice
from velocast.features import FEATURE_SPEC_VERSION, CounterTable
from velocast.store import Store, StoreError, StoreUnavailable, open_store

log = logging.getLogger("velocast.model_cache")

# After a failed registry read, wait this long before the next attempt a request may
# trigger: a store outage must not turn every request into a slow failing call.
RETRY_AFTER_FAILURE_SECONDS = 2.0
# Requests wait on the store (a cold start lists the registry and reads a model), so
# a gs:// store is read with bounded timeouts and retries: unreachable, it gives a
# 503 within seconds instead of after GCSStore's default minute of retries.
STORE_TIMEOUT_SECONDS = (3.0, 10.0)   # connect, read
STORE_RETRY_DEADLINE_SECONDS = 4.0


@dataclass
class LoadedModel:
    entry: registry.Entry
    table: CounterTable
    session: object
    input_name: str
    loaded_at: float = field(default_factory=time.time)
    interval: intervals.Interval | None = None     # regress cards carry one

    def run(self, matrix: np.ndarray) -> list[np.ndarray]:
        # InferenceSession.run is thread-safe, so one session serves every thread.
        return self.session.run(None, {self.input_name: matrix})

    def describe(self, metric: str) -> dict:
        e = self.entry
        return {"task": e.task, "type": e.model_type, "version": e.version,
                "metric": metric, "metric_value": e.metrics.get(metric),
                "metrics": e.metrics, "trained_from": e.trained_from,
                "trained_to": e.trained_to, "published_at": e.published_at,
                "feature_spec_version": e.feature_spec_version}


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

    # -- registry -------------------------------------------------------------------
    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = open_store(self.store_uri, timeout=STORE_TIMEOUT_SECONDS,
                                     retry_deadline=STORE_RETRY_DEADLINE_SECONDS)
        return self._store

    def _list(self) -> list[registry.Entry]:
        entries = registry.list_entries(self.store, task=self.task)
        self._promotions = promotions.list_promotions(self.store, self.task)
        with self._lock:
            self._entries = entries
            self._listed_at = time.monotonic()
            self._last_error = None
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

    def ranked(self, entries, model_type: str | None, metric: str) -> list[registry.Entry]:
        """Entries to try for (type, metric), best first: the newest promotion decides."""
        return promotions.served(entries, getattr(self, "_promotions", ()), self.task, model_type, metric)

    # -- loading ----------------------------------------------------------------------
    def _load(self, entry: registry.Entry) -> LoadedModel:
        import onnxruntime as ort  # noqa: PLC0415  (import cost paid once, at first load)

        card, model_bytes = registry.read_verified(self.store, entry, FEATURE_SPEC_VERSION)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads_per_session
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(model_bytes, sess_options=options,
                                       providers=["CPUExecutionProvider"])
        table = CounterTable.from_dict(card["counter_table"])
        table.outages = card["counter_table"].get("outages", {})  # advisories.for_batch
        model_checks.check(self.task, session, table)   # raises: refused, last good kept
        return LoadedModel(entry, table, session, session.get_inputs()[0].name,
                           interval=intervals.from_card(card))

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
        model = self._first_good(self.ranked(entries, model_type, metric))
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
            model = self._first_good(self.ranked(entries, model_type, metric))
            if model is not None:
                with self._lock:
                    self._serving[(model_type, metric)] = model
        with self._lock:
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
