"""Ingest: fetch what the portal has that the store lacks, and commit it whole or not at all.

    python -m velocast.ingest --store DIR_OR_GS_URI [--source https://opendata.paris.fr]
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from velocast.store import Store, open_store
from velocast.train import counts, portal

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

    @property
    def ok(self) -> bool:
        return self.refused is None

    def line(self) -> str:
        if self.refused:
            return (f"ingest REFUSED from {self.source} (since {self.since or 'the start'}): "
                    f"{self.refused}; nothing stored changed")
        bad = ", ".join(f"{n} {why}" for why, n in sorted((self.refused_rows or {}).items()))
        return (f"ingest from {self.source} since {self.since or 'the start'}: {self.fetched:,} rows "
                f"fetched ({self.bytes / 1e6:.1f} MB, {self.seconds:.1f} s): {self.new:,} new, "
                f"{self.updated:,} updated, {self.unchanged:,} unchanged, "
                f"{sum((self.refused_rows or {}).values()):,} refused{f' ({bad})' if bad else ''}; "
                f"{self.days_written} day object(s) written"
                + (f", manifest {self.manifest}" if self.manifest else ", store unchanged"))


def ingest(store: Store | str, source: str = portal.DEFAULT_SOURCE,
           overlap_hours: int = OVERLAP_HOURS, until: dt.datetime | None = None,
           **fetch_options) -> IngestReport:
    """Fetch rows newer than the newest stored hour minus the overlap (everything on
    an empty store), up to `until` if given, and commit them. Never raises for a bad
    download: the report says it was refused, and the store is untouched."""
    store = open_store(store) if isinstance(store, str) else store
    current = counts.newest_manifest(store)
    since = None
    if current.newest_epoch is not None:
        since = dt.datetime.fromtimestamp(current.newest_epoch - overlap_hours * 3600,
                                          tz=dt.timezone.utc)
    report = IngestReport(source, since.isoformat() if since else None)
    try:
        download = portal.fetch(source, since, until, **fetch_options)
    except portal.Refused as exc:
        report.refused = str(exc)
        return report
    report.fetched, report.refused_rows = download.received, download.refused_rows
    report.seconds, report.bytes = download.seconds, download.bytes
    if download.rows:
        manifest, stats = counts.commit(store, download.rows, source, {
            "since": report.since, "fetched": report.fetched,
            "refused_rows": report.refused_rows})
        report.new, report.updated, report.unchanged = stats.new, stats.updated, stats.unchanged
        report.days_written = stats.days_written
        report.manifest = manifest.name if manifest else None
    return report
