"""python -m velocast.train (--data FILE | --from-store [URI]) --store DIR_OR_GS_URI"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from velocast.catalog.store import StoreError, open_store
from velocast.train.counts import load_window
from velocast.train.data import DataFormatError, load_counts
from velocast.train.pipeline import MODELS, say, summary_table, train


WINDOW_DAYS = 396


def load_frame(data: str | None, store_uri: str | None, window_days: int = WINDOW_DAYS):
    """The training rows: from an export file, or the newest days ingested into a store."""
    if data:
        return load_counts(data)[0]
    if not store_uri:
        raise ValueError("--from-store needs a store URI (or --store)")
    return load_window(open_store(store_uri), window_days)


def main(argv=None, store=None) -> int:
    """`store`: an opened Store to publish to instead of opening --store (velocast.train.publish
    passes one whose client acts as the trainer service account)."""
    parser = argparse.ArgumentParser(
        prog="python -m velocast.train",
        description="Train, evaluate on a time-based holdout, export to ONNX, check parity "
                    "and publish the models to a store.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="Paris export CSV (optionally .gz)")
    source.add_argument("--from-store", nargs="?", const="", metavar="URI",
                        help="train on the counts ingested into a store (default: --store)")
    parser.add_argument("--window-days", type=int, default=WINDOW_DAYS,
                        help=f"with --from-store: the newest N days (default {WINDOW_DAYS}, "
                             "13 months, what the live export holds)")
    parser.add_argument("--store", help="folder or gs://bucket/prefix to publish to; "
                        "omit to evaluate only")
    parser.add_argument("--models", default=",".join(MODELS),
                        help=f"comma-separated, from {', '.join(MODELS)} (default: all)")
    parser.add_argument("--holdout-days", type=int, default=28,
                        help="the last N days are the holdout (default 28)")
    parser.add_argument("--backtest", help="JSON report of `make backtest` on the same data: "
                        "its table and interval calibration go into the model cards")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        frame = load_frame(args.data, args.from_store or args.store, args.window_days)
        models = [m.strip() for m in args.models.split(",") if m.strip()]
        report = json.loads(Path(args.backtest).read_text()) if args.backtest else None
        outcomes = train(frame, store or args.store, models, args.holdout_days, report,
                         Path(args.data).name)
    except (DataFormatError, ValueError, FileNotFoundError, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary_table(outcomes))
    say(f"done in {time.perf_counter() - started:.0f} s")
    refused = [o for o in outcomes if o.refused]
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
