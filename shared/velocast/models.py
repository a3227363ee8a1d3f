"""List published models.

    python -m velocast.models --store URI [--task regress|classify] [--json]

The table groups models by task, newest version first within a model type, and marks
with ``*`` the model a function picks by default (`velocast.catalog`'s answer, the
same as `/models`' default: promotions first).
``--json`` prints the registry entries as a JSON list instead. Exit status: 0 (also
for an empty store), 1 if the store cannot be read, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from velocast.core import tasks
from velocast.catalog import Snapshot
from velocast.catalog.promotions import list_promotions
from velocast.catalog.registry import DEFAULT_METRIC, TASKS, list_entries
from velocast.catalog.store import StoreError, open_store

# Shown first, in this order, when present; other metrics follow alphabetically.
KEY_METRICS = {task.name: list(task.metrics) for task in tasks.TASKS.values()}


def _fmt_metric(v) -> str:
    if v is None:
        return "-"
    return f"{v:.0f}" if abs(v) >= 1000 else f"{v:.4g}"


def _fmt_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def _table(rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))]
        out.append("  ".join(cells).rstrip())
    return out


def render(entries, uri: str, promotions: dict | None = None) -> str:
    lines = []
    for task in sorted({e.task for e in entries}):
        group = [e for e in entries if e.task == task]
        # Two stable sorts: model type ascending, newest version first within a type.
        group.sort(key=lambda e: e.version, reverse=True)
        group.sort(key=lambda e: e.model_type)
        metric = DEFAULT_METRIC.get(task)
        chosen = Snapshot.of(task, group, (promotions or {}).get(task, ())).default() if metric else None
        present = {m for e in group for m in e.metrics}
        cols = [m for m in KEY_METRICS.get(task, []) if m in present]
        cols += sorted(present - set(cols))
        header = ["", "TYPE", "VERSION", *[c.upper() for c in cols], "TRAINED", "SIZE", "PUBLISHED"]
        rows = [header]
        for e in group:
            rows.append([
                "*" if e is chosen else "",
                e.model_type,
                e.version,
                *[_fmt_metric(e.metrics.get(c)) for c in cols],
                f"{e.trained_from[:10]}..{e.trained_to[:10]}",
                _fmt_size(e.size_bytes),
                e.published_at[:16].replace("T", " "),
            ])
        n = len(group)
        title = f"{task}: {n} model{'s' if n != 1 else ''}"
        if chosen is not None:
            title += f" (* = default choice, best by {metric})"
        lines.append(title)
        right = set(range(3, 3 + len(cols))) | {3 + len(cols) + 1}
        lines.extend(_table(rows, right))
        lines.append("")
    lines.append(f"store: {uri}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m velocast.models", description="List published models.")
    p.add_argument("--store", required=True, help="model store: a folder or gs://bucket[/prefix]")
    p.add_argument("--task", choices=TASKS, help="only this task")
    p.add_argument("--json", action="store_true", help="print the registry entries as JSON")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s", stream=sys.stderr)

    try:
        store = open_store(args.store)
        entries = list_entries(store, args.task)
        promotions = {t: list_promotions(store, t) for t in {e.task for e in entries}}
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1

    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=2, sort_keys=True, ensure_ascii=False))
        return 0
    if not entries:
        what = f"{args.task} models" if args.task else "models"
        print(f"No {what} published in {store.uri}.")
        return 0
    print(render(entries, store.uri, promotions))
    return 0


if __name__ == "__main__":
    sys.exit(main())
