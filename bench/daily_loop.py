"""The daily loop on the real data, against the loopback fake portal (no network).

    python bench/daily_loop.py cost  --store DIR              # one daily retrain on the whole file
    python bench/daily_loop.py month --store DIR [--days 31]  # a simulated month, day by day
    python bench/daily_loop.py dayahead [--days 31]           # day-ahead vs the year model

`cost`: the portal serves the whole shared file (2020-09-01 to 2021-08-09, ~11 months)
minus its last day; a first ingest fills the store, then the measured step is what
the scheduler runs each day: ingest the new day, fit every model type on the window,
compare, promote, publish. Run it under `/usr/bin/time -v` for the peak RSS.

`dayahead`: the daily loop's figure beside the year model's, without the portal: for
each of the file's last `--days` days, a gbdt fitted on every row before that day
forecasts it (day ahead, what the daily retrain serves), and the year model (fitted
once on the rows before the first replayed day, what a model left unretrained serves)
forecasts it too; RMSE log1p per day and over the span, written to
bench/daily_loop.json.

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
from velocast.core.local_time import PARIS  # noqa: E402
from velocast.catalog.store import open_store  # noqa: E402
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


def dayahead(days: int, model_type: str = "gbdt") -> dict:
    import numpy as np  # noqa: PLC0415
    from threadpoolctl import threadpool_limits  # noqa: PLC0415
    from velocast.train import pipeline  # noqa: PLC0415
    from velocast.train.data import load_counts  # noqa: PLC0415

    frame, _ = load_counts(DATA)
    first_day = LAST_DAY - dt.timedelta(days=days - 1)

    def fitted_before(day: dt.date):
        rows = pipeline.drop_outages(frame[frame["epoch"] < midnight(day)])
        table = pipeline.fit_table(rows)
        return pipeline.fit(pipeline.MODELS[model_type], pipeline.prepare(rows, table)), table

    def scored(model, table, day: dt.date) -> np.ndarray:
        rows = frame[(frame["epoch"] >= midnight(day))
                     & (frame["epoch"] < midnight(day + dt.timedelta(days=1)))]
        rows = pipeline.drop_outages(rows, partial=False)   # as the backtest scores
        data = pipeline.prepare(rows, table)
        return data.log_count - model.predict(data.matrix)

    per_day, loop, year = {}, [], []
    with threadpool_limits(1, user_api="openmp"):
        year_model, year_table = fitted_before(first_day)
        for offset in range(days):
            day = first_day + dt.timedelta(days=offset)
            started = time.perf_counter()
            model, table = fitted_before(day)
            loop.append(scored(model, table, day))
            year.append(scored(year_model, year_table, day))
            per_day[day.isoformat()] = {
                "daily_loop": float(np.sqrt(np.mean(loop[-1] ** 2))),
                "year_model": float(np.sqrt(np.mean(year[-1] ** 2)))}
            print(f"{day}: day-ahead {per_day[day.isoformat()]['daily_loop']:.3f}, year model "
                  f"{per_day[day.isoformat()]['year_model']:.3f} "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
    summary = {"model_type": model_type, "days": days, "from": first_day.isoformat(),
               "to": LAST_DAY.isoformat(),
               "rmse_log": {"daily_loop": float(np.sqrt(np.mean(np.concatenate(loop) ** 2))),
                            "year_model": float(np.sqrt(np.mean(np.concatenate(year) ** 2)))},
               "per_day": per_day}
    (ROOT / "bench" / "daily_loop.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary["rmse_log"]))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["cost", "month", "dayahead"])
    parser.add_argument("--store", help="cost and month: the store the loop publishes to")
    parser.add_argument("--days", type=int, default=31)
    parser.add_argument("--models", default="gbdt,rf,nn,affluence")
    args = parser.parse_args()
    if args.mode != "dayahead" and not args.store:
        parser.error(f"{args.mode} needs --store")
    if args.mode == "dayahead":
        dayahead(args.days)
    elif args.mode == "cost":
        cost(args.store, args.models.split(","))
    else:
        month(args.store, args.days)


if __name__ == "__main__":
    main()
