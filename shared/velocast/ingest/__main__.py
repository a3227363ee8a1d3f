"""python -m velocast.ingest --store DIR_OR_GS_URI [--source URL] [--until ISO]
   python -m velocast.ingest --store DIR_OR_GS_URI --quarantined   # what was held back, why"""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from velocast.catalog.store import open_store
from velocast.train import counts
from velocast.train.ingest import OVERLAP_HOURS, ingest
from velocast.train.portal import DEFAULT_SOURCE


def show_quarantined(store_uri: str) -> int:
    manifest = counts.newest_manifest(open_store(store_uri))
    held = [(day, e) for day, entries in sorted(manifest.quarantined.items()) for e in entries]
    for day, entry in held:
        stored = "  (the day has stored rows too)" if day in manifest.days else ""
        print(f"{day}  {entry['rows']:>6,} rows  {entry['object']}  {'; '.join(entry['reasons'])}{stored}")
    print(f"{len(held)} quarantined object(s) in {manifest.name if manifest.seq else 'no manifest'}"
          " (never trained on; each .csv.gz has a .json with its reasons beside it)")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m velocast.ingest",
        description="Fetch the newest hourly counts from the Paris portal into a store.")
    parser.add_argument("--store", required=True, help="folder or gs://bucket/prefix")
    parser.add_argument("--source", default=DEFAULT_SOURCE,
                        help=f"portal base URL (default {DEFAULT_SOURCE})")
    parser.add_argument("--overlap-hours", type=int, default=OVERLAP_HOURS,
                        help=f"re-fetch this many hours before the newest stored one "
                             f"(late corrections; default {OVERLAP_HOURS})")
    parser.add_argument("--until", type=dt.datetime.fromisoformat,
                        help="fetch only rows before this instant (ISO 8601 with offset)")
    parser.add_argument("--quarantined", action="store_true",
                        help="list the rows held back by the checks and why, fetch nothing")
    args = parser.parse_args(argv)
    if args.quarantined:
        return show_quarantined(args.store)
    report = ingest(args.store, args.source, args.overlap_hours, args.until)
    print(report.line())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
