"""The counts kept in a store: day partitions plus write-once manifests.

Layout (every object written once, never replaced)::

    counts/days/{YYYY-MM-DD}/{sha256[:16]}.csv.gz        one Paris-local day, all counters
    counts/manifests/{seq:08d}.json                      the set of current day objects
    counts/quarantine/{YYYY-MM-DD}/{sha256[:16]}.csv.gz  rows screen.py held back
    counts/quarantine/{YYYY-MM-DD}/{sha256[:16]}.json    ... and why

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

Quarantined rows (train/screen.py) are kept apart in the same write-once way and
listed under the manifest's `quarantined`, never under `days`: nothing trains on them,
and a later clean fetch of the same hours is stored like any other. A stored object
that does not match the sha256 its manifest recorded, or cannot be parsed, is named in
a warning and skipped (issue 21, N8: one corrupted object made every later ingest end
in a raw traceback); an unreadable newest manifest gives way to the one before it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from velocast.core.local_time import PARIS
from velocast.catalog.store import AlreadyExists, NotFound, Store, StoreError, StoreUnavailable
from velocast.train.day_objects import (  # noqa: F401  (counts.parse_day etc. are used by callers)
    Unreadable, day_csv, local_day, parse_day, read_day, render_day, warn, write_content)
from velocast.train.portal import LABELS

DAYS = "counts/days/"
MANIFESTS = "counts/manifests/"
QUARANTINE = "counts/quarantine/"
_MANIFEST_NAME = re.compile(r"^counts/manifests/(\d{8})\.json$")
Row = tuple  # (counter, epoch, count, latitude, longitude)


@dataclass
class Manifest:
    seq: int
    days: dict          # day -> {"object", "rows", "sha256"}
    newest_epoch: int | None
    last_seq: int = 0   # the highest manifest number in the store, readable or not
    warnings: list = field(default_factory=list)
    counters: list | None = None     # every counter ever stored (None: an older manifest)
    quarantined: dict = field(default_factory=dict)   # day -> [{"object", "rows", "reasons"}]

    @property
    def name(self) -> str:
        return f"{MANIFESTS}{self.seq:08d}.json"


def _parse_manifest(data: bytes, seq: int) -> Manifest:
    raw = json.loads(data.decode("utf-8"))
    if raw["seq"] != seq:
        raise ValueError(f"it says seq {raw['seq']!r}")
    days = dict(raw["days"])
    for day, entry in days.items():
        dt.date.fromisoformat(day)
        if not (isinstance(entry["object"], str) and isinstance(entry["sha256"], str)):
            raise ValueError(f"bad entry for {day}")
    newest = raw.get("newest_epoch")
    if newest is not None and (isinstance(newest, bool) or not isinstance(newest, int)):
        raise ValueError(f"newest_epoch {newest!r} is not an integer")
    counters = raw.get("counters")
    return Manifest(seq, days, newest, seq, [], list(counters) if counters is not None else None,
                    dict(raw.get("quarantined", {})))


def newest_manifest(store: Store) -> Manifest:
    """The newest readable manifest; an unreadable newer one is named in a warning and
    skipped, and `last_seq` keeps the next number new (manifests are write-once)."""
    numbered = sorted((int(m.group(1)), n) for n in store.list(MANIFESTS)
                      if (m := _MANIFEST_NAME.match(n)))
    last = numbered[-1][0] if numbered else 0
    bad = []
    for seq, name in reversed(numbered):
        try:
            manifest = _parse_manifest(store.read(name), seq)
        except StoreUnavailable:
            raise
        except (StoreError, ValueError, KeyError, TypeError, AttributeError) as exc:
            bad.append(f"manifest {name} unreadable ({type(exc).__name__}: {str(exc)[:80]})")
            continue
        manifest.last_seq = last
        if bad:
            manifest.warnings = [f"{'; '.join(bad)}: continued from {manifest.name}"]
            warn(manifest.warnings[0])
        return manifest
    empty = Manifest(0, {}, None, last)
    if bad:
        empty.warnings = [f"{'; '.join(bad)}: no readable manifest, starting from an empty one"]
        warn(empty.warnings[0])
    return empty


def cursor(manifest: Manifest, now: float) -> int | None:
    """The newest stored hour, never past `now` (issue 21, N2: one row dated 2030 once
    moved it there and every later ingest asked for hours after 2029). A store already
    carrying such an hour restarts from the newest day not in the future."""
    if manifest.newest_epoch is None or manifest.newest_epoch <= now:
        return manifest.newest_epoch
    today = local_day(int(now))
    past = [d for d in manifest.days if d <= today]
    if not past:
        return None
    return int(dt.datetime.combine(dt.date.fromisoformat(max(past)), dt.time(), PARIS).timestamp())


@dataclass
class Merge:
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    days_written: int = 0
    warnings: list = field(default_factory=list)


def merge(store: Store, current: Manifest, by_day: dict[str, dict]) -> tuple[dict, dict, Merge]:
    """New day contents: stored rows, overwritten by downloaded ones for the same
    counter-hour (a late correction), never dropped. Returns (days, objects to write, counts)."""
    days = dict(current.days)
    to_write: dict[str, bytes] = {}
    stats = Merge()
    broken: set = set()

    def old_rows(day):
        if day not in current.days:
            return {}
        try:
            return read_day(store, current.days[day])
        except Unreadable as exc:
            stats.warnings.append(f"{exc}: its rows are treated as missing")
            warn(stats.warnings[-1])
            broken.add(day)
            return {}

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
        if day in current.days and current.days[day]["sha256"] == digest and day not in broken:
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


@dataclass
class Quarantine:
    day: str
    rows: dict          # {(counter, epoch): (count, lat, lon)}
    reasons: list


def _quarantine_objects(held: list[Quarantine], source: str, listed: dict) -> tuple[dict, dict]:
    """(objects to write, manifest entries by day) for the quarantines not yet listed."""
    to_write, entries = {}, {}
    for q in held:
        data = render_day(q.rows)
        digest = hashlib.sha256(data).hexdigest()
        name = f"{QUARANTINE}{q.day}/{digest[:16]}.csv.gz"
        if any(e["object"] == name for e in listed.get(q.day, []) + entries.get(q.day, [])):
            continue        # the same rows held back again (overlap re-fetch)
        why = {"day": q.day, "object": name, "rows": len(q.rows), "reasons": q.reasons,
               "sha256": digest, "source": source,
               "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        to_write[name] = (data, "application/gzip")
        to_write[name[:-len(".csv.gz")] + ".json"] = (json.dumps(why, indent=1).encode(), "application/json")
        entries.setdefault(q.day, []).append(
            {"object": name, "rows": len(q.rows), "reasons": q.reasons, "sha256": digest})
    return to_write, entries


def _future_days(days: dict, now: float) -> dict:
    """Stored days after Paris-today (written before the cursor rule): moved out of
    `days` into the quarantine listing, their objects kept."""
    today = local_day(int(now))
    return {d: [{**days[d], "reasons": ["day in the future"]}] for d in days if d > today}


def commit(store: Store, rows, source: str, report: dict, attempts: int = 5, *,
           quarantine: list[Quarantine] = (), counters=(), now: float | None = None,
           ) -> tuple[Manifest | None, Merge]:
    """Merge `rows` into the stored counts, keep `quarantine` apart, and write the next
    manifest (None: nothing changed). `counters`: names the caller saw stored."""
    now = time.time() if now is None else now
    by_day = group_by_day(rows)
    for _ in range(attempts):
        current = newest_manifest(store)
        days, to_write, stats = merge(store, current, by_day)
        future = _future_days(days, now)
        held, entries = _quarantine_objects(list(quarantine), source, current.quarantined)
        if not to_write and not held and not future:
            return None, stats
        writes = {**{n: (d, "application/gzip") for n, d in to_write.items()}, **held}
        for name, (data, kind) in writes.items():
            written = write_content(store, name, data, kind)
            for entry in [e for e in days.values() if e["object"] == name and written != name]:
                entry["object"] = written
        quarantined = {d: list(v) for d, v in current.quarantined.items()}
        for day, more in [*entries.items(), *future.items()]:
            quarantined.setdefault(day, []).extend(more)
        days = {d: e for d, e in days.items() if d not in future}
        newest = max([e for e in (cursor(current, now), *(r[1] for r in rows)) if e is not None],
                     default=None)
        newest = None if newest is None else int(min(newest, now))
        names = sorted(set(current.counters or ()) | set(counters) | {r[0] for r in rows})
        manifest = Manifest(max(current.seq, current.last_seq) + 1, days, newest, counters=names,
                            quarantined=quarantined)
        manifest.last_seq = manifest.seq
        body = {"seq": manifest.seq, "days": days, "newest_epoch": newest,
                "newest_hour": None if newest is None else
                dt.datetime.fromtimestamp(newest, dt.timezone.utc).isoformat(),
                "counters": names, "quarantined": quarantined,
                "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "source": source, "report": {**report, **vars(stats)}}
        try:
            store.write_once(manifest.name, json.dumps(body, indent=1, sort_keys=True).encode(),
                             "application/json")
            return manifest, stats
        except AlreadyExists:
            continue  # another ingest committed first: merge onto its manifest
    raise RuntimeError(f"could not commit after {attempts} concurrent ingests")


def _readable(store: Store, manifest: Manifest, chosen: list[str], read, problems=None) -> list:
    """(day, read(store, entry)) for the chosen days; an unreadable one is named in a
    warning (or put in `problems`, day -> message) and skipped, so one corrupted object
    does not stop the rest."""
    def one(day):
        try:
            return day, read(store, manifest.days[day])
        except Unreadable as exc:
            if problems is None:
                warn(f"{exc}: skipped")
            else:
                problems[day] = str(exc)
            return day, None

    with ThreadPoolExecutor(max_workers=8) as pool:
        return [(d, data) for d, data in pool.map(one, chosen) if data is not None]


def read_rows(store: Store, days: list[str] | None = None, manifest: Manifest | None = None,
              problems: dict | None = None):
    """(day, {(counter, epoch): (count, lat, lon)}) for the given days (all by default)."""
    manifest = manifest or newest_manifest(store)
    chosen = sorted(manifest.days) if days is None else [d for d in sorted(days) if d in manifest.days]
    return _readable(store, manifest, chosen, read_day, problems)


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
        for _, data in _readable(store, manifest, days, day_csv):
            out.write(data)
    return path


def load_window(store: Store, window: int, until: str | None = None):
    """The newest `window` ingested days as the training frame (velocast.train.data)."""
    from velocast.train.data import load_counts

    path = export_window(store, window, until)
    try:
        return load_counts(path)[0]
    finally:
        os.unlink(path)
