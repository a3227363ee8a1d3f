"""Reading the Paris open-data export `comptage-velo-donnees-compteurs`.

Semicolon CSV with French headers, optionally gzipped, CRLF or LF, with or without a
BOM; columns beyond the four the pipeline needs are ignored.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from velocast.core.schema import normalize_key

# normalized name -> the export's header, for error messages
REQUIRED_COLUMNS = {
    "nom_du_compteur": "Nom du compteur",
    "comptage_horaire": "Comptage horaire",
    "date_et_heure_de_comptage": "Date et heure de comptage",
    "coordonnees_geographiques": "Coordonnées géographiques",
}


EPOCH = pd.Timestamp("1970-01-01", tz="UTC")
# Default for report_to: stderr as it is when the loader runs, not the object bound at
# import time, so redirected stderr (contextlib.redirect_stderr, pytest) gets the report.
STDERR = object()


class DataFormatError(ValueError):
    pass


@dataclass
class LoadReport:
    source: str
    rows_read: int
    bad_date: int
    bad_count: int
    bad_coordinates: int
    duplicates: int
    rows_kept: int

    def line(self) -> str:
        return (f"{self.source}: read {self.rows_read:,} rows, kept {self.rows_kept:,}; "
                f"dropped {self.bad_date:,} with an unparseable date, {self.bad_count:,} with "
                f"a bad count, {self.bad_coordinates:,} with bad coordinates, "
                f"{self.duplicates:,} duplicate counter-hours")


def load_counts(path: str | Path, report_to=STDERR) -> tuple[pd.DataFrame, LoadReport]:
    """Rows as columns counter, epoch (UTC seconds), latitude, longitude, count.

    Unusable rows are dropped and counted in the report; duplicates (same counter,
    same instant) keep the highest count (then the highest coordinates), a choice that
    does not depend on row order.
    """
    path = Path(path)
    header = pd.read_csv(path, sep=";", nrows=0, encoding="utf-8-sig").columns
    by_normalized = {normalize_key(c): c for c in header}
    missing = [label for key, label in REQUIRED_COLUMNS.items() if key not in by_normalized]
    if missing:
        raise DataFormatError(
            f"{path}: missing required column(s) {', '.join(repr(m) for m in missing)}; "
            f"found {', '.join(repr(c) for c in header)}")
    wanted = {by_normalized[k]: k for k in REQUIRED_COLUMNS}
    raw = pd.read_csv(path, sep=";", usecols=list(wanted), dtype=str, encoding="utf-8-sig",
                      keep_default_na=False)
    raw = raw.rename(columns=wanted)
    rows_read = len(raw)

    counts = pd.to_numeric(raw["comptage_horaire"].str.strip(), errors="coerce")
    bad_count = counts.isna() | (counts < 0) | ~np.isfinite(counts.fillna(0))
    moments = pd.to_datetime(raw["date_et_heure_de_comptage"].str.strip(), utc=True,
                             errors="coerce", format="ISO8601")
    bad_date = moments.isna()
    coordinates = raw["coordonnees_geographiques"].str.split(",", n=1, expand=True)
    if coordinates.shape[1] < 2:
        coordinates[1] = None
    latitude = pd.to_numeric(coordinates[0].str.strip(), errors="coerce")
    longitude = pd.to_numeric(coordinates[1].str.strip(), errors="coerce")
    bad_coordinates = latitude.isna() | longitude.isna() | (latitude.abs() > 90) | \
        (longitude.abs() > 180)
    names = raw["nom_du_compteur"].str.strip()
    bad_date |= names.eq("")  # a row that names no counter cannot be placed either

    # Count each row once, under its first problem.
    bad_count &= ~bad_date
    bad_coordinates &= ~(bad_date | bad_count)
    keep = ~(bad_date | bad_count | bad_coordinates)
    frame = pd.DataFrame({
        "counter": names[keep].to_numpy(dtype=object),
        # total_seconds, not astype(int64): pandas 3 picks the unit from the data.
        "epoch": (moments[keep] - EPOCH).dt.total_seconds().to_numpy(dtype=np.float64),
        "latitude": latitude[keep].to_numpy(dtype=np.float64),
        "longitude": longitude[keep].to_numpy(dtype=np.float64),
        "count": counts[keep].to_numpy(dtype=np.float64),
    })
    before = len(frame)
    # Coordinates break ties between equal counts, or the file order would choose.
    frame = (frame.sort_values(["counter", "epoch", "count", "latitude", "longitude"],
                               kind="mergesort")
                  .drop_duplicates(["counter", "epoch"], keep="last")
                  .reset_index(drop=True))
    report = LoadReport(str(path), rows_read, int(bad_date.sum()), int(bad_count.sum()),
                        int(bad_coordinates.sum()), before - len(frame), len(frame))
    if report_to is STDERR:
        report_to = sys.stderr
    if report_to is not None:
        print(report.line(), file=report_to, flush=True)
    return frame, report
