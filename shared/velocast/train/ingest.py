"""Ingest: fetch what the portal has that the store lacks, and commit it whole or not at all.

    python -m velocast.ingest --store DIR_OR_GS_URI [--source https://opendata.paris.fr]
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

from velocast.catalog.store import Store, open_store
from velocast.train import counts, portal, screen

# Re-fetch this much before the newest stored hour: the portal corrects recent hours
# (a counter's late upload) for a day or so after first publishing them.
OVERLAP_HOURS = 48


@dataclass
class IngestReport:
    source: str
    since: str | None
    fetched: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    refused_rows: dict | None = None
    days_written: int = 0
    manifest: str | None = None
    refused: str | None = None       # the whole download was refused: why
    seconds: float = 0.0
    bytes: int = 0
    quarantined_rows: int = 0
    quarantined: list = field(default_factory=list)   # one "day: first reason" a held-back day
    warnings: list = field(default_factory=list)      # unreadable store objects, named

    # The line names this many quarantined days and warnings; the manifest has them all.
    SHOWN = 3

    @property
    def ok(self) -> bool:
        return self.refused is None

    @staticmethod
    def _some(items: list) -> str:
        shown = ", ".join(items[:IngestReport.SHOWN])
        return shown + (f", +{len(items) - IngestReport.SHOWN} more" if len(items) > IngestReport.SHOWN else "")

    def _tail(self) -> str:
        tail = ""
        if self.quarantined:
            tail += (f"; quarantined {self.quarantined_rows:,} row(s) in {len(self.quarantined)} "
                     f"day(s): {self._some(self.quarantined)}")
        if self.warnings:
            tail += f"; WARNING {self._some(self.warnings)}"
        return tail

    def line(self) -> str:
        # One line whatever the portal put in a name or an error message.
        return " ".join(self._line().split())

    def _line(self) -> str:
        if self.refused:
            return (f"ingest REFUSED from {self.source} (since {self.since or 'the start'}): "
                    f"{self.refused}; nothing stored changed{self._tail()}")
        bad = ", ".join(f"{n} {why}" for why, n in sorted((self.refused_rows or {}).items()))
        return (f"ingest from {self.source} since {self.since or 'the start'}: {self.fetched:,} rows "
                f"fetched ({self.bytes / 1e6:.1f} MB, {self.seconds:.1f} s): {self.new:,} new, "
                f"{self.updated:,} updated, {self.unchanged:,} unchanged, "
                f"{sum((self.refused_rows or {}).values()):,} refused{f' ({bad})' if bad else ''}; "
                f"{self.days_written} day object(s) written"
                + (f", manifest {self.manifest}" if self.manifest else ", store unchanged")
                + self._tail())


def ingest(store: Store | str, source: str = portal.DEFAULT_SOURCE,
           overlap_hours: int = OVERLAP_HOURS, until: dt.datetime | None = None,
           now: dt.datetime | None = None, **fetch_options) -> IngestReport:
    """Fetch rows newer than the newest stored hour minus the overlap (everything on
    an empty store), up to `until` if given, screen them (train/screen.py) and commit
    what passes. Never raises for a bad download: the report says it was refused, and
    the store is untouched. `now` (tests) is when the ingest runs."""
    store = open_store(store) if isinstance(store, str) else store
    now_epoch = time.time() if now is None else now.timestamp()
    current = counts.newest_manifest(store)
    since = None
    start = counts.cursor(current, now_epoch)
    if start is not None:
        since = dt.datetime.fromtimestamp(start - overlap_hours * 3600, tz=dt.timezone.utc)
    report = IngestReport(source, since.isoformat() if since else None)
    report.warnings = list(current.warnings)
    try:
        download = portal.fetch(source, since, until, **fetch_options)
    except portal.Refused as exc:
        report.refused = str(exc)
        return report
    report.fetched, report.seconds, report.bytes = download.received, download.seconds, download.bytes
    checked = screen.screen(store, current, download.rows, now_epoch)
    report.refused_rows = {**download.refused_rows}
    for why, n in checked.refused.items():
        report.refused_rows[why] = report.refused_rows.get(why, 0) + n
    report.warnings += checked.warnings
    report.quarantined_rows = sum(len(q.rows) for q in checked.quarantine)
    report.quarantined = [f"{q.day} {q.reasons[0]}" + (f" (+{len(q.reasons) - 1} more)" if len(q.reasons) > 1 else "")
                          for q in checked.quarantine]
    manifest, stats = counts.commit(store, checked.rows, source, {
        "since": report.since, "fetched": report.fetched, "refused_rows": report.refused_rows},
        quarantine=checked.quarantine, counters=checked.counters, now=now_epoch)
    report.new, report.updated, report.unchanged = stats.new, stats.updated, stats.unchanged
    report.days_written = stats.days_written
    report.warnings += [w for w in stats.warnings if w not in report.warnings]
    report.manifest = manifest.name if manifest else None
    return report
