"""The daily loop on the real data, against the loopback fake portal (no network).

    python bench/daily_loop.py cost  --store DIR              # one daily retrain on the whole file
    python bench/daily_loop.py month --store DIR [--days 31]  # a simulated month, day by day

`cost`: the portal serves the whole shared file (2020-09-01 to 2021-08-09, ~11 months)
minus its last day; a first ingest fills the store, then the measured step is what
the scheduler runs each day: ingest the new day, fit every model type on the window,
compare, promote, publish. Run it under `/usr/bin/time -v` for the peak RSS.

`month`: the portal publishes one more day at a time for the file's last `--days`
days; each day runs a retrain (gbdt and affluence on a 60-day window, so a month
takes minutes, not hours), which also scores the served models on the new actuals.
Ends with the live-accuracy table and `reports/live-accuracy-month.png`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fake_portal import FakePortal, load_rows  # noqa: E402
from velocast.features import PARIS  # noqa: E402
from velocast.store import open_store  # noqa: E402
from velocast.train.ingest import ingest  # noqa: E402
from velocast.train.retrain import retrain  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "paris-bike-counts-2020-09-01_2021-08-09.csv.gz"
LAST_DAY = dt.date(2021, 8, 9)


def midnight(day: dt.date) -> int:
    return int(dt.datetime.combine(day, dt.time(), tzinfo=PARIS).timestamp())


def cost(store_uri: str, models: list[str]) -> None:
    started = time.perf_counter()
    portal = FakePortal(load_rows(DATA))
    print(f"portal loaded {len(portal.rows):,} rows in {time.perf_counter() - started:.0f} s")
    portal.available_until = midnight(LAST_DAY)
    first = ingest(store_uri, portal.url)
    print("first ingest:", first.line())
    portal.available_until = None
    started = time.perf_counter()
    report = retrain(store_uri, portal.url, models)
    print(report.text())
    print(f"daily retrain wall: {time.perf_counter() - started:.0f} s")
    portal.close()


def month(store_uri: str, days: int) -> None:
    first_day = LAST_DAY - dt.timedelta(days=days)
    rows = load_rows(DATA, first_day=(first_day - dt.timedelta(days=70)).isoformat())
    with FakePortal(rows) as portal:
        for offset in range(days + 1):
            day = first_day + dt.timedelta(days=offset)
            portal.available_until = midnight(day + dt.timedelta(days=1))
            started = time.perf_counter()
            report = retrain(store_uri, portal.url, ["gbdt", "affluence"], window_days=60)
            decided = "; ".join(f"{d.model_type} {'promoted' if d.promoted else 'kept'}"
                                for d in report.decisions)
            print(f"{day}: {decided} ({time.perf_counter() - started:.0f} s)", flush=True)
    store = open_store(store_uri)
    from velocast.train.report import collect, plot

    series = collect(store)
    out = ROOT / "reports" / "live-accuracy-month.png"
    out.parent.mkdir(exist_ok=True)
    plot(series, str(out))
    print(f"wrote {out}")
    summary = {f"{t}/{m}/{v}": {d: {k: round(x, 3) for k, x in s.items()} for d, s in sorted(days.items())}
               for (t, m, v), days in sorted(series.items())}
    print(json.dumps(summary, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["cost", "month"])
    parser.add_argument("--store", required=True)
    parser.add_argument("--days", type=int, default=31)
    parser.add_argument("--models", default="gbdt,rf,nn,affluence")
    args = parser.parse_args()
    if args.mode == "cost":
        cost(args.store, args.models.split(","))
    else:
        month(args.store, args.days)


if __name__ == "__main__":
    main()
