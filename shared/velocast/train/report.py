"""Live accuracy per day and model version, from the retrains' `live/` objects, as a PNG.

    python -m velocast.train.report --store URI [--out reports/live-accuracy.png]

Each retrain re-scores every served model on all the days since its training, so a
day may have several measurements of one version; the newest (late corrections
included) is plotted.
"""

from __future__ import annotations

import argparse
import json
import sys

from velocast import promotions
from velocast.store import open_store

PANELS = (("regress", "rmse_log", "RMSE of log1p(count), lower is better"),
          ("regress", "mae", "MAE (bikes per hour), lower is better"),
          ("classify", "f1_score", "F1 of 'forte' (busy), higher is better"))


def collect(store) -> dict:
    """{(task, model_type, version): {day: {metric: value, "rows": n}}}, newest run wins."""
    series: dict = {}
    for task in ("regress", "classify"):
        for name in sorted(store.list(f"{promotions.LIVE}{task}/")):
            run = json.loads(store.read(name))
            for model in run.get("models", []):
                key = (task, model["model_type"], model["version"])
                series.setdefault(key, {}).update(model.get("days", {}))
    return series


def plot(series: dict, out: str) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(PANELS), 1, figsize=(10, 9), sharex=True)
    points = 0
    for ax, (task, metric, title) in zip(axes, PANELS):
        for (t, model_type, version), days in sorted(series.items()):
            xs = sorted(d for d in days if t == task and metric in days[d])
            if not xs:
                continue
            ax.plot(xs, [days[d][metric] for d in xs], marker="o", ms=3,
                    label=f"{model_type} {version[:15]}")
            points += len(xs)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, ncol=2)
    axes[-1].tick_params(axis="x", rotation=60, labelsize=7)
    fig.suptitle("velocast: live accuracy of served models on actuals after their training")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    return points


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m velocast.train.report", description=__doc__)
    parser.add_argument("--store", required=True)
    parser.add_argument("--out", default="reports/live-accuracy.png")
    args = parser.parse_args(argv)
    series = collect(open_store(args.store))
    if not series:
        print(f"no live accuracy in {args.store} yet (run a retrain after a first one)",
              file=sys.stderr)
        return 1
    import os

    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    points = plot(series, args.out)
    print(f"wrote {args.out}: {len(series)} model versions, {points} day points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
