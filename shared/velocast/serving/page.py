"""The forecast page and what it needs from a function: the page's files (GET /app,
GET / with Accept: text/html, GET /app/<file>), GET /docs, GET /counters, and CORS for
the origins in ALLOWED_ORIGINS (the page on one function calls the other).

Both functions serve the page (it is the same shared code, ~57 KB of files): open it on
`regress`, whose /counters and /predict it uses most; it calls `classify` at
CLASSIFY_URL for the busy hours.

Environment:
  ALLOWED_ORIGINS  comma-separated origins (scheme://host[:port]) allowed to call this
                   function from a browser; empty (default) = same-origin only. `*` is
                   refused: the page sends an API key with every call.
  CLASSIFY_URL     where the page served by this function reaches `classify` (e.g.
                   http://127.0.0.1:8080); a ?classify= query parameter may override it
                   with a loopback URL only, and only on a page itself served from
                   loopback (the CSP's connect-src says so: a link must not send the
                   key to a port on the reader's machine).
"""

from __future__ import annotations

import datetime as dt
import html
import math
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from velocast.serving import api_docs

from velocast.core import paris_calendar

STATIC = Path(__file__).resolve().parent / "static"
PAGE = "forecast.html"
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8"}
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?$")
LOOPBACK = "http://localhost:* http://127.0.0.1:*"
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
# The models' forecasts were checked (backtest folds, docs/forecast-quality.md) up to
# this many days after their training data: the page says so past it.
CHECKED_HORIZON_DAYS = 28
PREFLIGHT_HEADERS = "Content-Type, X-API-Key, Authorization, X-Cloud-Trace-Context"
# Seen by the page's own script: Retry-After on 503, WWW-Authenticate on 401.
EXPOSED_HEADERS = "Retry-After, WWW-Authenticate"

# Served by serve() below, beside service.ROUTES (openapi.yaml documents both).
PAGE_ROUTES = {"/app": "GET", "/app/{file}": "GET"}

_files: dict[str, bytes] = {}
_files_lock = threading.Lock()


def _file(name: str) -> bytes | None:
    """A static file's bytes, read once per instance (not at import: cold start)."""
    if name not in _files:
        path = STATIC / name
        if "/" in name or path.suffix not in TYPES or not path.is_file():
            return None
        with _files_lock:
            _files.setdefault(name, path.read_bytes())
    return _files[name]


@dataclass(frozen=True)
class PageConfig:
    """Read once per instance with the other settings (Service._setup)."""

    allowed_origins: frozenset[str]
    classify_url: str

    @classmethod
    def from_env(cls, environ) -> "PageConfig":
        origins = frozenset(o.strip().rstrip("/")
                            for o in environ.get("ALLOWED_ORIGINS", "").split(",") if o.strip())
        bad = sorted(o for o in origins if not _ORIGIN.match(o))
        if bad:
            raise ValueError(f"ALLOWED_ORIGINS: {', '.join(bad)} not an origin like "
                             "https://host or http://host:port ('*' is refused: calls carry keys)")
        url = environ.get("CLASSIFY_URL", "").strip().rstrip("/")
        if url and urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"CLASSIFY_URL={url!r} is not an http(s) URL")
        return cls(origins, url)


def cors_headers(request, config: PageConfig) -> dict:
    """Headers every answer carries for a browser on an allowed origin."""
    origins = config.allowed_origins
    if not origins:
        return {}
    headers = {"Vary": "Origin"}
    origin = request.headers.get("Origin", "")
    if origin in origins:
        headers.update({"Access-Control-Allow-Origin": origin,
                        "Access-Control-Expose-Headers": EXPOSED_HEADERS})
    return headers


def serve(config: "PageConfig", request):
    """The answer to a page or preflight request, or None for the JSON routes."""
    path = request.path.rstrip("/") or "/"
    if request.method == "OPTIONS":
        return _preflight(config, request)
    if request.method not in ("GET", "HEAD"):
        return None
    wants_html = path == "/" and "text/html" in request.headers.get("Accept", "")
    if path == "/app" and request.path.endswith("/"):
        # Relative asset URLs resolve against /app/ wrongly: send the browser to /app.
        return "", 308, {"Location": "../app"}
    if path == "/favicon.ico":
        # Browsers ask for it on any page of the origin; a 404 is a console error.
        return "", 204, {"Cache-Control": "max-age=86400"}
    if path == "/app" or wants_html:
        return _page(config, request)
    if path == "/docs":
        return api_docs.page(), 200, {"Content-Type": TYPES[".html"],
                                      "Content-Security-Policy": api_docs.POLICY,
                                      "X-Content-Type-Options": "nosniff",
                                      "Referrer-Policy": "no-referrer"}
    if path.startswith("/app/"):
        name = path[len("/app/"):]
        body = _file(name)
        if body is None or name == PAGE:
            return None  # the JSON 404
        return body, 200, {"Content-Type": TYPES[Path(name).suffix], "Cache-Control": "no-cache",
                           "X-Content-Type-Options": "nosniff"}
    return None


def _page(config: "PageConfig", request):
    classify = config.classify_url
    template = _file(PAGE)
    body = template.replace(b"{{CLASSIFY_URL}}", html.escape(classify).encode())
    parts = urlsplit(classify)
    classify_origin = f"{parts.scheme}://{parts.netloc}" if classify else ""
    # ?classify= may name a loopback port only when the page is itself on loopback
    # (make serve, gcloud run services proxy): from a public host, a crafted link
    # could otherwise send the reader's key to whatever listens on their machine.
    host = urlsplit("//" + request.host).hostname or ""
    loopback = LOOPBACK if host in LOOPBACK_HOSTS else ""
    policy = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
              f"connect-src 'self' {classify_origin} {loopback}; base-uri 'none'; "
              "form-action 'none'; frame-ancestors 'none'")
    return body, 200, {"Content-Type": TYPES[".html"], "Cache-Control": "no-cache",
                       "Content-Security-Policy": " ".join(policy.split()),
                       "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def _preflight(config: "PageConfig", request):
    origin = request.headers.get("Origin", "")
    method = request.headers.get("Access-Control-Request-Method", "")
    if origin not in config.allowed_origins or method not in ("GET", "POST"):
        # No CORS headers: the browser refuses the call; say why to a person reading it.
        return ('{"error": {"code": "origin_not_allowed", "message": "this origin or method '
                'may not call this function from a browser; see ALLOWED_ORIGINS", '
                '"details": []}}', 403,
                {"Content-Type": "application/json; charset=utf-8", "Vary": "Origin"})
    return "", 204, {"Access-Control-Allow-Origin": origin, "Vary": "Origin",
                     "Access-Control-Allow-Methods": "GET, POST",
                     "Access-Control-Allow-Headers": PREFLIGHT_HEADERS,
                     "Access-Control-Max-Age": "600"}


def counters(cache) -> dict:
    """The served default model's counters: coordinates, mean hourly count, and the
    usual count per day type and hour (expm1 of the card's mean log1p count: a
    geometric mean, so below the arithmetic mean on skewed hours)."""
    model = cache.get()  # NoModelAvailable is the API's 503 no_model
    table = model.table
    rows = []
    for i in sorted(range(len(table.names)), key=lambda i: table.names[i]):
        usual = [[round(math.expm1(v), 1) for v in day] for day in table.profile[i].tolist()]
        rows.append({"name": table.names[i], "latitude": float(table.latitude[i]),
                     "longitude": float(table.longitude[i]),
                     "mean_count": round(float(table.mean_count[i]), 1), "usual": usual})
    year = dt.date.today().year
    holidays = sorted(d.isoformat() for y in range(year - 1, year + 3)
                      for d in paris_calendar.public_holidays(y))
    e = model.entry
    return {"task": e.task, "model": {"type": e.model_type, "version": e.version,
                                      "trained_from": e.trained_from, "trained_to": e.trained_to},
            "checked_horizon_days": CHECKED_HORIZON_DAYS,
            "school_calendar_until": paris_calendar.school_calendar_until().isoformat(),
            "day_types": ["working day", "saturday", "sunday or public holiday"],
            "public_holidays": holidays, "counters": rows}
