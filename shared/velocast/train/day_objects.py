"""What a day object is: the format of counts/days/... and counts/quarantine/...
objects (train/counts.py keeps the layout and the manifests), written under its content
hash and read back only if it still matches the sha256 its manifest recorded."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import io
import sys
import time
import zlib

from velocast.core.local_time import PARIS
from velocast.catalog.store import AlreadyExists, NotFound, Store, StoreError, StoreUnavailable
from velocast.train.portal import LABELS


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


def warn(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] counts: {message}", file=sys.stderr, flush=True)


class Unreadable(Exception):
    """A stored object that is missing, corrupted or unparseable; the message names it."""


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


def _verified(store: Store, entry: dict) -> bytes:
    """A day or quarantine object's bytes, checked against the sha256 its manifest
    recorded (raises Unreadable naming the object)."""
    name = entry.get("object") if isinstance(entry, dict) else None
    try:
        data = store.read(name)
    except StoreUnavailable:
        raise               # the store is down, not the object corrupted: fail loudly
    except StoreError as exc:
        raise Unreadable(f"day object {name} is unreadable: {exc}") from None
    if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
        raise Unreadable(f"day object {name} does not match the sha256 its manifest recorded "
                         "(corrupted)")
    return data


def read_day(store: Store, entry: dict) -> dict:
    data = _verified(store, entry)
    try:
        return parse_day(data)
    except (OSError, EOFError, zlib.error, ValueError, csv.Error) as exc:
        raise Unreadable(f"day object {entry['object']} is unreadable: {type(exc).__name__}: {exc}") \
            from None


def write_content(store: Store, name: str, data: bytes, kind: str) -> str:
    """Write-once under a content-hash name: an existing object of that name is the same
    bytes, unless it was corrupted; then the next free variant name is used."""
    digest = hashlib.sha256(data).hexdigest()
    folder, _, base = name.rpartition("/")
    stem, _, suffix = base.partition(".")
    for k in range(8):
        candidate = name if k == 0 else f"{folder}/{stem}.{k}.{suffix}"
        try:
            store.write_once(candidate, data, kind)
            return candidate
        except AlreadyExists:
            try:
                if hashlib.sha256(store.read(candidate)).hexdigest() == digest:
                    return candidate
            except NotFound:
                pass
    raise Unreadable(f"{name} and 7 variants of its name are taken by other bytes")


def day_csv(store: Store, entry: dict) -> bytes:
    """A day object's rows as CSV lines without the header (verified)."""
    try:
        return gzip.decompress(_verified(store, entry)).split(b"\n", 1)[1]
    except (OSError, EOFError, zlib.error, IndexError) as exc:
        raise Unreadable(f"day object {entry['object']} is unreadable: {type(exc).__name__}: {exc}") \
            from None
