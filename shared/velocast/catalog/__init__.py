"""The one answer to "which model is served": a snapshot of a task's registry entries
and promotions, the ranking rules, what /models says about them, and verified loading.

The model cache, `/models`, `/health`, the models CLI, the page's model panel and the
retrain's champion scoring all read a `Snapshot`; none ranks entries on its own.

Rules, in order:
- Only promotions whose version is in `registry.new_version`'s format and not in the
  future count: one named `zzzz` or dated 2027 outranked every later one while
  versions were compared as strings. They are ordered by the time it encodes.
- With promotions, each model type is served the entry of the newest promotion that
  lists it (older ones are fallbacks when it cannot be loaded).
- Without promotions, each type's best entry by its own holdout metric is served, but
  never an entry a retrain published for a promotion it did not write (`Entry.run`):
  its metric comes from another holdout than `make train`'s, and a retrain killed
  between publishing and promoting changed the default that way.
- The default type (a request without `model_type`) is the one with the best backtest
  mean for the metric when every served type carries one (`Entry.backtest_means`): one 28-day
  holdout picked rf on the data and lost on the next month (0.4996 RMSE log1p against
  0.4345). Otherwise the promotion's own figures (all measured on one holdout), or,
  without promotions, the entries' holdout metric.

Runtime code: standard library (onnxruntime imported when a model is loaded).
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import re
import time
from dataclasses import dataclass, field

from velocast.core import intervals, tasks

from velocast.catalog import model_checks, promotions, registry
from velocast.core.features import FEATURE_SPEC_VERSION, CounterTable
from velocast.catalog.registry import METRIC_DIRECTIONS, Entry
from velocast.catalog.store import Store, StoreError

log = logging.getLogger("velocast.catalog")

_VERSION_RE = re.compile(r"^(\d{8}T\d{6}Z)-[0-9a-f]{6}$")
# A version may be this far ahead of this instance's clock (clock skew between the
# trainer and the functions); later ones are refused as not yet valid.
FUTURE_MARGIN = _dt.timedelta(minutes=10)
# /models lists what is served plus this many newer-first entries per type: after a
# month of daily retrains it listed all 32 entries (22.5 kB).
HISTORY_PER_TYPE = 5


def version_time(version: str) -> _dt.datetime | None:
    """The UTC time a version encodes, or None if it is not a registry version."""
    match = _VERSION_RE.match(version or "")
    if not match:
        return None
    try:
        return _dt.datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=_dt.timezone.utc)
    except ValueError:
        return None


def valid_version(version: str, now: _dt.datetime | None = None) -> bool:
    moment = version_time(version)
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return moment is not None and moment <= now + FUTURE_MARGIN


def _sign(metric: str) -> float:
    return 1.0 if METRIC_DIRECTIONS[metric] == "max" else -1.0


def _score(value, metric: str) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return _sign(metric) * value


def ranked(entries, task: str, metric: str, model_type: str | None = None) -> list[Entry]:
    """Entries of `task` (and `model_type`) carrying `metric`, best first, ties to the
    newest version."""
    pool = [e for e in entries if e.task == task and _score(e.metrics.get(metric), metric) is not None
            and (model_type is None or e.model_type == model_type)]
    return sorted(pool, key=lambda e: (_score(e.metrics[metric], metric), e.version), reverse=True)


@dataclass(frozen=True)
class Snapshot:
    """What a task's store says at one moment; every question is answered from it."""
    task: str
    entries: tuple[Entry, ...]
    promotions: tuple[promotions.Promotion, ...]     # valid ones, oldest first
    ignored: tuple[str, ...] = ()                    # why some objects do not count
    read_at: float = field(default_factory=time.time)

    @classmethod
    def read(cls, store: Store, task: str) -> "Snapshot":
        """StoreError propagates: a partial view would serve an older generation."""
        return cls.of(task, registry.list_entries(store, task), promotions.list_promotions(store, task))

    @classmethod
    def of(cls, task: str, entries, proms, now: _dt.datetime | None = None) -> "Snapshot":
        ignored, kept_proms = [], []
        kept_entries = [e for e in entries if e.task == task]
        for p in proms:
            if p.task == task and valid_version(p.version, now):
                kept_proms.append(p)
            elif p.task == task:
                ignored.append(f"promotion {p.path}: version is not a valid past time")
        for why in ignored:
            log.warning("ignoring %s", why)
        kept_proms.sort(key=lambda p: (version_time(p.version), p.version))
        return cls(task, tuple(kept_entries), tuple(kept_proms), tuple(ignored))

    @property
    def newest_promotion(self) -> promotions.Promotion | None:
        return self.promotions[-1] if self.promotions else None

    def model_types(self) -> list[str]:
        return sorted({e.model_type for e in self.entries})

    def served(self, model_type: str | None = None, metric: str | None = None) -> list[Entry]:
        """The entries to try for (model type, metric), best first; later ones are
        fallbacks for when the first cannot be loaded."""
        metric = metric or tasks.get(self.task).default_metric
        if model_type is not None:
            return self._for_type(model_type, metric)
        per_type = {t: chosen for t in self.model_types() if (chosen := self._for_type(t, metric))}
        by_backtest = all(metric in chosen[0].backtest_means for chosen in per_type.values())
        order = sorted(per_type, key=lambda t: self._type_score(t, per_type[t][0], metric, by_backtest),
                       reverse=True)
        out: list[Entry] = []
        for t in order:
            out += [e for e in per_type[t] if e not in out]
        return out

    def served_by_type(self, metric: str | None = None) -> dict[str, Entry]:
        return {t: chosen[0] for t in self.model_types() if (chosen := self._for_type(t, metric))}

    def default(self, metric: str | None = None) -> Entry | None:
        return next(iter(self.served(None, metric)), None)

    def _for_type(self, model_type: str, metric: str | None) -> list[Entry]:
        metric = metric or tasks.get(self.task).default_metric
        pool = [e for e in self.entries if e.model_type == model_type and metric in e.metrics]
        if not self.promotions:
            return ranked([e for e in pool if not e.run], self.task, metric, model_type)
        by_version = {e.version: e for e in pool}
        out = []
        for promotion in reversed(self.promotions):
            item = promotion.served.get(model_type)
            entry = by_version.get(item["version"]) if item else None
            if entry is not None and entry not in out:
                out.append(entry)
        return out

    def _type_score(self, model_type: str, entry: Entry, metric: str, by_backtest: bool) -> tuple:
        """Backtest means when every served type has one, else one holdout's figures."""
        if by_backtest:
            return (1, _score(entry.backtest_means[metric], metric), entry.version)
        promotion = self.newest_promotion
        if promotion is not None:
            item = promotion.served.get(model_type) or {}
            figure = _score((item.get("metrics") or {}).get(metric), metric)
            if item.get("version") == entry.version and figure is not None:
                return (0, figure, entry.version)
            return (-1, float("-inf"), entry.version)
        return (0, _score(entry.metrics.get(metric), metric), entry.version)

    def history(self) -> list[Entry]:
        """What /models lists: every served entry plus the newest few per type."""
        served = set(self.served_by_type().values())
        out = set(served)
        for t in self.model_types():
            newest = sorted((e for e in self.entries if e.model_type == t),
                            key=lambda e: e.version, reverse=True)
            out.update(newest[:HISTORY_PER_TYPE])
        return sorted(out, key=lambda e: e.version)


# ------------------------------------------------------------------------ loading

@dataclass
class LoadedModel:
    entry: Entry
    table: CounterTable
    session: object
    input_name: str
    loaded_at: float = field(default_factory=time.time)
    interval: intervals.Interval | None = None     # regress cards carry one
    card: dict = field(default_factory=dict, repr=False)

    def run(self, matrix):
        # InferenceSession.run is thread-safe, so one session serves every thread.
        return self.session.run(None, {self.input_name: matrix})

    def output(self, matrix):
        """The scored value per row: log1p(count) or P(busy)."""
        return tasks.get(self.entry.task).model_output(self.run(matrix))

    def describe(self, metric: str) -> dict:
        e = self.entry
        return {"task": e.task, "type": e.model_type, "version": e.version,
                "metric": metric, "metric_value": e.metrics.get(metric),
                "metrics": e.metrics, "trained_from": e.trained_from,
                "trained_to": e.trained_to, "published_at": e.published_at,
                "feature_spec_version": e.feature_spec_version}


def load(store: Store, entry: Entry, threads: int = 1) -> LoadedModel:
    """The entry's model, verified (hashes, card, feature spec) and through the canary;
    raises StoreError, IntegrityError or ModelCheckError otherwise."""
    import onnxruntime as ort  # noqa: PLC0415  (import cost paid once, at first load)

    card, model_bytes = registry.read_verified(store, entry, FEATURE_SPEC_VERSION)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model_bytes, sess_options=options,
                                   providers=["CPUExecutionProvider"])
    table = CounterTable.from_dict(card["counter_table"])
    model_checks.check(entry.task, session, table)
    return LoadedModel(entry, table, session, session.get_inputs()[0].name,
                       interval=intervals.from_card(card), card=card)


# ------------------------------------------------------------------------ describing

def describe(store: Store, snapshot: Snapshot, now: float | None = None) -> list[dict]:
    """Per served model type: version, age, the newest promotion known, the newest data
    hour it knew, and its live accuracy (the previous version's, labelled, while the
    current one has no newer actuals yet)."""
    try:
        live = promotions.newest_live(store, snapshot.task) or {}
    except StoreError as e:
        log.warning("cannot read live accuracy: %s", e)
        live = {}
    now_dt = _dt.datetime.fromtimestamp(now or time.time(), _dt.timezone.utc)
    promotion = snapshot.newest_promotion
    out = []
    for model_type, entry in snapshot.served_by_type().items():
        published = _dt.datetime.fromisoformat(entry.published_at.replace("Z", "+00:00"))
        measured = [m for m in live.get("models", [])
                    if m.get("model_type") == model_type and not m.get("reference")]
        own = [m for m in measured if m.get("version") == entry.version and m.get("rows")]
        other = [m for m in measured if m.get("version") != entry.version and m.get("rows")]
        shown = own[0] if own else (other[0] if other else {})
        out.append({
            "model_type": model_type, "version": entry.version,
            "promoted": promotion is not None, "trained_to": entry.trained_to,
            "age_days": round((now_dt - published).total_seconds() / 86400, 2),
            "newest_promotion": ({"version": promotion.version, "created_at": promotion.created_at}
                                 if promotion else None),
            "newest_data_hour": (promotion.holdout.get("newest_hour") if promotion else None),
            "backtest_means": entry.backtest_means,
            "live": {"measured_at": live.get("created_at"),
                     "of_version": shown.get("version"),
                     "note": ("" if own or not shown else
                              "the previous version's: this one has no newer actuals yet"),
                     "rows_checked": shown.get("rows", 0),
                     "metrics": shown.get("metrics", {}), "days": shown.get("days", {})}})
    return out
