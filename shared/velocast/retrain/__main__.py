"""python -m velocast.retrain --store URI [--source URL] [--models ...] [--no-ingest]"""

from __future__ import annotations

import argparse
import sys

from velocast.catalog.store import StoreError
from velocast.train.pipeline import MODELS
from velocast.train.portal import DEFAULT_SOURCE
from velocast.train.retrain import HOLDOUT_DAYS, TOLERANCE, WINDOW_DAYS, retrain


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m velocast.retrain",
        description="Ingest, fit challengers, compare them with the served models on the "
                    "same newest days, publish and promote the ones that are not worse.")
    parser.add_argument("--store", required=True,
                        help="models store: folder or gs://bucket/prefix")
    parser.add_argument("--counts-store", help="where ingested counts are kept "
                        "(default: the models store)")
    parser.add_argument("--source", default=DEFAULT_SOURCE, help="portal base URL")
    parser.add_argument("--no-ingest", action="store_true", help="train on what is stored")
    parser.add_argument("--models", default=",".join(MODELS),
                        help=f"comma-separated, from {', '.join(MODELS)} (default: all)")
    parser.add_argument("--window-days", type=int, default=WINDOW_DAYS,
                        help=f"train on the newest N ingested days (default {WINDOW_DAYS})")
    parser.add_argument("--holdout-days", type=int, default=HOLDOUT_DAYS,
                        help=f"compare on the newest N whole days, left out of the candidate's fit (default {HOLDOUT_DAYS})")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE,
                        help=f"promote if not worse by more than this share (default {TOLERANCE})")
    args = parser.parse_args(argv)
    try:
        report = retrain(args.store, None if args.no_ingest else args.source,
                         [m.strip() for m in args.models.split(",") if m.strip()],
                         window_days=args.window_days, holdout_days=args.holdout_days,
                         tolerance=args.tolerance, counts_uri=args.counts_store)
    except (StoreError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.text())
    refused = report.ingest is not None and not report.ingest.ok
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
