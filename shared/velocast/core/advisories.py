"""Warnings attached to predictions the models make on weaker ground: a date past the
published school calendar (school holidays guessed by rule), or a counter whose
newest ingested day was all zeros (a sensor outage: its actual count is likely 0,
and its history says nothing about when it comes back). Runtime: standard library."""

from __future__ import annotations

import datetime as dt

from velocast.core import paris_calendar as cal
from velocast.core.features import COUNTER, DATE, counter_key
from velocast.core.local_time import PARIS

MAX_WARNINGS = 100


def for_batch(names, epoch_seconds, table) -> list[dict]:
    out = []
    until = None
    outages = {counter_key(n): day for n, day in table.outages.items()}
    for row, (name, epoch) in enumerate(zip(names, epoch_seconds)):
        if len(out) >= MAX_WARNINGS:
            break
        day = dt.datetime.fromtimestamp(float(epoch), tz=PARIS).date()
        if day >= cal.TABLE_END:
            until = until or cal.school_calendar_until()
            if day >= until:
                out.append({"record": row, "field": DATE,
                            "message": f"zone C school holidays are published up to "
                                       f"{until - dt.timedelta(days=1)}; for {day} they are "
                                       "guessed (summer and Christmas only)"})
        since = outages.get(counter_key(name))
        if since:
            out.append({"record": row, "field": COUNTER,
                        "message": f"counter {name!r} counted no bike at all on {since}, its "
                                   "newest day in the training data: likely a sensor outage"})
    return out

