"""The counts kept in a store: day partitions plus write-once manifests.

Layout (every object written once, never replaced)::

    counts/days/{YYYY-MM-DD}/{sha256[:16]}.csv.gz   one Paris-local day, all counters
    counts/manifests/{seq:08d}.json                 the set of current day objects

A day object is named by its content hash, so a corrected day is a *new* object and
the old one stays until nothing needs it; a manifest says which object is current for
each day. Readers take the newest manifest. An ingest writes its new day objects
first and its manifest last, as the registry writes entries last: a run that dies
half-way leaves only unreferenced objects, and a refused download writes nothing.
Two ingests at once both try to create the same next manifest number; the loser
re-reads the winner's manifest and merges again, so no ingest's rows are lost.

Why days and gzip CSV: a daily ingest with a two-day overlap rewrites ~3 day objects
(~30 kB each for 100 counters) instead of a month; 13 months are ~400 objects, read
in parallel. Gzip CSV needs only the standard library to write and pandas to read,
with the same four labelled columns as the export, so any day object is itself a
valid `velocast.train --data` file; Parquet would add pyarrow (~100 MB) to the
trainer for ~2x smaller objects.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import io
import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from velocast.features import PARIS
from velocast.store import AlreadyExists, NotFound, Store
from velocast.train.portal import LABELS

DAYS = "counts/days/"
MANIFESTS = "counts/manifests/"
Row = tuple  # (counter, epoch, count, latitude, longitude)


def local_day(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, tz=PARIS).date().isoformat()


def render_day(rows: dict[tuple[str, int], tuple[float, float, float]]) -> bytes:
    """Deterministic gzip CSV (sorted rows, mtime 0): same rows, same bytes, same name."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\n")
    writer.writerow(LABELS)
    for (name, epoch) in sorted(rows):
        count, lat, lon = rows[(name, epoch)]
        moment = dt.datetime.fromtimestamp(epoch, tz=dt.timezone.utc).isoformat()
        writer.writerow((name, f"{count:g}", moment, f"{lat!r},{lon!r}"))
    return gzip.compress(out.getvalue().encode("utf-8"), compresslevel=6, mtime=0)


def parse_day(data: bytes) -> dict[tuple[str, int], tuple[float, float, float]]:
    reader = csv.reader(io.StringIO(gzip.decompress(data).decode("utf-8"), newline=""),
                        delimiter=";")
    next(reader)
    rows = {}
    for name, count, moment, coordinates in reader:
        lat, lon = coordinates.split(",")
        epoch = int(dt.datetime.fromisoformat(moment).timestamp())
        rows[(name, epoch)] = (float(count), float(lat), float(lon))
    return rows


@dataclass
class Manifest:
    seq: int
    days: dict          # day -> {"object", "rows", "sha256"}
    newest_epoch: int | None

    @property
    def name(self) -> str:
        return f"{MANIFESTS}{self.seq:08d}.json"


def newest_manifest(store: Store) -> Manifest:
    names = [n for n in store.list(MANIFESTS) if n.endswith(".json")]
    if not names:
        return Manifest(0, {}, None)
    raw = json.loads(store.read(max(names)).decode("utf-8"))
    return Manifest(int(raw["seq"]), dict(raw["days"]), raw.get("newest_epoch"))


@dataclass
class Merge:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    days_written: int = 0


def merge(store: Store, current: Manifest, by_day: dict[str, dict]) -> tuple[dict, dict, Merge]:
    """New day contents: stored rows, overwritten by downloaded ones for the same
    counter-hour (a late correction), never dropped. Returns (days, objects to write, counts)."""
    days = dict(current.days)
    to_write: dict[str, bytes] = {}
    stats = Merge()

    def old_rows(day):
        return parse_day(store.read(current.days[day]["object"])) if day in current.days else {}

    with ThreadPoolExecutor(max_workers=8) as pool:
        olds = dict(zip(by_day, pool.map(old_rows, by_day)))
    for day, fresh in sorted(by_day.items()):
        old = olds[day]
        combined = dict(old)
        for key, value in fresh.items():
            previous = old.get(key)
            if previous is None:
                stats.new += 1
            elif previous != value:
                stats.updated += 1
            else:
                stats.unchanged += 1
            combined[key] = value
        data = render_day(combined)
        digest = hashlib.sha256(data).hexdigest()
        if day in current.days and current.days[day]["sha256"] == digest:
            continue
        name = f"{DAYS}{day}/{digest[:16]}.csv.gz"
        to_write[name] = data
        days[day] = {"object": name, "rows": len(combined), "sha256": digest}
        stats.days_written += 1
    return days, to_write, stats


def group_by_day(rows) -> dict[str, dict]:
    by_day: dict[str, dict] = {}
    for name, epoch, count, lat, lon in rows:
        by_day.setdefault(local_day(epoch), {})[(name, epoch)] = (count, lat, lon)
    return by_day


def commit(store: Store, rows, source: str, report: dict, attempts: int = 5) -> tuple[Manifest | None, Merge]:
    """Merge `rows` into the stored counts and write the next manifest (None: no change)."""
    by_day = group_by_day(rows)
    for _ in range(attempts):
        current = newest_manifest(store)
        days, to_write, stats = merge(store, current, by_day)
        if not to_write:
            return None, stats
        for name, data in to_write.items():
            try:
                store.write_once(name, data, "application/gzip")
            except AlreadyExists:
                pass  # same name is same bytes (content hash)
        newest = max(int(e) for e in (current.newest_epoch or 0, max(r[1] for r in rows)))
        manifest = Manifest(current.seq + 1, days, newest)
        body = {"seq": manifest.seq, "days": days, "newest_epoch": newest,
                "newest_hour": dt.datetime.fromtimestamp(newest, dt.timezone.utc).isoformat(),
                "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "source": source, "report": {**report, **vars(stats)}}
        try:
            store.write_once(manifest.name, json.dumps(body, indent=1, sort_keys=True).encode(),
                             "application/json")
            return manifest, stats
        except AlreadyExists:
            continue  # another ingest committed first: merge onto its manifest
    raise RuntimeError(f"could not commit after {attempts} concurrent ingests")


def read_rows(store: Store, days: list[str] | None = None, manifest: Manifest | None = None):
    """(day, {(counter, epoch): (count, lat, lon)}) for the given days (all by default)."""
    manifest = manifest or newest_manifest(store)
    chosen = sorted(manifest.days) if days is None else [d for d in sorted(days) if d in manifest.days]
    with ThreadPoolExecutor(max_workers=8) as pool:
        datas = pool.map(lambda d: store.read(manifest.days[d]["object"]), chosen)
        return [(d, parse_day(b)) for d, b in zip(chosen, datas)]


def window_days(manifest: Manifest, window_days: int, until: str | None = None) -> list[str]:
    days = sorted(d for d in manifest.days if until is None or d <= until)
    if not days:
        return []
    last = dt.date.fromisoformat(days[-1])
    first = (last - dt.timedelta(days=window_days - 1)).isoformat()
    return [d for d in days if d >= first]


def export_window(store: Store, window: int, until: str | None = None) -> str:
    """The newest `window` days of stored counts as one export-format CSV file (a
    temporary path the caller removes), so the file loader's checks apply unchanged."""
    manifest = newest_manifest(store)
    if not manifest.days:
        raise NotFound(f"no counts ingested in {store.uri} yet (run velocast.ingest)")
    days = window_days(manifest, window, until)
    fd, path = tempfile.mkstemp(prefix="velocast-counts-", suffix=".csv")
    with os.fdopen(fd, "wb") as out:
        out.write((";".join(LABELS) + "\n").encode())
        with ThreadPoolExecutor(max_workers=8) as pool:
            for data in pool.map(lambda d: store.read(manifest.days[d]["object"]), days):
                out.write(gzip.decompress(data).split(b"\n", 1)[1])
    return path


def load_window(store: Store, window: int, until: str | None = None):
    """The newest `window` ingested days as the training frame (velocast.train.data)."""
    from velocast.train.data import load_counts

    path = export_window(store, window, until)
    try:
        return load_counts(path)[0]
    finally:
        os.unlink(path)
