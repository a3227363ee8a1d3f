"""Portal rows (tests.fake_portal.load_rows) as the rows ingest commits, for tests that
fill a store without going through ingest's checks."""

from __future__ import annotations

import datetime as dt

from velocast.core.local_time import PARIS


def rows_of(portal_rows, factor_from: dt.date | None = None, factor: float = 1000.0):
    """(counter, epoch, count, lat, lon) rows; counts x`factor` from Paris day `factor_from`."""
    out = []
    for r in portal_rows:
        count = float(r["sum_counts"] or 0)
        if factor_from is not None and dt.datetime.fromtimestamp(r["_epoch"], PARIS).date() >= factor_from:
            count *= factor
        lat, lon = (float(x) for x in r["coordinates"].split(","))
        out.append((r["nom_compteur"], r["_epoch"], count, lat, lon))
    return out
