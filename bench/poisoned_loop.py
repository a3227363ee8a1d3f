"""The daily loop replayed twice over the shared file's last weeks, once on the real
rows and once with a poisoned portal, beside the year model that is never retrained.

    python bench/poisoned_loop.py [--days 14] [--out bench/poisoned-loop.json]

The poisoned portal serves, inside the replay: seven days of counts x1000 for every
counter, one day of a constant "42" for 20 counters, and one row dated 2030. Each
morning (the portal publishing up to the previous midnight) both stores run the
retrain (gbdt and affluence, 60-day window, as bench/daily_loop.py's month); then the
gbdt each store serves is scored on that day's real counts (what users got that day)
and asked for the reference panel (every counter x the next 7 days). Reports per day
and overall: RMSE log1p of the clean loop, the poisoned loop and the year model, and
the poisoned loop's panel answers over the clean loop's (the issue's bar: within 2x).
No network: the portal is the loopback stand-in, the stores are folders.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.daily_loop import DATA, LAST_DAY, midnight  # noqa: E402
from tests.fake_portal import FakePortal, load_rows  # noqa: E402
from velocast import catalog  # noqa: E402
from velocast.core.features import Records, build_matrix  # noqa: E402
from velocast.core.local_time import PARIS  # noqa: E402
from velocast.catalog.store import open_store  # noqa: E402
from velocast.train import gate  # noqa: E402
from velocast.train.data import load_counts  # noqa: E402
from velocast.train.pipeline import train  # noqa: E402
from velocast.train.retrain import retrain  # noqa: E402

MODELS = ["gbdt", "affluence"]


def poison(rows: list[dict], first_day: dt.date) -> list[dict]:
    """A copy of the portal's rows with the hostile cases planted in the replay."""
    week = {(first_day + dt.timedelta(days=3 + i)).isoformat() for i in range(7)}
    constant = (first_day + dt.timedelta(days=11)).isoformat()
    names = sorted({r["nom_compteur"] for r in rows})[:20]
    out = []
    for row in rows:
        row = dict(row)
        day = dt.datetime.fromtimestamp(row["_epoch"], PARIS).date().isoformat()
        if day in week:
            row["sum_counts"] = str(float(row["sum_counts"] or 0) * 1000)
        elif day == constant and row["nom_compteur"] in names:
            row["sum_counts"] = "42"
        out.append(row)
    future = dict(rows[-1])
    future_epoch = int(dt.datetime(2030, 1, 1, 12, tzinfo=dt.timezone.utc).timestamp())
    future.update(_epoch=future_epoch, date="2030-01-01T13:00:00+01:00")
    # Published with the replay's sixth day, like a row the portal got wrong that day.
    future["_published"] = midnight(first_day + dt.timedelta(days=6))
    out.append(future)
    return out


def served_gbdt(store):
    entry = catalog.Snapshot.read(store, "regress").served_by_type().get("gbdt")
    return None if entry is None else catalog.load(store, entry)


def log_prediction(model, frame: pd.DataFrame) -> np.ndarray:
    records = Records(frame["counter"].tolist(), frame["epoch"].to_numpy(),
                      frame["latitude"].to_numpy(), frame["longitude"].to_numpy())
    return model.output(build_matrix(records, model.table).matrix)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--out", default=str(ROOT / "bench" / "poisoned-loop.json"))
    args = parser.parse_args()
    first_day = LAST_DAY - dt.timedelta(days=args.days - 1)
    truth, _ = load_counts(str(DATA), report_to=None)
    truth["day"] = pd.to_datetime(truth["epoch"], unit="s", utc=True).dt.tz_convert(PARIS).dt.date
    rows = load_rows(DATA, first_day=(first_day - dt.timedelta(days=70)).isoformat())
    work = Path(tempfile.mkdtemp(prefix="velocast-poison-"))
    stores = {"clean": str(work / "clean"), "poisoned": str(work / "poisoned")}

    # The year model: everything before the replay, never retrained.
    year_store = str(work / "year")
    train(truth[truth["day"] < first_day].drop(columns="day"), year_store, ["gbdt"])
    year = served_gbdt(open_store(year_store))

    portals = {"clean": FakePortal(rows), "poisoned": FakePortal(poison(rows, first_day))}
    days_out = []
    try:
        for offset in range(args.days):
            day = first_day + dt.timedelta(days=offset)
            line = {"day": day.isoformat()}
            actual = truth[truth["day"] == day]
            models = {}
            for name, portal in portals.items():
                portal.available_until = midnight(day)
                started = time.perf_counter()
                report = retrain(stores[name], portal.url, MODELS, window_days=60)
                line[f"{name}_seconds"] = round(time.perf_counter() - started, 1)
                line[f"{name}_decisions"] = [d.line() for d in report.decisions]
                if name == "poisoned" and report.ingest is not None:
                    line["poisoned_ingest"] = report.ingest.line()
                models[name] = served_gbdt(open_store(stores[name]))
            models["year"] = year
            for name, model in models.items():
                if model is not None and not actual.empty:
                    error = np.log1p(actual["count"].to_numpy()) - log_prediction(model, actual)
                    line[f"{name}_rmse_log"] = round(float(np.sqrt(np.mean(error ** 2))), 4)
            if models["clean"] is not None and models["poisoned"] is not None:
                panel = gate.panel(models["clean"].table, (day - dt.timedelta(days=1)).isoformat())
                clean = np.expm1(models["clean"].output(build_matrix(panel, models["clean"].table).matrix))
                bad = np.expm1(models["poisoned"].output(build_matrix(panel, models["poisoned"].table).matrix))
                ratio = (bad + 1) / (clean + 1)
                line["panel_ratio_max"] = round(float(ratio.max()), 3)
                line["panel_ratio_min"] = round(float(ratio.min()), 3)
                # Each counter's forecast daily total, the figure a person reads.
                shape = (len(models["clean"].table.names), gate.PANEL_DAYS, 24)
                daily = bad.reshape(shape).sum(axis=2) / clean.reshape(shape).sum(axis=2)
                line["daily_ratio_max"] = round(float(daily.max()), 3)
                line["daily_ratio_min"] = round(float(daily.min()), 3)
                line["daily_ratio_median"] = round(float(np.median(daily)), 3)
                worst = int(np.argmax(np.abs(np.log(daily)).max(axis=1)))
                line["daily_ratio_worst"] = models["clean"].table.names[worst]
            days_out.append(line)
            print(json.dumps({k: v for k, v in line.items() if not k.endswith("decisions")}), flush=True)
    finally:
        for portal in portals.values():
            portal.close()
    summary = {name: round(float(np.mean([d[f"{name}_rmse_log"] for d in days_out
                                           if f"{name}_rmse_log" in d])), 4)
               for name in ("clean", "poisoned", "year")}
    ratios = [d for d in days_out if "panel_ratio_max" in d]
    summary["panel_ratio_max"] = max(d["panel_ratio_max"] for d in ratios) if ratios else None
    summary["panel_ratio_min"] = min(d["panel_ratio_min"] for d in ratios) if ratios else None
    summary["daily_ratio_max"] = max(d["daily_ratio_max"] for d in ratios) if ratios else None
    summary["daily_ratio_min"] = min(d["daily_ratio_min"] for d in ratios) if ratios else None
    summary["days"] = args.days
    Path(args.out).write_text(json.dumps({"summary": summary, "days": days_out}, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
