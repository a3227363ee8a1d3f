"""python -m velocast.ingest --store DIR_OR_GS_URI [--source URL] [--until ISO]"""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from velocast.train.ingest import OVERLAP_HOURS, ingest
from velocast.train.portal import DEFAULT_SOURCE


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
    args = parser.parse_args(argv)
    report = ingest(args.store, args.source, args.overlap_hours, args.until)
    print(report.line())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
