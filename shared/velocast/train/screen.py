"""What an ingest keeps: a download's rows checked against the store before any is kept.

Issue 21 (N2, N3, D4): a row dated 2030, counts of 1e12 and inf, a week of counts
x1000, a day of "42" for 20 counters, 10,000 new counters and 2,416 shuffled
"updated" rows were all stored, and models trained on them were served.

Refused rows, counted by name in the ingest's one-line report and never stored:

- "hour in the future": after now + FUTURE_MARGIN (a count is published after its
  hour, so only clock skew puts a real row ahead of now).
- "before the dataset's start": before DATASET_START.
- "duplicate hour": a counter-hour given twice in one download with different values;
  the larger is kept (a partial upload undercounts; train/data.py keeps the larger
  too). An identical copy is a "repeated row".
- "too many new counters": a store that has counters takes at most NEW_COUNTERS_MAX
  new ones per ingest (those with the most rows); an empty store takes any number.
- "conflicting update": a change to a stored count in the overlap. Late uploads only
  add bikes, so a counter-day's updates are taken when none of them lowers a stored
  count by more than UPDATE_TOLERANCE; when one does (a shuffled or re-based day), all
  updates of that counter-day are refused and the stored values stay.

Quarantined (kept apart by counts.commit, listed in the manifest, never trained on;
a later clean fetch of the same hours is stored as usual):

- a counter-day with a count over the counter's bound: BOUND_FACTOR x the p99.9 of
  its hourly counts over the HISTORY_DAYS days before (days it counted anything), at
  least BOUND_FLOOR; at most, and for a counter with under MIN_HISTORY_DAYS such days,
  ABSOLUTE_MAX. A counter whose real level jumps past that stays quarantined day after
  day, named in every report: that needs a person, as a poisoned counter does. On the
  real file (52 counters, 2020-09 to 2021-08) no day's hour passes 3.14x that p99.9 and
  the busiest hour is 1,275 bikes;
- a counter-day of MIN_CONSTANT_HOURS or more hours all equal and non-zero (real data:
  the longest such run is 7 h; zero days are outages, handled by training);
- a day whose level moves for all counters at once: the median over counters of the
  day's count / the median of the same hours on the same weekday of the 4 weeks
  before is above LEVEL_UP or below LEVEL_DOWN. Real days range 0.17 (2020-12-27) to
  2.37 (2021-02-21); the lower bound is extreme because real drops (lockdowns,
  Christmas) exist.

History is the stored days plus the download's own days already accepted, so the
first ingest of a whole year is screened day by day too.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from velocast.core.local_time import PARIS
from velocast.catalog.store import Store
from velocast.train import counts

FUTURE_MARGIN = 2 * 3600
# The counters of the Paris portal report from 2018 on; the 13-month export never
# holds an older hour.
DATASET_START = dt.datetime(2018, 1, 1, tzinfo=dt.timezone.utc).timestamp()
NEW_COUNTERS_MAX = 10
UPDATE_TOLERANCE = (2.0, 0.10)      # bikes, share of the stored count: whichever is larger
HISTORY_DAYS = 56                   # 1,344 hourly counts a counter
MIN_HISTORY_DAYS = 7
BOUND_QUANTILE = 99.9
BOUND_FACTOR = 4.0
BOUND_FLOOR = 200.0
ABSOLUTE_MAX = 10_000.0             # 7.8x the busiest real hour (1,275)
MIN_CONSTANT_HOURS = 12
LEVEL_UP, LEVEL_DOWN = 3.0, 1 / 20
LEVEL_WEEKS = 4
LEVEL_MIN_REFERENCE = 50.0          # bikes over the hours compared: night-only partial days say nothing
LEVEL_MIN_COUNTERS = 3


@dataclass
class Screened:
    rows: list                                          # accepted (counter, epoch, count, lat, lon)
    refused: dict = field(default_factory=dict)         # why -> rows
    quarantine: list = field(default_factory=list)      # counts.Quarantine
    counters: set = field(default_factory=set)          # every counter known after this download
    warnings: list = field(default_factory=list)


def _refuse(refused: dict, why: str, n: int = 1) -> None:
    if n:
        refused[why] = refused.get(why, 0) + n


def _in_time(rows, now: float, refused: dict) -> list:
    kept = []
    for row in rows:
        if row[1] > now + FUTURE_MARGIN:
            _refuse(refused, "hour in the future")
        elif row[1] < DATASET_START:
            _refuse(refused, "before the dataset's start")
        else:
            kept.append(row)
    return kept


def _deduplicated(rows, refused: dict) -> dict:
    """{(counter, epoch): (count, lat, lon)}, the larger count of a repeated hour."""
    out: dict = {}
    seen: dict = {}
    for name, epoch, count, lat, lon in rows:
        values = seen.setdefault((name, epoch), set())
        if values:
            _refuse(refused, "repeated row" if count in values else "duplicate hour")
        values.add(count)
        previous = out.get((name, epoch))
        if previous is None or count > previous[0]:
            out[(name, epoch)] = (count, lat, lon)
    return out


def _capped_counters(fresh: dict, known: set, refused: dict) -> dict:
    if not known:
        return fresh
    sizes = Counter(name for name, _ in fresh if name not in known)
    if len(sizes) <= NEW_COUNTERS_MAX:
        return fresh
    taken = {n for n, _ in sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))[:NEW_COUNTERS_MAX]}
    kept = {k: v for k, v in fresh.items() if k[0] in known or k[0] in taken}
    _refuse(refused, "too many new counters", len(fresh) - len(kept))
    return kept


def _lowers(old: float, new: float) -> bool:
    bikes, share = UPDATE_TOLERANCE
    return old - new > max(bikes, share * old)


class _History:
    """Per counter and day: hourly counts (for the bound) and {local hour: count}."""

    def __init__(self):
        self.hours: dict[str, dict[str, dict[int, float]]] = {}
        self.arrays: dict[str, dict[str, np.ndarray]] = {}

    def put(self, day: str, rows: dict) -> None:
        by_counter: dict[str, dict[int, float]] = {}
        for (name, epoch), (count, _, _) in rows.items():
            by_counter.setdefault(name, {})[dt.datetime.fromtimestamp(epoch, PARIS).hour] = count
        for name, hours in by_counter.items():
            self.hours.setdefault(name, {})[day] = hours
            # An all-zero day is an outage, not history: the real file's two "20 Avenue
            # de Clichy" counters read 0 for months, then 240-353 bikes/h on their
            # first days back (quarantined against a bound of 200 had zeros counted).
            if max(hours.values()) > 0:
                self.arrays.setdefault(name, {})[day] = np.fromiter(hours.values(), float)
            else:
                self.arrays.get(name, {}).pop(day, None)

    def bound(self, name: str, before: list[str]) -> float:
        mine = self.arrays.get(name, {})
        parts = [mine[d] for d in before if d in mine]
        if len(parts) < MIN_HISTORY_DAYS:
            return ABSOLUTE_MAX
        p = float(np.percentile(np.concatenate(parts), BOUND_QUANTILE))
        return min(ABSOLUTE_MAX, max(BOUND_FLOOR, BOUND_FACTOR * p))

    def level(self, day: str, hours_by_counter: dict[str, dict[int, float]]) -> tuple[float, int] | None:
        """(median ratio to the same hours of the same weekdays before, counters)."""
        date = dt.date.fromisoformat(day)
        weeks = [(date - dt.timedelta(days=7 * w)).isoformat() for w in range(1, LEVEL_WEEKS + 1)]
        ratios = []
        for name, hours in hours_by_counter.items():
            mine = self.hours.get(name, {})
            refs = [sum(mine[w].get(h, 0.0) for h in hours) for w in weeks if w in mine]
            if len(refs) >= 2 and (ref := float(np.median(refs))) >= LEVEL_MIN_REFERENCE:
                ratios.append(sum(hours.values()) / ref)
        if len(ratios) < LEVEL_MIN_COUNTERS:
            return None
        return float(np.median(ratios)), len(ratios)


def _updates(day_fresh: dict, old: dict, refused: dict) -> dict:
    """The day's fresh rows without the refused updates (see "conflicting update")."""
    conflicting = {name for (name, epoch), value in day_fresh.items()
                   if (name, epoch) in old and _lowers(old[(name, epoch)][0], value[0])}
    kept = {}
    for key, value in day_fresh.items():
        if key[0] in conflicting and key in old and old[key][0] != value[0]:
            _refuse(refused, "conflicting update")
        else:
            kept[key] = value
    return kept


def _check_day(day: str, fresh: dict, old: dict, history: _History) -> tuple[dict, list, dict]:
    """(accepted fresh rows, reasons, quarantined fresh rows) of one day."""
    changed = {key[0] for key, value in fresh.items() if old.get(key) != value}
    if not changed:
        return fresh, [], {}
    combined = {**old, **fresh}
    date = dt.date.fromisoformat(day)
    before = [(date - dt.timedelta(days=i)).isoformat() for i in range(1, HISTORY_DAYS + 1)]
    per_counter: dict[str, dict] = {}
    for (name, epoch), value in combined.items():
        per_counter.setdefault(name, {})[(name, epoch)] = value
    reasons, held = [], set()
    for name in sorted(changed):
        values = [v[0] for v in per_counter[name].values()]
        bound = history.bound(name, before)
        if max(values) > bound:
            reasons.append(f"{name}: {max(values):,.6g} bikes/h over its bound {bound:,.0f}")
            held.add(name)
        elif len(values) >= MIN_CONSTANT_HOURS and min(values) == max(values) > 0:
            reasons.append(f"{name}: constant {values[0]:g} for {len(values)} h")
            held.add(name)
    # Every counter, the ones held above included: a shift of all at once is the point.
    hours = {name: {dt.datetime.fromtimestamp(e, PARIS).hour: v[0] for (_, e), v in rows.items()}
             for name, rows in per_counter.items()}
    level = history.level(day, hours)
    if level and not LEVEL_DOWN <= level[0] <= LEVEL_UP:
        shown = f"{level[0]:,.0f}" if level[0] >= 10 else f"{level[0]:.3g}"
        reasons.insert(0, f"level x{shown} across {level[1]} counters")
        held |= changed
    quarantined = {k: v for k, v in fresh.items() if k[0] in held}
    accepted = {k: v for k, v in fresh.items() if k[0] not in held}
    return accepted, reasons, quarantined


def screen(store: Store, manifest: counts.Manifest, rows, now: float) -> Screened:
    """The rows of one download that may be stored, the refused and the quarantined."""
    refused: dict = {}
    fresh = _deduplicated(_in_time(rows, now, refused), refused)
    by_day = counts.group_by_day((k[0], k[1], *v) for k, v in fresh.items())
    result = Screened([], refused)
    if not by_day:
        result.counters = set(manifest.counters or ())
        return result
    first = (dt.date.fromisoformat(min(by_day)) - dt.timedelta(days=HISTORY_DAYS)).isoformat()
    wanted = [d for d in manifest.days if first <= d <= max(by_day)]
    problems: dict = {}
    stored = dict(counts.read_rows(store, wanted, manifest, problems))
    # Days the download touches are named by the merge, which treats them as missing.
    result.warnings = [f"{why}: left out of the history" for d, why in sorted(problems.items())
                       if d not in by_day]
    known = set(manifest.counters) if manifest.counters is not None else \
        {name for day in stored.values() for name, _ in day}
    kept = _capped_counters(fresh, known, refused)
    by_day = counts.group_by_day((k[0], k[1], *v) for k, v in kept.items())
    history = _History()
    for day in sorted(stored):
        if day not in by_day:
            history.put(day, stored[day])
    for day in sorted(by_day):
        old = stored.get(day, {})
        accepted, reasons, quarantined = _check_day(day, _updates(by_day[day], old, refused),
                                                    old, history)
        history.put(day, {**old, **accepted})
        result.rows.extend((k[0], k[1], *v) for k, v in accepted.items())
        if quarantined:
            result.quarantine.append(counts.Quarantine(day, quarantined, reasons))
    result.counters = known | {row[0] for row in result.rows}
    return result
