"""`GET /counts?counter=...&date=YYYY-MM-DD`: what a counter actually counted on a Paris
day, hour by hour, read from the day objects the daily ingest stores, so the forecast
page can draw the measured hours over the forecast.

Reads the layout `velocast.train.counts` writes (its docstring has the why)::

    counts/manifests/{seq:08d}.json   {"days": {day: {"object": name, ...}}, "newest_hour"}
    counts/days/{day}/{sha}.csv.gz    "Nom du compteur;Comptage horaire;Date et heure de
                                      comptage;Coordonnées géographiques", UTC ISO times

Runtime code: standard library only (the serving side never imports train/ or
pandas). COUNTS_STORE names the store (`gs://bucket[/prefix]` or a folder; Terraform
points it at the data bucket the trainer ingests into); unset, the model store, as
`velocast.retrain` does without `--counts-store`.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import re
import threading
import time
from collections import OrderedDict

from velocast.core.errors import ApiError
from velocast.core.features import counter_key
from velocast.core.local_time import PARIS
from velocast.catalog.store import Store, StoreError, open_store

MANIFESTS = "counts/manifests/"
# A manifest changes once a day (the daily ingest): re-listing at most every minute
# keeps a page's burst of /counts calls to one list + one read.
MANIFEST_TTL_SECONDS = 60.0
# Day objects are named by their content hash, so a cached one never goes stale; 16
# days of ~30 kB gzip (~100 counters) each is < 10 MB parsed.
CACHED_DAYS = 16
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class CountsReader:
    """One per instance (Service._setup); opens its store on the first /counts call."""

    def __init__(self, uri: str = "", store: Store | None = None):
        self.uri = uri
        self.store = store
        self._lock = threading.Lock()
        self._manifest: tuple[float, dict] | None = None
        self._days: OrderedDict[str, dict] = OrderedDict()

    @classmethod
    def from_env(cls, environ) -> "CountsReader":
        return cls(environ.get("COUNTS_STORE", "").strip())

    def manifest(self) -> dict:
        with self._lock:
            if self._manifest and time.monotonic() - self._manifest[0] < MANIFEST_TTL_SECONDS:
                return self._manifest[1]
        names = [n for n in self.store.list(MANIFESTS) if n.endswith(".json")]
        manifest = json.loads(self.store.read(max(names))) if names else {"days": {}}
        with self._lock:
            self._manifest = (time.monotonic(), manifest)
        return manifest

    def _day(self, name: str) -> dict:
        """{counter key: {local hour: count}} of one day object."""
        with self._lock:
            if name in self._days:
                self._days.move_to_end(name)
                return self._days[name]
        text = gzip.decompress(self.store.read(name)).decode("utf-8")
        rows = csv.reader(io.StringIO(text, newline=""), delimiter=";")
        next(rows)
        by_counter: dict[str, dict[int, float]] = {}
        for counter, count, moment, _coordinates in rows:
            hour = dt.datetime.fromisoformat(moment).astimezone(PARIS).hour
            # The autumn change repeats 2h: the first of the two is kept, as the page
            # asks one forecast per local hour.
            by_counter.setdefault(counter_key(counter), {}).setdefault(hour, float(count))
        with self._lock:
            self._days[name] = by_counter
            while len(self._days) > CACHED_DAYS:
                self._days.popitem(last=False)
        return by_counter

    def counts(self, counter: str, day: str) -> dict:
        manifest = self.manifest()
        stored = manifest["days"].get(day)
        answer = {"counter": counter, "date": day, "time_zone": "Europe/Paris",
                  "ingested": bool(manifest["days"]), "newest_hour": manifest.get("newest_hour"),
                  "day_stored": stored is not None, "counter_found": False, "counts": None}
        if stored is None:
            return answer
        hours = self._day(stored["object"]).get(counter_key(counter))
        if hours:
            answer["counter_found"] = True
            answer["counts"] = [hours.get(h) for h in range(24)]
        return answer


def answer(service, args) -> dict:
    """The /counts answer; 422 for a missing or malformed parameter, 503 when the
    store cannot be read (the page then says it could not check the counts)."""
    counter, day = args.get("counter", ""), args.get("date", "")
    problems = []
    if not counter or len(counter) > 200:
        problems.append({"field": "counter", "reason": "a counter name, as /counters lists it"})
    if not _DATE.match(day):
        problems.append({"field": "date", "reason": "a Paris day as YYYY-MM-DD"})
    else:
        try:
            dt.date.fromisoformat(day)
        except ValueError:
            problems.append({"field": "date", "reason": f"{day} is not a calendar day"})
    if problems:
        raise ApiError(422, "invalid_request", "GET /counts?counter=NAME&date=YYYY-MM-DD",
                       problems)
    try:
        reader = service._counts
        if reader.store is None:
            reader.store = open_store(reader.uri) if reader.uri else service.cache.store
        return reader.counts(counter, day)
    except (StoreError, OSError, ValueError) as exc:
        raise ApiError(503, "counts_unavailable", f"stored counts cannot be read: {exc}",
                       headers={"Retry-After": "30"}) from None
