"""A deterministic synthetic sample in the export's format, so that every command
works on a machine without the real data.

Real counter names and coordinates; weekday commute double peak, weekend afternoon
hump, public and school holidays lower, August much lower, seasonal trend, rainy
days, Poisson noise (so nights are mostly zeros).

    python -m velocast.train.sample --out data/paris-sample.csv
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
from pathlib import Path

import numpy as np

from velocast.core import paris_calendar as cal
from velocast.core.local_time import PARIS

# (name, site id, "lat,lon", relative level) from the Paris export.
COUNTERS = (
    ("Totem 73 boulevard de Sébastopol S-N", "100057445", "48.86377,2.35096", 2.6),
    ("Totem 73 boulevard de Sébastopol N-S", "100057445", "48.86377,2.35096", 2.2),
    ("Totem 64 Rue de Rivoli E-O", "100057380", "48.85735,2.35211", 2.4),
    ("Totem 64 Rue de Rivoli O-E", "100057380", "48.85735,2.35211", 2.0),
    ("Quai d'Orsay E-O", "100003098", "48.86288,2.31179", 1.4),
    ("Quai d'Orsay O-E", "100003098", "48.86288,2.31179", 1.3),
    ("28 boulevard Diderot E-O", "100056327", "48.846028,2.375429", 1.0),
    ("28 boulevard Diderot O-E", "100056327", "48.846028,2.375429", 0.9),
    ("90 Rue De Sèvres NE-SO", "100036719", "48.84638,2.31529", 0.8),
    ("90 Rue De Sèvres SO-NE", "100036719", "48.84638,2.31529", 0.7),
    ("Face au 70 quai de Bercy S-N", "100047548", "48.829523,2.38699", 0.5),
    ("Face au 70 quai de Bercy N-S", "100047548", "48.829523,2.38699", 0.45),
    ("20 Avenue de Clichy NO-SE", "100047542", "48.88529,2.32666", 0.6),
    ("20 Avenue de Clichy SE-NO", "100047542", "48.88529,2.32666", 0.55),
    ("6 rue Julia Bartet NE-SO", "100036718", "48.82636,2.30303", 0.15),
    ("6 rue Julia Bartet SO-NE", "100036718", "48.82636,2.30303", 0.12),
)
HEADER = ("Identifiant du compteur;Nom du compteur;Identifiant du site de comptage;"
          "Nom du site de comptage;Comptage horaire;Date et heure de comptage;"
          "Date d'installation du site de comptage;Coordonnées géographiques;"
          "Identifiant technique compteur;mois_annee_comptage")


def _working_day_shape(hour: np.ndarray) -> np.ndarray:
    morning = np.exp(-0.5 * ((hour - 8.5) / 1.0) ** 2)
    evening = 0.9 * np.exp(-0.5 * ((hour - 18.2) / 1.3) ** 2)
    daytime = 0.25 * np.exp(-0.5 * ((hour - 13.5) / 3.5) ** 2)
    return 0.01 + morning + evening + daytime


def _rest_day_shape(hour: np.ndarray) -> np.ndarray:
    return 0.01 + 0.45 * np.exp(-0.5 * ((hour - 15.5) / 3.0) ** 2)


def generate(start: dt.date, end: dt.date, seed: int = 20240901) -> list[str]:
    """CSV lines (header first) for every counter and hour in [start, end)."""
    rng = np.random.default_rng(seed)
    first = dt.datetime.combine(start, dt.time(), tzinfo=PARIS)
    last = dt.datetime.combine(end, dt.time(), tzinfo=PARIS)
    hours = int((last.timestamp() - first.timestamp()) // 3600)
    instants = [dt.datetime.fromtimestamp(first.timestamp() + 3600 * h, tz=PARIS)
                for h in range(hours)]
    local_hour = np.array([t.hour for t in instants], dtype=float)
    days = sorted({t.date() for t in instants})
    day_index = {d: i for i, d in enumerate(days)}
    row_day = np.array([day_index[t.date()] for t in instants])

    rest_day = np.array([d.weekday() >= 5 or cal.is_public_holiday(d) for d in days])
    day_factor = np.array([
        (0.75 + 0.25 * math.sin(2 * math.pi * (d.timetuple().tm_yday - 110) / 365.25))
        * (0.8 if cal.is_school_holiday(d) else 1.0)
        * (0.55 if d.month == 8 else 1.0)
        * (0.85 if cal.is_bridge_day(d) else 1.0)
        for d in days])
    rain = rng.random(len(days)) < 0.12
    weather = np.exp(rng.normal(0.0, 0.12, len(days))) * np.where(rain, 0.5, 1.0)
    shape = np.where(rest_day[row_day], _rest_day_shape(local_hour), _working_day_shape(local_hour))
    base = 160.0 * shape * (day_factor * weather)[row_day]

    stamps = [t.isoformat() for t in instants]
    months = [t.strftime("%Y-%m") for t in instants]
    lines = [HEADER]
    for number, (name, site, coordinates, level) in enumerate(COUNTERS):
        site_name = name.rsplit(" ", 1)[0]
        counts = rng.poisson(base * level * np.exp(rng.normal(0, 0.08, hours)))
        counter_id = f"{site}-{353000000 + number}"
        for stamp, month, count in zip(stamps, months, counts.tolist()):
            lines.append(f"{counter_id};{name};{site};{site_name};{count}.0;{stamp};"
                         f"2019-01-01;{coordinates};Y2H{site};{month}")
    return lines


def write_sample(out: Path, start: dt.date, end: dt.date, seed: int = 20240901) -> int:
    lines = generate(start, end, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    # CRLF like the live export.
    tmp.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    tmp.replace(out)
    return len(lines) - 1


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/paris-sample.csv"))
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2024, 9, 1))
    parser.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2025, 9, 1))
    parser.add_argument("--seed", type=int, default=20240901)
    args = parser.parse_args(argv)
    rows = write_sample(args.out, args.start, args.end, args.seed)
    print(f"wrote {rows:,} synthetic rows ({len(COUNTERS)} counters, {args.start} to "
          f"{args.end}) to {args.out}")


if __name__ == "__main__":
    main()
