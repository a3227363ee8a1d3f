"""Which published models are served: promotions, and what they did on live data.

Layout (write-once, like the registry)::

    promotions/{task}/{version}.json   one per retrain that promoted something
    live/{task}/{run}.json             each retrain's scores of the served models on
                                       the actuals that arrived after their training

A promotion lists, for every model type of its task, the entry served from then on
(a promoted challenger or the champion it kept) and the metrics of each, all measured
by one retrain on the same held-out rows. Serving takes, per model type, the newest
promotion's entry; a request without a model type gets the best type *of that
promotion* by the requested metric: metrics of different promotions were measured
on different rows and are never compared. A store without promotions (written before
this module existed, or by `make train` alone) is served as before: the best entry
by the metric each entry carries.

Runtime code: standard library only.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import re
from dataclasses import dataclass
from typing import Iterable

from .registry import METRIC_DIRECTIONS, Entry, ranked
from .store import NotFound, Store, StoreError

log = logging.getLogger(__name__)

PROMOTIONS = "promotions/"
LIVE = "live/"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class Promotion:
    task: str
    version: str
    served: dict          # model_type -> {"version", "metrics", "promoted"}
    holdout: dict
    created_at: str = ""

    @property
    def path(self) -> str:
        return f"{PROMOTIONS}{self.task}/{self.version}.json"

    def to_dict(self) -> dict:
        return {"task": self.task, "version": self.version, "served": self.served,
                "holdout": self.holdout, "created_at": self.created_at}

    @classmethod
    def from_dict(cls, d) -> "Promotion":
        if not isinstance(d, dict) or not isinstance(d.get("served"), dict):
            raise ValueError("a promotion is an object with a 'served' mapping")
        for model_type, item in d["served"].items():
            if not (_NAME_RE.match(model_type) and isinstance(item, dict)
                    and isinstance(item.get("version"), str)
                    and isinstance(item.get("metrics"), dict)):
                raise ValueError(f"malformed served item {model_type!r}")
        if not _NAME_RE.match(str(d.get("version", ""))):
            raise ValueError("promotion version must be a simple name")
        return cls(str(d["task"]), d["version"], d["served"], d.get("holdout") or {},
                   str(d.get("created_at", "")))


def _read_json(store: Store, name: str):
    try:
        return json.loads(store.read(name).decode("utf-8"))
    except NotFound:
        return None
    except (ValueError, UnicodeDecodeError) as e:
        log.warning("skipping unreadable %s: %s", name, e)
        return None


def list_promotions(store: Store, task: str) -> list[Promotion]:
    """The task's promotions, oldest first; malformed ones are skipped with a warning.
    StoreUnavailable propagates (a partial view would serve an older generation)."""
    out = []
    for name in store.list(f"{PROMOTIONS}{task}/"):
        raw = _read_json(store, name)
        if raw is None:
            continue
        try:
            promotion = Promotion.from_dict(raw)
        except (ValueError, TypeError, KeyError) as e:
            log.warning("skipping malformed promotion %s: %s", name, e)
            continue
        if promotion.path == name and promotion.task == task:
            out.append(promotion)
    return sorted(out, key=lambda p: p.version)


def write_promotion(store: Store, promotion: Promotion) -> None:
    store.write_once(promotion.path, json.dumps(promotion.to_dict(), indent=2, sort_keys=True,
                                                allow_nan=False).encode(), "application/json")


def _score(metrics: dict, metric: str) -> float | None:
    value = metrics.get(metric)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return value if METRIC_DIRECTIONS[metric] == "max" else -value


def served(entries: Iterable[Entry], promotions: Iterable[Promotion], task: str,
           model_type: str | None = None, metric: str | None = None) -> list[Entry]:
    """The entries to serve for (task, model type, metric), best first; the ones after
    the first are fallbacks (older promotions) for when the first cannot be loaded."""
    from .registry import DEFAULT_METRIC

    metric = metric or DEFAULT_METRIC[task]
    pool = [e for e in entries if e.task == task and (model_type is None or e.model_type == model_type)]
    by_key = {(e.model_type, e.version): e for e in pool}
    generations = [p for p in promotions if p.task == task]
    if not generations:
        return ranked(pool, task, metric, model_type)
    out: list[Entry] = []
    for promotion in sorted(generations, key=lambda p: p.version, reverse=True):
        items = [(t, item) for t, item in promotion.served.items()
                 if (t, item["version"]) in by_key and (model_type is None or t == model_type)]
        scored = [(s, t, item) for t, item in items if (s := _score(item["metrics"], metric)) is not None]
        for _, t, item in sorted(scored, key=lambda x: x[0], reverse=True):
            entry = by_key[(t, item["version"])]
            if entry not in out and metric in entry.metrics:
                out.append(entry)
    return out


# ------------------------------------------------------------------------ live accuracy

def newest_live(store: Store, task: str) -> dict | None:
    names = [n for n in store.list(f"{LIVE}{task}/") if n.endswith(".json")]
    return _read_json(store, max(names)) if names else None


def describe_served(store: Store, entries: list[Entry], task: str) -> list[dict]:
    """Per served model type: version, age, and its live accuracy as last measured."""
    try:
        promotions = list_promotions(store, task)
        live = newest_live(store, task) or {}
    except StoreError as e:
        log.warning("cannot read promotions or live accuracy: %s", e)
        return []
    by_version = {(m["model_type"], m["version"]): m for m in live.get("models", [])}
    now = _dt.datetime.now(_dt.timezone.utc)
    out = []
    for model_type in sorted({e.model_type for e in entries if e.task == task}):
        chosen = served(entries, promotions, task, model_type)
        if not chosen:
            continue
        entry = chosen[0]
        published = _dt.datetime.fromisoformat(entry.published_at.replace("Z", "+00:00"))
        measured = by_version.get((model_type, entry.version), {})
        out.append({"model_type": model_type, "version": entry.version,
                    "promoted": bool(promotions), "trained_to": entry.trained_to,
                    "age_days": round((now - published).total_seconds() / 86400, 2),
                    "live": {"measured_at": live.get("created_at"),
                             "rows_checked": measured.get("rows", 0),
                             "metrics": measured.get("metrics", {}),
                             "days": measured.get("days", {})}})
    return out
