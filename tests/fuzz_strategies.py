"""Hypothesis strategies for tests/service/test_fuzz.py: JSON of any shape, nasty text, records
that are almost valid (every spelling of every key, weird values), valid ones, request
options, and raw bodies broken at the byte level."""

from __future__ import annotations

import datetime as dt
import json
import unicodedata

from hypothesis import strategies as st

from velocast.catalog.registry import TASK_METRICS
from velocast.train.sample import COUNTERS

MODEL_TYPES = {"classify": ("affluence",), "regress": ("gbdt", "rf", "nn")}
KNOWN = [name for name, _site, _coordinates, _level in COUNTERS]

json_scalars = (st.none() | st.booleans()
                | st.integers(min_value=-(10 ** 30), max_value=10 ** 30)
                | st.floats(allow_nan=False, allow_infinity=False)
                | st.text(max_size=30))
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=6)
    | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=25)

# Text that tends to break things: emoji, RTL overrides, NUL, combining marks,
# lone surrogates, non-characters, full-width digits.
nasty_chars = st.sampled_from([
    "\x00", "\u202e", "\u200f", "\u0645", "\U0001f6b2", "\U0001f468\u200d\U0001f469",
    "\ud800", "\udfff", "\ufeff", "\uffff", "\u0301", "é", "e\u0301", "\uff11",
    "\n", "\t", " ", "'", '"', "\\", "%", "{", "}"])
nasty_text = st.lists(st.one_of(nasty_chars, st.characters()), max_size=30).map("".join)

COUNTER_KEYS = ["nom_du_compteur", "Nom du compteur", "NOM-DU-COMPTEUR", " nom du compteur "]
DATE_KEYS = ["date_et_heure_de_comptage", "Date et heure de comptage",
             "DATE_ET_HEURE_DE_COMPTAGE"]
COORD_KEYS = ["coordonnées_géographiques", "Coordonnées géographiques",
              "coordonnees_geographiques",
              unicodedata.normalize("NFD", "coordonnées_géographiques")]

offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda m: dt.timezone(dt.timedelta(minutes=m)))


def _format_moment(moment: dt.datetime, style: int) -> str:
    if style == 0:
        return moment.isoformat(sep=" ", timespec="seconds")
    if style == 1:
        return moment.isoformat(timespec="seconds")
    if style == 2:
        return moment.isoformat(timespec="minutes")
    if style == 3:
        return moment.isoformat(timespec="microseconds")
    if style == 4 and moment.utcoffset() == dt.timedelta(0):
        return moment.replace(tzinfo=None).isoformat(timespec="seconds") + "Z"
    return moment.replace(tzinfo=None).isoformat(sep=" ", timespec="seconds")  # naive: Paris


valid_dates = st.builds(
    lambda naive, tz, style: _format_moment(naive.replace(tzinfo=tz), style),
    st.datetimes(min_value=dt.datetime(2001, 1, 1), max_value=dt.datetime(2099, 12, 31)),
    offsets, st.integers(0, 5))
weird_dates = st.one_of(
    st.builds(lambda naive, tz, style: _format_moment(naive.replace(tzinfo=tz), style),
              st.datetimes(), offsets, st.integers(0, 5)),            # years 1-9999
    st.sampled_from([
        "", " ", "2025-05-17", "2025-05-17T24:00:00", "2025-02-30 10:00", "2025-W20-6",
        "2025-W20-6T18", "2025-137", "20250517T180000+0200", "2025-05-17T18:00:00+24:00",
        "2025-05-17T18:00:00+02:00[Europe/Paris]", "17/05/2025 18h", "0000-01-01",
        "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "2100-12-31T23:00:00-23:59",
        "2000-01-01T00:00:00+23:59", "1999-12-31T23:00:00-01:00", "2025-05-17T18:00:00.123456789",
        "2025-05-17T18:00:00,5+02:00", "2025-05-17T18:00:00+02", "2025-05-17T18:00Z",
        "NaN", "Infinity", "2025-05-17T18:00:00\x00", "２０２５-05-17 18:00",
        "2025-03-30 02:30:00", "2025-10-26 02:30:00", "x" * 41, "2" * 10_000]),
    nasty_text, json_values)

paris_lat = st.floats(min_value=48.80, max_value=48.92)
paris_lon = st.floats(min_value=2.22, max_value=2.47)
valid_coordinates = st.one_of(
    st.builds(lambda a, b: f"{a}, {b}", paris_lat, paris_lon),
    st.builds(lambda a, b: f"{a},{b}", paris_lat, paris_lon),
    st.builds(lambda a, b: [a, b], paris_lat, paris_lon),
    st.builds(lambda a, b: {"lat": a, "lon": b}, paris_lat, paris_lon),
    st.builds(lambda a, b: {"latitude": a, "longitude": b}, paris_lat, paris_lon))
any_number = st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                       st.sampled_from([10 ** 400, -(10 ** 400), 10 ** 308, 1e308, -1e308,
                                        5e-324, 0, -0.0, 90, -90, 180, -180, 90.0000001]))
weird_coordinates = st.one_of(
    st.builds(lambda a, b: f"{a}, {b}", any_number, any_number),
    st.builds(lambda a, b: [a, b], any_number, any_number),
    st.builds(lambda a, b: {"lat": a, "lon": b}, any_number, any_number),
    st.builds(lambda a, b: [a, b], st.floats(-90, 90), st.floats(-180, 180)),  # anywhere on earth
    st.sampled_from([
        "", " ", ",", "48.8672", "48.8672, 2.3501, 3", "north, east", "nan, nan", "inf, 2",
        "1e400, 2", "48,8672, 2,3501", "48.8672;2.3501", "１, ２", "48.8_672, 2.35",
        "-0, -0", "90, 180", "-90, -180", [48.8, 2.3, 1], [], [[48.8], [2.3]], [True, False],
        {"lat": 48.8}, {"x": 1, "y": 2}, {"lat": "48.8", "lon": "2.3"}, True, False, 0, 48.8,
        "0x30, 0x2", " 4 8 . 8 , 2 ", "48.8672, 2.3501" + " " * 5000, "1" * 5000 + ", 2"]),
    nasty_text, json_values)

valid_names = st.one_of(
    st.sampled_from(KNOWN),
    st.sampled_from(KNOWN).map(str.upper),
    st.sampled_from(KNOWN).map(lambda n: "  " + n.replace(" ", "   ") + " "),
    st.sampled_from(KNOWN).map(lambda n: unicodedata.normalize("NFD", n)))
weird_names = st.one_of(
    nasty_text,
    st.sampled_from(["", " ", "\x00", "\u202e" + KNOWN[0], KNOWN[0] + "\x00", "x" * 200,
                     "x" * 201, "é" * 10_000, "\U0001f6b2" * 300]),
    json_values)

MISSING = object()


def field(keys, valid, weird):
    """(key, value) or MISSING: mostly valid values, often weird ones."""
    return st.one_of(
        st.tuples(st.sampled_from(keys), valid),
        st.tuples(st.sampled_from(keys), valid),
        st.tuples(st.sampled_from(keys), weird),
        st.just(MISSING))


@st.composite
def near_valid_records(draw):
    record = {}
    for spec in (field(COUNTER_KEYS, valid_names, weird_names),
                 field(DATE_KEYS, valid_dates, weird_dates),
                 field(COORD_KEYS, valid_coordinates, weird_coordinates)):
        item = draw(spec)
        if item is not MISSING:
            key, value = item
            record[key] = value
    if draw(st.booleans()):
        record[draw(st.sampled_from(["mois_annee_comptage", "Comptage horaire", "extra"]))] = \
            draw(json_values)
    return record


@st.composite
def valid_records(draw):
    """Records the service must predict: a known counter, or an unknown one near Paris
    with coordinates; a well-formed date in range."""
    if draw(st.booleans()):
        record = {draw(st.sampled_from(COUNTER_KEYS)): draw(valid_names)}
        if draw(st.booleans()):
            record[draw(st.sampled_from(COORD_KEYS))] = draw(valid_coordinates)
    else:
        name = draw(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1,
                            max_size=60).filter(lambda s: s.strip() and s not in KNOWN))
        record = {draw(st.sampled_from(COUNTER_KEYS)): name,
                  draw(st.sampled_from(COORD_KEYS)): draw(valid_coordinates)}
    record[draw(st.sampled_from(DATE_KEYS))] = draw(valid_dates)
    return record


def options():
    return st.fixed_dictionaries({}, optional={
        "model_type": st.one_of(st.sampled_from(MODEL_TYPES["classify"] + MODEL_TYPES["regress"]),
                                st.sampled_from(["", "GBDT", "x" * 65, "\x00", "../nn"]),
                                json_values),
        "metric": st.one_of(st.sampled_from(sorted(TASK_METRICS["classify"]
                                                   + TASK_METRICS["regress"])),
                            st.sampled_from(["", "R2", "__class__", "x" * 65]), json_values)})


# Raw bodies: the JSON text of a near-valid body, then broken at the byte level.
@st.composite
def raw_bodies(draw):
    body = {"records": draw(st.lists(near_valid_records(), min_size=1, max_size=3))}
    text = json.dumps(body, ensure_ascii=draw(st.booleans()))
    mutation = draw(st.sampled_from([
        "nan", "duplicate", "bad_utf8", "truncate", "nest", "bom", "utf16", "random",
        "big_number", "control", "none"]))
    if mutation == "nan":
        literal = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "nan", "1e400",
                                        "-1e400", "1e-400", "9" * 400]))
        where = draw(st.sampled_from(["record", "coordinate", "option"]))
        if where == "record":
            text = text.replace('"records": [', f'"records": [{literal}, ', 1)
        elif where == "coordinate":
            text = text.replace('"records": [', '"records": [{"nom_du_compteur": "x", '
                                '"date_et_heure_de_comptage": "2025-05-20 08:00", '
                                f'"coordonnees_geographiques": [{literal}, 2.35]}}, ', 1)
        else:
            text = text[:-1] + f', "model_type": {literal}}}'
    elif mutation == "duplicate":
        text = text[:-1] + ', "records": ' + json.dumps(draw(json_values)) + "}"
    elif mutation == "control":
        text = text.replace('"', '"\x01', 1)
    raw = text.encode("utf-8", "surrogatepass")
    if mutation == "bad_utf8":
        at = draw(st.integers(0, len(raw)))
        junk = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
                                     b"\xc0\xaf", b"\x80\x80", b"\xfe\xff"]))
        raw = raw[:at] + junk + raw[at:]
    elif mutation == "truncate":
        raw = raw[:draw(st.integers(0, max(len(raw) - 1, 0)))]
    elif mutation == "nest":
        depth = draw(st.sampled_from([1, 10, 500, 990, 1000, 5000, 100_000]))
        open_, close = draw(st.sampled_from([("[", "]"), ('{"a":', "}"), ('{"records":', "}")]))
        raw = (open_ * depth).encode() + raw + (close * depth).encode()
    elif mutation == "bom":
        raw = b"\xef\xbb\xbf" + raw
    elif mutation == "utf16":
        raw = text.encode(draw(st.sampled_from(["utf-16", "utf-16-le", "utf-32"])),
                          "surrogatepass")
    elif mutation == "random":
        raw = draw(st.binary(max_size=200))
    elif mutation == "big_number":
        raw = raw.replace(b'"records": [', b'"records": [' + b"1" * 5000 + b", ", 1)
    return raw
