"""Downloading the Paris portal's export (Opendatasoft Explore API v2.1) and checking it.

One export call per ingest, asking only for the four columns the pipeline uses
(`select`): the live rows carry two photo-URL columns of ~1 kB each, so the 16-column
file is ~10x the size of the selected one (the 21-row live sample: 1,340 bytes a row
in full, 120 selected). A count of the same `where` (`/records?limit=0`, its
`total_count`) is asked first: an export has no trailer, so a body cut on a line
boundary would otherwise look complete.

A download is all or nothing: HTTP errors are retried a bounded number of times, and
a cut, garbled, re-shaped or oversized body raises Refused, so the caller stores nothing.

A download is bounded (issue 21, N4: a 1 MB gzip bomb grew an unbounded ingest to
7.9 GB before a MemoryError; a trickled 2 GB body had no overall deadline): the body
may hold at most BYTES_PER_ROW x the counted rows + BYTES_SLACK bytes *after*
decompression (urllib3 >= 2.6 decodes Content-Encoding a bounded piece per read, so
the count is taken as the bytes arrive, never after), and the whole fetch, retries
included, must end by a deadline of DEADLINE_BASE + the cap at DEADLINE_RATE.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import sys
import time
from dataclasses import dataclass, field

import requests
import urllib3

DATASET = "comptage-velo-donnees-compteurs"
DEFAULT_SOURCE = "https://opendata.paris.fr"
EXPORT_PATH = f"/api/explore/v2.1/catalog/datasets/{DATASET}/exports/csv"
RECORDS_PATH = f"/api/explore/v2.1/catalog/datasets/{DATASET}/records"

# field name -> the label `use_labels=true` puts in the header (GCP-NOTES.md, and the
# header of the live sample paris-export-sample-2021-09.csv).
FIELDS = {
    "nom_compteur": "Nom du compteur",
    "sum_counts": "Comptage horaire",
    "date": "Date et heure de comptage",
    "coordinates": "Coordonnées géographiques",
}
LABELS = tuple(FIELDS.values())

# (connect, read) seconds: read is per socket read, not for the whole body, so a slow
# but moving 13-month download (~60 MB selected) is not cut, a stalled one is.
TIMEOUT = (10.0, 60.0)
ATTEMPTS = 4
BACKOFF_SECONDS = 2.0
# More unusable rows than this share means the body is garbled, not a few bad rows.
MAX_BAD_ROW_SHARE = 0.05
RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}
# Real counter names are 20-50 characters; one with a line end or 1 MB long would end
# up in file names' neighbours, reports and the page.
MAX_NAME = 200
# The selected 4-column row is ~120 bytes (the live sample); 400 is 3.3x that, so a
# real export never nears the cap and one ignoring `select` (1,340 bytes a row) or a
# decompression bomb is cut as soon as it passes it. The slack covers the header and
# rows published between the count call and the export.
BYTES_PER_ROW = 400
BYTES_SLACK = 1_000_000
# The count of a 13-month export is ~1.1 M rows (~110 counters x 24 x 400 days):
# more than 5 M is not this dataset, and would make the byte cap meaningless.
MAX_ROWS = 5_000_000
# A count answer is a few hundred bytes of JSON.
COUNT_BYTES = 1_000_000
# Deadline: 120 s plus the cap at 100 kB/s: a daily export (~2,500 rows, 2 MB cap)
# gets 2.3 min, a full 13-month one (~130 MB, 440 MB cap) 75 min; a moving download
# is rarely below 100 kB/s, a trickle is.
DEADLINE_BASE = 120.0
DEADLINE_RATE = 100_000.0
READ_PIECE = 1 << 16


class Refused(Exception):
    """The download is unusable as a whole; nothing from it may be stored."""


@dataclass
class Download:
    rows: list[tuple[str, int, float, float, float]]   # counter, epoch, count, lat, lon
    received: int
    refused_rows: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    seconds: float = 0.0


def where_clause(since: dt.datetime | None, until: dt.datetime | None) -> str | None:
    """ODSQL on the `date` field with `date'...'` literals (ISO 8601, explicit offset)."""
    parts = []
    if since is not None:
        parts.append(f"date >= date'{since.isoformat()}'")
    if until is not None:
        parts.append(f"date < date'{until.isoformat()}'")
    return " and ".join(parts) or None


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _get(session: requests.Session, url: str, params: dict, timeout, attempts: int, backoff: float):
    """A 200 response, its body not read yet (callers read it with _read_capped)."""
    last = ""
    for attempt in range(1, attempts + 1):
        try:
            response = session.get(url, params=params, stream=True, timeout=timeout)
            if response.status_code == 200:
                return response
            last = f"HTTP {response.status_code} from {url}"
            response.close()
            if response.status_code not in RETRYABLE_STATUS:
                break
        except requests.RequestException as exc:
            last = f"{type(exc).__name__}: {exc}"
        if attempt < attempts:
            say(f"portal: {last}; retry {attempt}/{attempts - 1}")
            time.sleep(backoff * 2 ** (attempt - 1))
    raise Refused(f"portal unreachable after {attempts} attempt(s): {last}")


def _read_capped(response, cap: int, deadline: float, what: str, progress=None) -> bytes:
    """The decoded body, refused once it passes `cap` bytes or the deadline passes (not
    retried: a retry cannot make the answer smaller or faster). read1 returns what one
    socket read brings, so a trickle is checked against the deadline at least once per
    read timeout (iter_content waits to fill its chunk)."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > cap:
        raise Refused(f"{what}: the portal declares {int(declared):,} bytes, more than the "
                     f"{cap:,} allowed")
    chunks, size = [], 0
    while True:
        if time.monotonic() > deadline:
            raise Refused(f"{what}: past the download deadline after {size:,} bytes")
        chunk = response.raw.read1(READ_PIECE, decode_content=True)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > cap:
            raise Refused(f"{what}: more than the {cap:,} bytes allowed (decompressed)")
        chunks.append(chunk)
        if progress:
            progress(size)


def _count(session, base: str, where: str | None, timeout, attempts, backoff, deadline) -> int:
    params = {"limit": 0, **({"where": where} if where else {})}
    response = _get(session, base + RECORDS_PATH, params, timeout, attempts, backoff)
    try:
        total = json.loads(_read_capped(response, COUNT_BYTES, deadline, "record count"))["total_count"]
        if isinstance(total, bool) or not isinstance(total, int) or not 0 <= total <= MAX_ROWS:
            raise ValueError(f"total_count {str(total)[:40]} is not a row count up to {MAX_ROWS:,}")
        return total
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise Refused(f"record count unreadable: {type(exc).__name__}: {exc}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise Refused(f"record count unreadable: {exc}") from None
    finally:
        response.close()


def _body(session, base: str, params: dict, timeout, attempts, backoff, expected: int,
          cap: int, deadline: float) -> bytes:
    """The whole body, read with progress; a connection cut mid-body is retried."""
    last = ""
    for attempt in range(1, attempts + 1):
        started = shown = time.monotonic()
        size = 0

        def progress(received):
            nonlocal shown, size
            size = received
            if time.monotonic() - shown >= 5:
                shown = time.monotonic()
                say(f"portal: {received / 1e6:.1f} MB received ({received / (shown - started) / 1e6:.1f}"
                    f" MB/s; ~{expected:,} rows expected)")

        try:
            response = _get(session, base + EXPORT_PATH, params, timeout, 1, backoff)
        except Refused as exc:
            response, last = None, str(exc)
        try:
            if response is None:
                raise requests.RequestException(last)
            return _read_capped(response, cap, deadline, "export", progress)
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            # urllib3 enforces Content-Length: a body shorter than announced lands here.
            if response is not None:
                last = f"download cut after {size:,} bytes: {type(exc).__name__}: {exc}"
        finally:
            if response is not None:
                response.close()
        if attempt < attempts:
            if time.monotonic() + backoff * 2 ** (attempt - 1) > deadline:
                raise Refused(f"{last}; no time left before the download deadline to retry")
            say(f"portal: {last}; retry {attempt}/{attempts - 1}")
            time.sleep(backoff * 2 ** (attempt - 1))
    raise Refused(last)


def parse(body: bytes, expected: int | None) -> Download:
    """Rows of a `use_labels=true` semicolon export; Refused if it is not whole."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Refused(f"body is not UTF-8 ({exc})") from None
    if text and not text.endswith("\n"):
        raise Refused("body does not end with a line end: it was cut")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=";")
    header = next(reader, None)
    if header is None:
        raise Refused("empty body: no header")
    missing = [label for label in LABELS if label not in header]
    if missing:
        raise Refused(f"schema changed: missing column(s) {', '.join(map(repr, missing))}; "
                      f"header is {';'.join(header)!r}")
    at = [header.index(label) for label in LABELS]
    width = len(header)
    rows, refused, received = [], {}, 0
    for line, fields in enumerate(reader, 2):
        received += 1
        if len(fields) != width:
            raise Refused(f"line {line} has {len(fields)} fields, the header {width}: garbled or cut")
        name, count, moment, coordinates = (fields[i].strip() for i in at)
        try:
            when = dt.datetime.fromisoformat(moment)
        except ValueError:
            raise Refused(f"line {line}: unreadable date {moment[:40]!r}") from None
        if when.tzinfo is None:
            raise Refused(f"line {line}: date {moment!r} has no UTC offset")
        why = None
        try:
            value = float(count)
            if math.isnan(value):
                why = "not a number"
            elif math.isinf(value):
                why = "infinite count"
            elif value < 0:
                why = "negative count"
        except ValueError:
            why = "no count" if not count else "bad count"
        lat = lon = float("nan")
        if why is None:
            try:
                lat_text, lon_text = coordinates.split(",")
                lat, lon = float(lat_text), float(lon_text)
                if not (abs(lat) <= 90 and abs(lon) <= 180):     # NaN too
                    why = "bad coordinates"
            except ValueError:
                why = "no coordinates" if not coordinates else "bad coordinates"
        if why is None and not name:
            why = "no counter name"
        elif why is None and (len(name) > MAX_NAME or not name.isprintable()):
            why = "bad counter name"
        if why:
            refused[why] = refused.get(why, 0) + 1
            continue
        rows.append((name, int(when.timestamp()), value, lat, lon))
    if expected is not None and received < expected:
        raise Refused(f"got {received:,} rows, the portal counts {expected:,}: the body was cut")
    bad = sum(refused.values())
    if received and bad > MAX_BAD_ROW_SHARE * received:
        raise Refused(f"{bad:,} of {received:,} rows unusable ({refused}): garbled")
    return Download(rows, received, refused, len(body))


def byte_cap(expected_rows: int) -> int:
    return BYTES_PER_ROW * expected_rows + BYTES_SLACK


def fetch(source: str, since: dt.datetime | None, until: dt.datetime | None = None,
          timeout=TIMEOUT, attempts: int = ATTEMPTS, backoff: float = BACKOFF_SECONDS,
          max_seconds: float | None = None) -> Download:
    """Every row with since <= date < until, checked whole (raises Refused).
    `max_seconds` overrides the deadline derived from the byte cap (tests)."""
    base = source.rstrip("/")
    where = where_clause(since, until)
    params = {"select": ",".join(FIELDS), "order_by": "date", "use_labels": "true",
              "timezone": "Europe/Paris", "with_bom": "true"}
    if where:
        params["where"] = where
    started = time.monotonic()
    # The count call is small: it gets the base deadline (or the override) on its own.
    deadline = started + (DEADLINE_BASE if max_seconds is None else max_seconds)
    with requests.Session() as session:
        expected = _count(session, base, where, timeout, attempts, backoff, deadline)
        cap = byte_cap(expected)
        if max_seconds is None:
            deadline = started + DEADLINE_BASE + cap / DEADLINE_RATE
        say(f"portal: {expected:,} rows to fetch ({where or 'everything'}; at most {cap / 1e6:.1f} MB"
            f" within {deadline - started:.0f} s)")
        body = _body(session, base, params, timeout, attempts, backoff, expected, cap, deadline)
    download = parse(body, expected)
    download.seconds = time.monotonic() - started
    return download
