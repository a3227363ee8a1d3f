"""The HTTP layer both functions share: routes, limits, auth, JSON errors, one log
line per request. A function's main.py only says how its model's outputs become a
response.

Routes: POST / and /predict, GET /health, GET /models, POST /refresh (aliases
/refresh_model and the old front's /refresh_models), GET /docs and /openapi.json,
GET /counters, GET /counts (velocast.serving.measured); the forecast page, /docs and CORS
preflights are velocast.serving.page's.
Every error is {"error": {"code", "message", "details"}}.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import time
from dataclasses import dataclass

from velocast.serving import api_docs, logs, measured, page, protocols

from velocast import catalog

from velocast.core import tasks
from velocast.serving import body as request_body
from velocast.core.errors import ApiError, Error, as_http
from velocast.serving.model_cache import ModelCache
from velocast.serving.settings import Settings
from velocast.core.prediction import Predictor
from velocast.core.schema import parse_json, parse_records

log = logging.getLogger("velocast.service")
MAX_WARNINGS = 100

PREDICT_ROUTES = ("/", "/predict")
REFRESH_ROUTES = ("/refresh", "/refresh_model", "/refresh_models")
# Keyless documents. GET /docs is page.serve's (it carries a CSP); the old front's
# "ping" button expects 200 from it.
DOCUMENTS = {"/openapi.json": ("application/json; charset=utf-8", api_docs.spec_bytes)}
ROUTES = {**{r: "POST" for r in PREDICT_ROUTES + REFRESH_ROUTES},
          "/health": "GET", "/models": "GET", "/counters": "GET", "/counts": "GET",
          "/docs": "GET", **{r: "GET" for r in DOCUMENTS}}


@dataclass(frozen=True)
class Document:
    """A non-JSON answer (HTML, the spec), passed through as bytes."""

    content: bytes
    content_type: str


def _check_media_type(request) -> None:
    """JSON in UTF-8, uncompressed (openapi.yaml, requestBodies): application/json or a
    +json type, a charset parameter only if it says UTF-8, no Content-Encoding."""
    content_type = (request.mimetype or "").lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise ApiError(415, "unsupported_media_type",
                       f"send Content-Type: application/json, not {content_type or 'nothing'}")
    charset = (request.mimetype_params.get("charset") or "utf-8").strip().lower()
    if charset not in ("utf-8", "utf8"):
        raise ApiError(415, "unsupported_media_type",
                       f"send the body in UTF-8 (RFC 8259), not {charset}")
    coding = request.headers.get("Content-Encoding", "").strip().lower()
    if coding not in ("", "identity"):
        raise ApiError(415, "unsupported_media_type",
                       f"send the body uncompressed, without Content-Encoding: {coding}",
                       headers={"Accept-Encoding": "identity"})


class Service:
    """One per function instance, created at import; creates nothing expensive until
    the first request needs it."""

    def __init__(self, task: str, environ=os.environ):
        self.task = task
        self.description = tasks.get(task)
        self.environ = environ
        self._lock = threading.Lock()
        self._cache: ModelCache | None = None
        self._predictor: Predictor | None = None
        self._keys = None
        self._settings: Settings | None = None

    # Lazily created, once per instance, under a lock (functions-framework runs threads).
    def _setup(self) -> None:
        if self._settings is not None:  # set last, under the lock: safe to read without it
            return
        with self._lock:
            if self._settings is not None:
                return
            from velocast.serving.auth import KeyRing  # noqa: PLC0415

            logs.configure()
            settings = Settings.from_env(self.environ)
            self._keys = KeyRing.from_env(self.environ)
            self._page_config = page.PageConfig.from_env(self.environ)
            self._counts = measured.CountsReader.from_env(self.environ)
            self._cache = ModelCache(settings.model_store, self.task, settings.refresh_seconds,
                                     settings.onnx_threads)
            self._predictor = Predictor(self.description, self._cache)
            self._settings = settings

    @property
    def settings(self) -> Settings:
        self._setup()
        return self._settings

    @property
    def cache(self) -> ModelCache:
        self._setup()
        return self._cache

    # -- entry point -------------------------------------------------------------------
    def handle(self, request):
        started = time.perf_counter()
        token = None
        records = 0
        try:
            self._setup()
            token = logs.current_trace.set(logs.trace_from_header(
                request.headers.get("X-Cloud-Trace-Context"), self._settings.project))
            status, body, headers, error_code = 200, None, {}, None
            answer = page.serve(self._page_config, request)  # the page's files and CORS preflights
            if answer is not None:
                self._log_request(request, answer[1], len(answer[0]),
                                  time.perf_counter() - started, 0, None)
                if _body_left_unread(request):
                    return _answer_unread(request, *answer)
                return answer
            try:
                body, records = self._route(request)
            except Error as exc:
                http = as_http(exc)
                status, headers, error_code, body = http.status, http.headers, http.code, http.body()
                # A key refusal is built before the body is read and raised after it: its
                # traceback holds the frame that holds it, a cycle that kept each refused
                # body until a full collection (keyless padded bodies, 5 rounds of 8:
                # worker 109 -> 350 MB). Rendered, the error needs neither.
                exc.__traceback__ = exc.__context__ = None
            except Exception:  # noqa: BLE001  (a 5xx is a bug: log it whole, answer JSON)
                log.exception("unhandled error on %s %s", request.method, request.path)
                status, error_code = 500, "internal"
                body = ApiError(500, "internal", "internal error; it was logged").body()
            # /health answers its readiness body with 503 while nothing is served.
            if status == 200 and (request.path.rstrip("/") or "/") == "/health" \
                    and not body["models"]:
                status, headers, error_code = 503, {"Retry-After": "5"}, "no_model"
            if isinstance(body, Document):
                payload, headers = body.content, {"Content-Type": body.content_type}
            else:
                payload = json.dumps(body, ensure_ascii=False, allow_nan=False)
                headers = {"Content-Type": "application/json; charset=utf-8", **headers}
            latency = time.perf_counter() - started
            self._log_request(request, status, len(payload), latency, records, error_code)
            headers = {**headers, **page.cors_headers(request, self._page_config)}
            if _body_left_unread(request):
                return _answer_unread(request, payload, status, headers)
            return payload, status, headers
        finally:
            if token is not None:
                logs.current_trace.reset(token)

    def _log_request(self, request, status, size, latency, records, error_code) -> None:
        level = logging.ERROR if status >= 500 else logging.WARNING if status >= 400 else logging.INFO
        log.log(level, "%s %s %d %d record(s) %.1f ms", request.method, request.path, status,
                records, latency * 1000, extra={
                    "httpRequest": {
                        "requestMethod": request.method,
                        "requestUrl": request.url,
                        "status": status,
                        "requestSize": str(request.content_length or 0),
                        "responseSize": str(size),
                        "userAgent": request.headers.get("User-Agent", ""),
                        "remoteIp": request.remote_addr or "",
                        "latency": f"{latency:.6f}s",
                    },
                    "records": records,
                    "latency_ms": round(latency * 1000, 3),
                    "task": self.task,
                    **protocols.take_log_fields(),
                    **({"error_code": error_code} if error_code else {}),
                })

    # -- routing -----------------------------------------------------------------------
    def _route(self, request) -> tuple[dict, int]:
        path = request.path.rstrip("/") or "/"
        method = ROUTES.get(path)
        if method is None:
            raise ApiError(404, "not_found", f"no route {path}; routes: "
                           f"{', '.join([*ROUTES, *page.PAGE_ROUTES])}")
        # HEAD works where GET does (werkzeug sends the headers without the body).
        if request.method != method and not (request.method == "HEAD" and method == "GET"):
            raise ApiError(405, "method_not_allowed", f"{path} takes {method}, not {request.method}",
                           headers={"Allow": "GET, HEAD" if method == "GET" else method})
        if path in DOCUMENTS:
            content_type, content = DOCUMENTS[path]
            return Document(content(), content_type), 0
        if path == "/health":
            return self._health(), 0
        if path == "/models":
            self._keys.check_client(request.headers)
            return self._models(), 0
        if path == "/counters":
            self._keys.check_client(request.headers)
            return page.counters(self.cache), 0
        if path == "/counts":
            self._keys.check_client(request.headers)
            return measured.answer(self, request.args), 0
        if path in REFRESH_ROUTES:
            self._keys.check_admin(request.headers)
            return self.cache.refresh(), 0
        # Checked in _predict: a BigQuery call carries its key in its body (protocols.py).
        return self._predict(request, self._denied(request))

    def _denied(self, request) -> ApiError | None:
        try:
            self._keys.check_client(request.headers)
        except ApiError as exc:
            return exc
        return None

    def _health(self) -> dict:
        """Keyless, so it says only whether the task is ready and which versions serve
        (with their age); the store, errors, refusals and metrics are in /models."""
        health = self.cache.health()
        now = time.time()
        served = [{"model_type": m["model_type"], "metric": m["metric"], "type": m["type"],
                   "version": m["version"], "age_days": _age_days(m.get("published_at"), now)}
                  for m in health["models"]]
        return {"task": self.task, "status": "ok" if served else "unavailable", "models": served}

    def _models(self) -> dict:
        health = self.cache.health()
        snapshot = self.cache.snapshot()   # a store that cannot be read: 503
        # The model a request without options gets: velocast.catalog decides.
        default = snapshot.default()
        return {"task": self.task, "default": default.to_dict() if default else None,
                "models": [e.to_dict() for e in snapshot.history()],
                "serving": health["models"], "store": health["store"],
                "feature_spec_version": health["feature_spec_version"],
                "error": health["error"], "refused": health["refused"],
                "ignored": list(snapshot.ignored),
                "served": catalog.describe(self.cache.store, snapshot)}

    def _read_json(self, request, denied: ApiError | None = None) -> dict:
        """The body as a JSON object. Errors found before it is parsed take BigQuery's
        {"errorMessage"} shape when the bytes read look like a BigQuery call (protocols.py);
        a request without a valid key header whose body does not carry one is refused
        without parsing it."""
        _check_media_type(request)
        limit = self.settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            # Answered after a glance at the body's start (is it BigQuery's?), the rest
            # unread and the connection closed.
            start, _ = request_body.read(request, protocols.SNIFF_BYTES, protocols.SNIFF_SECONDS)
            raise protocols.shaped(start, ApiError(
                413, "payload_too_large",
                f"body is {request.content_length:,} bytes; the limit is {limit:,}"))
        timeout = self.settings.body_timeout_seconds
        raw, expired = request_body.read(request, limit, timeout)
        if expired:
            raise protocols.shaped(raw, ApiError(
                408, "request_timeout",
                f"the body did not arrive within {request_body.GRACE_SECONDS:g} s plus 1 s "
                f"per {request_body.MIN_BYTES_PER_SECOND:,} bytes (at most {timeout:g} s)"))
        if len(raw) > limit:
            raise protocols.shaped(raw, ApiError(413, "payload_too_large",
                                                 f"body exceeds {limit:,} bytes"))
        request.environ["velocast.body_read"] = True
        too_complex = request_body.structure_error(raw, self.settings.max_records)
        if too_complex:
            raise protocols.shaped(raw, ApiError(413, "payload_too_large", too_complex))
        if denied is not None:
            self._check_body_key(raw, denied)
        try:
            body = parse_json(raw)
        except ValueError as exc:
            raise protocols.shaped(raw, ApiError(400, "invalid_json", str(exc))) from None
        if not isinstance(body, dict):
            raise ApiError(422, "invalid_request",
                            "body must be a JSON object with a 'records' list",
                            [{"field": "(body)", "reason": f"got {type(body).__name__}"}])
        return body

    def _check_body_key(self, raw: bytes, denied: ApiError) -> None:
        """Without a valid key header, the key in the body's userDefinedContext must be
        valid before the body is parsed (protocols.body_key)."""
        key = protocols.body_key(raw)
        if key is None:
            raise protocols.shaped(raw, denied)
        try:
            self._keys.check_client({"X-API-Key": key})
        except ApiError as exc:
            raise protocols.shaped(raw, exc) from None

    def _predict(self, request, denied: ApiError | None = None) -> tuple[dict, int]:
        try:
            body = self._read_json(request, denied)
        except ApiError as exc:
            if denied is not None and exc.status != 401 and exc.status != 403:
                raise protocols.shaped_like(exc, denied) from None
            raise
        handler = protocols.detect(body)  # BigQuery remote functions, Vertex AI
        if handler is not None:
            return handler(body, protocols.Caller(self.predictor, self.settings.max_records,
                                                  self._keys.check_client), denied)
        if denied is not None:
            raise denied
        return self.predict_records(body)

    def predict_records(self, body: dict) -> tuple[dict, int]:
        """The old {"records"} body: validated here, scored by the prediction core."""
        records = body.get("records")
        request_body.check_count(records, self.settings.max_records)
        options = {}
        for name in ("model_type", "metric"):
            value = body.get(name)
            if value is not None and (not isinstance(value, str) or not value or len(value) > 64):
                raise ApiError(422, "invalid_request", f"'{name}' must be a short string",
                                [{"field": name, "reason": "expected a string such as "
                                  + ("'gbdt'" if name == "model_type" else "'r2'")}])
            options[name] = value
        parsed = parse_records(records)
        answer = self.predictor.predict(parsed, options["model_type"], options["metric"])
        response = {**answer.fields, "model": answer.describe_model()}
        if answer.warnings:
            response["warnings"] = answer.warnings[:MAX_WARNINGS]
        return response, len(parsed)

    @property
    def predictor(self) -> Predictor:
        self._setup()
        return self._predictor


def _body_left_unread(request) -> bool:
    if request.environ.get("velocast.body_read"):
        return False
    return bool(request.content_length) or "chunked" in \
        request.headers.get("Transfer-Encoding", "").lower()


def _answer_unread(request, payload, status: int, headers: dict):
    """A body this function did not read (refused early, or stalled) must not be read
    afterwards: functions-framework's after-request hook reads whatever is left, which
    made a 413 wait for a 300 MB body and a declared 10 GB one wait forever. The hook
    skips streamed responses. The connection closes after the answer (velocast.serving.transport
    makes gunicorn honour the header): kept alive, what is left of the body would be read
    as the next request, or cut under it (issue 25, N6)."""
    import flask  # noqa: PLC0415  (bundled with functions-framework)

    request_body.cut_unread(request)
    data = payload.encode("utf-8") if isinstance(payload, str) else payload
    return flask.Response(iter([data]), status=status,
                          headers={**headers, "Content-Length": str(len(data)),
                                   "Connection": "close"})


def _age_days(published_at: str | None, now: float) -> float | None:
    if not published_at:
        return None
    try:
        moment = dt.datetime.fromisoformat(published_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    return round((now - moment.timestamp()) / 86400, 2)
