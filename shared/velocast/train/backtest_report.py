"""The backtest's Markdown report and figure, both drawn from its JSON report."""

from __future__ import annotations

from pathlib import Path

from velocast.core.intervals import HORIZONS
from velocast.train.backtest_score import DAY_TYPE_NAMES, MARGIN
from velocast.train.calibration import LEVEL

REGRESS_METRICS = ("rmse_log", "mae", "r2", "coverage", "width")
CLASSIFY_METRICS = ("f1_score", "accuracy", "roc_auc")


def one(v) -> str:
    return "-" if v is None else f"{v:.4f}" if abs(v) < 100 else f"{v:.1f}"


def pm(v) -> str:
    return "-" if v is None else f"{one(v[0])} ± {one(v[1])}"


def _table(rows: dict, metrics: tuple, cell) -> list[str]:
    lines = ["| model | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for name, values in rows.items():
        if any(m in values for m in metrics):
            lines.append(f"| {name} | " + " | ".join(cell(values.get(m)) for m in metrics) + " |")
    return lines


def _grouped(rows: dict, groups, metric: str) -> list[str]:
    lines = ["| model | " + " | ".join(groups) + " |", "|---" * (len(groups) + 1) + "|"]
    for name, values in rows.items():
        lines.append(f"| {name} | " + " | ".join(
            one(values.get(g, {}).get(metric)) for g in groups) + " |")
    return lines


def _having(rows: dict, metric: str) -> dict:
    """The models whose groups report `metric`."""
    return {n: v for n, v in rows.items() if any(metric in g for g in v.values())}


def fold_table(data: dict) -> list[str]:
    """RMSE log1p (F1 for the classifier) of every candidate on every fold."""
    folds = data["folds"]
    lines = ["| model | " + " | ".join(f"{f['index']}. {f['name']}" for f in folds) + " | mean |",
             "|---" * (len(folds) + 2) + "|"]
    for name, summary in data["summary"].items():
        metric = "rmse_log" if "rmse_log" in summary else "f1_score"
        lines.append(f"| {name} ({metric}) | " + " | ".join(
            one(f["scores"][name][metric]) for f in folds) + f" | {one(summary[metric][0])} |")
        if "f1_score" in summary and metric != "f1_score":
            lines.append(f"| {name} (f1_score) | " + " | ".join(
                one(f["scores"][name]["f1_score"]) for f in folds)
                + f" | {one(summary['f1_score'][0])} |")
    return lines


def decision_lines(data: dict) -> list[str]:
    lines = ["| candidate vs baseline | metric | mean gap | worst fold (gap) | folds better | kept |",
             "|---|---|---|---|---|---|"]
    for pair, d in data["decisions"].items():
        lines.append(f"| {pair} | {d['metric']} | {d['mean_gap']:+.4f} | {d['worst_fold']} "
                     f"({d['worst_gap']:+.4f}) | {d['folds_better']} of {len(d['fold_gaps'])} | "
                     f"{'yes' if d['kept'] else '**no**'} |")
    return lines


def markdown(data: dict) -> str:
    config, folds = data["config"], data["folds"]
    horizons = [h.name for h in HORIZONS]
    lines = [f"# Backtest ({len(folds)} folds at the year's transitions, {config['horizon_days']} "
             f"days from each origin, feature spec {data['feature_spec_version']})", "",
             f"Data: `{config['data']}`. Each fold fits on every row before its origin and "
             "forecasts the next days as a published model would until replaced; day 1 is the "
             "origin. `coverage`/`width` are those of the "
             f"{LEVEL:.0%} interval, calibrated per horizon on the other folds. Decision rule: "
             f"a candidate is kept over a baseline when it is better on the mean and no fold "
             f"is worse by more than {MARGIN['rmse_log']} RMSE log1p ({MARGIN['f1_score']} F1).",
             "", "## RMSE log1p by horizon (mean over the folds)", ""]
    lines += _grouped(_having(data["summary_by_horizon"], "rmse_log"), horizons, "rmse_log")
    lines += ["", "Affluence F1 by horizon (mean over the folds; higher is better):", ""]
    lines += _grouped(_having(data["summary_by_horizon"], "f1_score"), horizons, "f1_score")
    lines += ["", "Interval coverage by horizon (target 0.80):", ""]
    lines += _grouped({n: v for n, v in data["summary_by_horizon"].items()
                       if "coverage" in next(iter(v.values()))}, horizons, "coverage")
    lines += ["", "## RMSE log1p by day type (mean over the folds)", ""]
    lines += _grouped(data["summary_by_day_type"], DAY_TYPE_NAMES, "rmse_log")
    lines += ["", "## Per fold", ""] + fold_table(data)
    lines += ["", "## Decision rule", ""] + decision_lines(data)
    lines += ["", "## Mean ± sd over the folds", "", "Regression (log1p(count) models):", ""]
    lines += _table(data["summary"], REGRESS_METRICS, pm)
    lines += ["", "Affluence (busy = above the counter's mean):", ""]
    lines += _table(data["summary"], CLASSIFY_METRICS, pm)
    for f in folds:
        lines += ["", f"## Fold {f['index']}, {f['name']}: scored {f['origin']} to before "
                      f"{f['end']} ({f['scored_rows']:,} rows), fitted on {f['fit_rows']:,} "
                      "earlier rows", ""]
        lines += _table(f["scores"], REGRESS_METRICS, one) + [""]
        lines += _table(f["scores"], CLASSIFY_METRICS, one) + ["", "RMSE log1p by horizon:", ""]
        lines += _grouped(_having(f["by_horizon"], "rmse_log"), horizons, "rmse_log")
        lines += ["", "F1 by horizon:", ""]
        lines += _grouped(_having(f["by_horizon"], "f1_score"), horizons, "f1_score")
    return "\n".join(lines) + "\n"


def plot(data: dict, path: Path) -> None:
    import matplotlib  # noqa: PLC0415  (a dev dependency, only for the figure)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    names = list(data["summary"])
    colour = {n: plt.get_cmap("tab10")(i) for i, n in enumerate(names)}
    folds = data["folds"]
    labels = [f"{f['index']}. {f['origin']}" for f in folds]
    horizons = [h.name for h in HORIZONS]
    fig, axes = plt.subplots(1, 4, figsize=(20, 5))
    panels = (
        (axes[0], "RMSE by horizon (mean over folds)", "horizon after the training end",
         "RMSE of log1p(hourly count)", horizons,
         lambda n: [data["summary_by_horizon"].get(n, {}).get(h, {}).get("rmse_log") for h in horizons]),
        (axes[1], "RMSE per transition fold", "fold origin (first forecast day)",
         "RMSE of log1p(hourly count)", labels,
         lambda n: [f["scores"][n].get("rmse_log") for f in folds]),
        (axes[2], f"{LEVEL:.0%} interval coverage per fold", "fold origin (first forecast day)",
         "share of hourly counts inside the interval", labels,
         lambda n: [f["scores"][n].get("coverage") for f in folds]),
        (axes[3], "Affluence F1 per fold (higher is better)", "fold origin (first forecast day)",
         "F1 score of 'busy hour'", labels,
         lambda n: [f["scores"][n].get("f1_score") for f in folds]),
    )
    for ax, title, xlabel, ylabel, ticks, values in panels:
        for name in names:
            ys = values(name)
            if all(v is not None for v in ys):
                ax.plot(ticks, ys, marker="o", color=colour[name], label=name)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.tick_params(axis="x", rotation=45)
        ax.legend(fontsize=8)
    axes[2].axhline(LEVEL, color="black", linestyle="--", linewidth=1, label=f"target {LEVEL}")
    axes[2].legend(fontsize=8)
    fig.suptitle(f"Backtest at the year's transitions: {len(folds)} folds, "
                 f"{data['config']['horizon_days']} days from each origin "
                 f"({data['config']['data']})")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
