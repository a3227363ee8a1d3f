"""python -m velocast.train --data FILE --store DIR_OR_GS_URI"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from velocast.train.data import DataFormatError, load_counts
from velocast.train.pipeline import MODELS, say, summary_table, train


def main(argv=None, store=None) -> int:
    """`store`: an opened Store to publish to instead of opening --store (velocast.publish
    passes one whose client acts as the trainer service account)."""
    parser = argparse.ArgumentParser(
        prog="python -m velocast.train",
        description="Train, evaluate on a time-based holdout, export to ONNX, check parity "
                    "and publish the models to a store.")
    parser.add_argument("--data", required=True, help="Paris export CSV (optionally .gz)")
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
        frame, _ = load_counts(args.data)
        models = [m.strip() for m in args.models.split(",") if m.strip()]
        report = json.loads(Path(args.backtest).read_text()) if args.backtest else None
        outcomes = train(frame, store or args.store, models, args.holdout_days, report,
                         Path(args.data).name)
    except (DataFormatError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary_table(outcomes))
    say(f"done in {time.perf_counter() - started:.0f} s")
    refused = [o for o in outcomes if o.refused]
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main())
