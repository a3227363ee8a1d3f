"""Live accuracy per day and model version, from the retrains' `live/` objects, as a PNG.

    python -m velocast.train.report --store URI [--out reports/live-accuracy.png]

Each retrain re-scores every served model on all the days since its training, so a
day may have several measurements of one version; the newest (late corrections
included) is plotted. The model `make train` published first, never retrained, is
scored beside them (dashed): what the daily retrains bought. The bottom panel gives
the rows scored per day, so a day with a few hours is not read like a full one.
"""

from __future__ import annotations

import argparse
import json
import sys

from velocast.catalog import promotions

from velocast.core import tasks
from velocast.catalog.store import open_store

# One panel per metric each task's kind tracks live.
PANELS = tuple((t.name, m, f"{t.name}: {t.kind.metric_titles.get(m, m)}")
               for t in tasks.TASKS.values() for m in t.kind.live_metrics)


def collect(store, references: dict | None = None) -> dict:
    """{(task, model_type, version): {day: {metric: value, "rows": n}}}, newest run wins;
    the never-retrained reference models go to `references` under the same keys."""
    series: dict = {}
    for task in tasks.TASK_NAMES:
        for name in sorted(store.list(f"{promotions.LIVE}{task}/")):
            run = json.loads(store.read(name))
            for model in run.get("models", []):
                key = (task, model["model_type"], model["version"])
                target = series if not model.get("reference") else \
                    references if references is not None else {}
                target.setdefault(key, {}).update(model.get("days", {}))
    return series


def plot(series: dict, out: str, references: dict | None = None) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(PANELS) + 1, 1, figsize=(10, 11), sharex=True)
    points = 0
    all_days = sorted({d for days in series.values() for d in days})
    for ax, (task, metric, _) in zip(axes, PANELS):
        for (t, model_type, version), days in sorted((references or {}).items()):
            xs = [d for d in all_days if d in days and metric in days[d]]
            if t == task and xs:
                ax.plot(xs, [days[d][metric] for d in xs], "--", color="0.35", lw=1,
                        label=f"{model_type} {version[:8]}: never retrained (reference)")
    for ax, (task, metric, title) in zip(axes, PANELS):
        # Per model type: each day scored by the version served that day (the newest
        # version measured on it), versions marked where they change; older versions
        # re-scored on the same days in grey.
        by_type: dict = {}
        for (t, model_type, version), days in series.items():
            for day, figures in days.items():
                if t == task and metric in figures:
                    by_type.setdefault(model_type, {}).setdefault(day, []).append(
                        (version, figures[metric]))
        for model_type, days in sorted(by_type.items()):
            xs = sorted(days)
            served = [max(days[d]) for d in xs]
            line, = ax.plot(xs, [v for _, v in served], marker="o", ms=3,
                            label=f"{model_type}: served that day "
                                  f"({len({v for v, _ in served})} versions)")
            changes = [i for i in range(len(xs)) if i == 0 or served[i][0] != served[i - 1][0]]
            ax.plot([xs[i] for i in changes], [served[i][1] for i in changes], "o",
                    mfc="none", ms=7, color=line.get_color())
            older = [(d, v) for d in xs for version, v in days[d] if version != max(days[d])[0]]
            if older:
                ax.plot([d for d, _ in older], [v for _, v in older], ".", color="0.75",
                        label=f"{model_type}: older versions re-scored")
            points += sum(len(days[d]) for d in xs)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    rows: dict = {}
    for (task, _, _), days in series.items():
        for day, figures in days.items():
            rows.setdefault(task, {})[day] = max(rows.get(task, {}).get(day, 0), figures.get("rows", 0))
    for task, by_day in sorted(rows.items()):
        xs = sorted(by_day)
        axes[-1].plot(xs, [by_day[d] for d in xs], marker="s", ms=3, label=task)
    axes[-1].set_title("Rows scored per day (counter-hours with actuals)", fontsize=10)
    axes[-1].set_ylabel("rows")
    axes[-1].grid(alpha=0.3)
    axes[-1].legend(fontsize=7)
    axes[-1].set_xlabel("Paris day")
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
    references: dict = {}
    series = collect(open_store(args.store), references)
    if not series:
        print(f"no live accuracy in {args.store} yet (run a retrain after a first one)",
              file=sys.stderr)
        return 1
    import os

    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    points = plot(series, args.out, references)
    print(f"wrote {args.out}: {len(series)} model versions, {points} day points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
