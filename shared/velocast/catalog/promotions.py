"""Which published models are served: promotions, and what they did on live data.

Layout (write-once, like the registry)::

    promotions/{task}/{version}.json   one per retrain that promoted something
    live/{task}/{run}.json             each retrain's scores of the served models on
                                       the actuals that arrived after their training

A promotion lists, for every model type of its task, the entry served from then on
(a promoted challenger or the champion it kept) and the metrics of each, all measured
by one retrain on the same held-out rows. Metrics of different promotions were measured
on different rows and are never compared. The rules that turn entries and promotions
into what is served are in `velocast.catalog`, the one place that answers it.

Runtime code: standard library only.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass

from velocast.catalog.store import NotFound, Store

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


# ------------------------------------------------------------------------ live accuracy

def newest_live(store: Store, task: str) -> dict | None:
    from velocast.catalog import valid_version  # noqa: PLC0415  (catalog imports this module)

    names = [n for n in store.list(f"{LIVE}{task}/") if n.endswith(".json")
             and valid_version(n.rsplit("/", 1)[-1][:-5])]
    return _read_json(store, max(names)) if names else None
