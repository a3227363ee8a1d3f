"""A loopback stand-in for the Paris portal's Explore API v2.1 (the part ingest uses).

    with FakePortal(rows) as portal:          # rows from load_rows(...)
        portal.url                             # base URL, like https://opendata.paris.fr
        portal.available_until = epoch         # "today": newer rows are not published yet
        portal.faults.append("500")            # the next export call fails that way

Speaks, like the real API (GCP-NOTES.md): `GET .../exports/csv` with `select`, `where`
(`date >= date'...'`, `date < date'...'`, joined by `and`), `order_by` (`date [asc|desc]`),
`use_labels` (default false), `timezone` (default UTC), `with_bom` (default true),
`limit`; and `GET .../records` with `limit=0` for `total_count`. Bodies are the live
16-column semicolon CSV with CRLF line ends. Rows come from the project's real data:
the 10-column .csv.gz is re-rendered with the six missing columns taken from the 21-row
live sample for the counters it has (empty otherwise, as the portal leaves them).

Faults, one per export call, in order: "500" (HTTP 500), "truncate" (Content-Length
of the whole body, half of it sent), "cut_at_row" (no Content-Length, body stops at a
line end), "slow" (headers only after `slow_seconds`), "schema" (a column renamed).
Hostile ones (issue 21, N4): "gzip_bomb" (`Content-Encoding: gzip`, a gzip stream of
`bomb_bytes` zeros: 256 MB from 261 kB), "trickle" (the body, then its rows again and
again, `trickle_bytes` every `trickle_interval` s, no Content-Length, for up to
`trickle_seconds`), "huge" (the same trickle under a declared Content-Length of 2 GB);
`total_count` replaces the count call's answer.
Hostile rows are planted with `row_like` (a copy of a row at another hour, counter
or count); a row's `_published` epoch, if set, is when it appears (a 2030 row in an
ordinary day's export).
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import re
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse
from zoneinfo import ZoneInfo

FIELDS = {
    "id_compteur": "Identifiant du compteur", "nom_compteur": "Nom du compteur",
    "id": "Identifiant du site de comptage", "name": "Nom du site de comptage",
    "sum_counts": "Comptage horaire", "date": "Date et heure de comptage",
    "installation_date": "Date d'installation du site de comptage",
    "url_photos_n1": "Lien vers photo du site de comptage",
    "coordinates": "Coordonnées géographiques", "counter": "Identifiant technique compteur",
    "photos": "ID Photos",
    "test_lien_vers_photos_du_site_de_comptage_": "test_lien_vers_photos_du_site_de_comptage_",
    "id_photo_1": "id_photo_1", "url_sites": "url_sites", "type_dimage": "type_dimage",
    "mois_annee_comptage": "mois_annee_comptage",
}
BY_LABEL = {label: name for name, label in FIELDS.items()}
BASE = "/api/explore/v2.1/catalog/datasets/comptage-velo-donnees-compteurs"
SAMPLE_NAME = "paris-export-sample-2021-09.csv"
_CONDITION = re.compile(r"^\s*date\s*(>=|>|<=|<)\s*date'([^']+)'\s*$")


def row_like(row: dict, epoch: int | None = None, **fields) -> dict:
    """A copy of `row`, moved to `epoch` and with `fields` replaced (sum_counts, ...)."""
    out = {**row, **fields}
    if epoch is not None:
        out["_epoch"] = epoch
        out["date"] = dt.datetime.fromtimestamp(epoch, ZoneInfo("Europe/Paris")).isoformat()
    return out


_BOMBS: dict[int, bytes] = {}


def gzip_bomb(size: int) -> bytes:
    """One gzip stream of `size` zero bytes (level 9: ~1,030x smaller), cached."""
    if size not in _BOMBS:
        packer, block = zlib.compressobj(9, zlib.DEFLATED, 31), b"\0" * (1 << 20)
        parts = [packer.compress(block) for _ in range(size >> 20)]
        _BOMBS[size] = b"".join(parts) + packer.flush()
    return _BOMBS[size]


def _read_export(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8-sig", newline="") as f:
        return [{BY_LABEL[k]: v for k, v in row.items()} for row in csv.DictReader(f, delimiter=";")]


def load_rows(path: Path, counters: int | None = None, first_day: str | None = None,
              last_day: str | None = None, skip: tuple[str, ...] = ()) -> list[dict]:
    """Rows of an export file as 16-field dicts (+ "_epoch"), optionally the first
    `counters` counters (but those named in `skip`) and a [first_day, last_day] range
    of Paris days."""
    extra = {}
    sample = path.parent / SAMPLE_NAME
    if sample.exists():
        for row in _read_export(sample):
            extra.setdefault(row["nom_compteur"], row)
    rows, names = [], []
    for row in _read_export(path):
        day = row["date"][:10]
        if (first_day and day < first_day) or (last_day and day > last_day) or \
                row["nom_compteur"] in skip:
            continue
        if row["nom_compteur"] not in names:
            if counters is not None and len(names) >= counters:
                continue
            names.append(row["nom_compteur"])
        known = extra.get(row["nom_compteur"], {})
        full = {name: row.get(name, known.get(name, "")) for name in FIELDS}
        full["_epoch"] = int(dt.datetime.fromisoformat(row["date"]).timestamp())
        rows.append(full)
    return rows


class FakePortal:
    def __init__(self, rows: list[dict]):
        self.rows = sorted(rows, key=lambda r: r["_epoch"])
        self.available_until: int | None = None
        self.faults: list[str] = []
        self.slow_seconds = 3.0
        self.bomb_bytes = 256 << 20
        self.trickle_bytes, self.trickle_interval, self.trickle_seconds = 200, 0.02, 20.0
        self.sent: list[int] = []          # body bytes written per hostile export call
        self.total_count = None            # what the count call answers (None: the truth)
        self.requests: list[tuple[str, dict]] = []
        portal = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                portal._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "FakePortal":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the API -----------------------------------------------------------------------
    def _select(self, where: str | None) -> list[dict]:
        rows = self.rows
        if self.available_until is not None:   # a row is out once its `_published` time (default its hour) has come
            rows = [r for r in rows if r.get("_published", r["_epoch"]) < self.available_until]
        for condition in filter(None, re.split(r"\s+and\s+", where or "", flags=re.I)):
            match = _CONDITION.match(condition)
            if not match:
                raise ValueError(f"unsupported where condition {condition!r}")
            op, bound = match.group(1), dt.datetime.fromisoformat(match.group(2)).timestamp()
            test = {">=": float.__ge__, ">": float.__gt__, "<=": float.__le__, "<": float.__lt__}[op]
            rows = [r for r in rows if test(float(r["_epoch"]), bound)]
        return rows

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlparse(handler.path)
        params = {k: v[-1] for k, v in parse_qs(url.query).items()}
        self.requests.append((url.path, params))
        try:
            rows = self._select(params.get("where"))
        except ValueError as exc:
            return self._send(handler, 400, json.dumps({"error_code": "ODSQLError",
                                                        "message": str(exc)}).encode(), "application/json")
        if url.path == f"{BASE}/records":
            total = len(rows) if self.total_count is None else self.total_count
            body = json.dumps({"total_count": total, "results": []}).encode()
            return self._send(handler, 200, body, "application/json")
        if url.path != f"{BASE}/exports/csv":
            return self._send(handler, 404, b'{"error_code": "NotFound"}', "application/json")
        fault = self.faults.pop(0) if self.faults else None
        if fault == "500":
            return self._send(handler, 500, b'{"error_code": "InternalError"}', "application/json")
        if fault == "slow":
            time.sleep(self.slow_seconds)
        body = self._render(rows, params, rename=fault == "schema")
        if fault == "gzip_bomb":
            return self._send(handler, 200, gzip_bomb(self.bomb_bytes), "text/csv",
                              headers={"Content-Encoding": "gzip"})
        if fault in ("trickle", "huge"):
            return self._trickle(handler, body, declared=2 << 30 if fault == "huge" else None)
        if fault == "truncate":
            return self._send(handler, 200, body, "text/csv", cut_to=len(body) // 2)
        if fault == "cut_at_row":
            lines = body.split(b"\r\n")
            body = b"\r\n".join(lines[: max(2, len(lines) // 2)]) + b"\r\n"
            return self._send(handler, 200, body, "text/csv", length=False)
        return self._send(handler, 200, body, "text/csv")

    def _render(self, rows, params, rename=False) -> bytes:
        fields = [f.strip() for f in params.get("select", ",".join(FIELDS)).split(",")]
        unknown = [f for f in fields if f not in FIELDS]
        if unknown:
            raise ValueError(f"unknown field(s) {unknown}")
        order = params.get("order_by", "").split()
        if order and order[0] == "date":
            rows = sorted(rows, key=lambda r: r["_epoch"], reverse=order[-1].lower() == "desc")
        limit = int(params.get("limit", -1))
        rows = rows if limit < 0 else rows[:limit]
        zone = ZoneInfo(params.get("timezone", "UTC"))
        labels = params.get("use_labels", "false") == "true"
        header = [FIELDS[f] if labels else f for f in fields]
        if rename:
            header = [h.replace("Comptage horaire", "Comptage").replace("sum_counts", "counts")
                      for h in header]
        out = io.StringIO()
        writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
        writer.writerow(header)
        for row in rows:
            moment = dt.datetime.fromtimestamp(row["_epoch"], zone).isoformat()
            writer.writerow([moment if f == "date" else row[f] for f in fields])
        bom = "\ufeff" if params.get("with_bom", "true") == "true" else ""
        return (bom + out.getvalue()).encode("utf-8")

    def _trickle(self, handler, body: bytes, declared: int | None) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/csv")
        if declared:
            handler.send_header("Content-Length", str(declared))
        handler.send_header("Connection", "close")
        handler.end_headers()
        header, rows = body.split(b"\r\n", 1)
        stream, sent, ends = header + b"\r\n" + rows * 1000, 0, time.monotonic() + self.trickle_seconds
        try:
            while time.monotonic() < ends:
                piece = stream[sent % len(stream):][: self.trickle_bytes]
                handler.wfile.write(piece)
                handler.wfile.flush()
                sent += len(piece)
                time.sleep(self.trickle_interval)
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.sent.append(sent)
        handler.close_connection = True

    @staticmethod
    def _send(handler, status, body, content_type, cut_to=None, length=True, headers=None) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        if length:
            handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Connection", "close")
        handler.end_headers()
        try:
            handler.wfile.write(body if cut_to is None else body[:cut_to])
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        handler.close_connection = True
