"""Other callers' bodies on the predict routes: BigQuery remote functions and Vertex AI.

    BigQuery  {"requestId", "caller", "sessionUser", "userDefinedContext",
               "calls": [[counter, timestamp, latitude, longitude], ...]}
              -> 200 {"replies": [...]}, one per call in order, or
                 4xx/5xx {"errorMessage": "..."} (under 1 KB)
    Vertex AI {"instances": [record, ...], "parameters": {"model_type", "metric"}}
              -> {"predictions": [...]}, one per instance

`detect(body)` tells which (None: the old {"records"} body); the service calls the
handler it returns with a `Caller`: the prediction core, the record limit and the key
check, nothing of the service itself. BigQuery retries 408, 429, 500, 503 and 504, so bad input is
never a 5xx: a malformed request is a 400, and a call that cannot be scored (a null,
a bad timestamp, an unknown counter without usable coordinates) gets a null reply
while the others are scored, counted in the request's log line. Replies depend on
the calls, the options and the served model only, so a resent request (same
requestId) gets the same replies. A body refused before it is parsed (`shaped`) gets
{"errorMessage"} too when its first bytes look like BigQuery's.
"""

from __future__ import annotations

import contextvars
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter

import numpy as np

from velocast.core import tasks
from velocast.core.errors import ApiError, NoModelAvailable, UnknownModelChoice, as_http
from velocast.serving.body import check_count
from velocast.core.features import Records
from velocast.core.prediction import Predictor
from velocast.core.schema import MAX_NAME_LENGTH, parse_records, parse_timestamp

# The SQL signature every remote function over these endpoints declares, in order
# (tests/unit/test_bigquery_terraform.py checks the routines in terraform/bigquery.tf).
BIGQUERY_ARGUMENTS = (("counter", "STRING"), ("ts", "TIMESTAMP"), ("lat", "FLOAT64"),
                      ("lon", "FLOAT64"))
# What a reply can be, per task: userDefinedContext {"output": ...} -> SQL return type
# (each task's kind says, velocast.core.tasks.Kind).
OUTPUTS = {t.name: t.kind.outputs for t in tasks.TASKS.values()}
CONTEXT_KEYS = ("model_type", "metric", "output", "api_key")
MAX_ERROR_CHARS = 900  # BigQuery shows errorMessage to the SQL user; keep it under 1 KB

_log_fields: contextvars.ContextVar[dict | None] = contextvars.ContextVar(
    "velocast_protocol_log_fields", default=None)


def take_log_fields() -> dict:
    """Fields for this request's log line (then cleared: a thread serves many requests)."""
    fields = _log_fields.get()
    if fields is None:
        return {}
    _log_fields.set(None)
    return fields


@dataclass(frozen=True)
class Caller:
    """What an adapter may use: the task's predictor, the record limit, the key check."""
    predictor: Predictor
    max_records: int
    check_key: Callable[[dict], None]    # raises ApiError for a missing or wrong key

    @property
    def task(self) -> str:
        return self.predictor.task.name


def detect(body: dict):
    """The handler for a BigQuery or Vertex AI body, None for the old {"records"} body."""
    if "records" in body:
        return None
    if "calls" in body:
        return bigquery
    if "instances" in body:
        return vertex
    return None


class RemoteFunctionError(ApiError):
    """An error as BigQuery reads it: {"errorMessage"} (shown to the SQL user)."""

    def body(self) -> dict:
        return {"errorMessage": self.message}


# -- before the body is parsed ---------------------------------------------------------
# BigQuery's body opens with requestId, caller and sessionUser (BigQuery docs, Remote
# functions, "Input format"), before the calls: their names within its first bytes
# tell a BigQuery call when the body is refused before it is parsed (too large, too
# many values, not JSON), so that BigQuery still gets {"errorMessage"} (issue 25, N15:
# 100,000 calls got a 413 in the {"error"} shape).
SNIFF_BYTES = 4096
# A body refused for its declared size is glanced at for this long at most (BigQuery
# sends its request whole; a client that sends less gets its 413 in this {"error"} shape).
SNIFF_SECONDS = 0.5
BIGQUERY_MARKERS = (b'"requestId"', b'"sessionUser"')
# What a BigQuery caller refused as too large can do about it.
TOO_LARGE_HINT = "; lower the routine's max_batching_rows"


def looks_like_bigquery(raw: bytes) -> bool:
    start = raw[:SNIFF_BYTES]
    return start.lstrip().startswith(b"{") and any(m in start for m in BIGQUERY_MARKERS)


def shaped(raw: bytes, error: ApiError) -> ApiError:
    """`error` as BigQuery reads it if `raw` (the body, or its start) is a BigQuery call."""
    if not looks_like_bigquery(raw) or isinstance(error, RemoteFunctionError):
        return error
    message = error.message
    if error.status == 413:
        message += TOO_LARGE_HINT
    elif error.status == 401:
        message += "; a BigQuery remote function sends it as userDefinedContext.api_key"
    return _error(error.status, error.code, message, error.headers)


def shaped_like(model: ApiError, error: ApiError) -> ApiError:
    """`error` in the shape `model` was answered in (a key refusal takes the place of a
    body error: a caller without a key learns nothing about its body)."""
    if isinstance(model, RemoteFunctionError) and not isinstance(error, RemoteFunctionError):
        return _error(error.status, error.code, error.message + "; a BigQuery remote "
                      "function sends it as userDefinedContext.api_key", error.headers)
    return error


# The routine's userDefinedContext is small (a few options and the key); a window this
# large holds it whole.
CONTEXT_WINDOW_BYTES = 64 * 1024
_CONTEXT_NAME = b'"userDefinedContext"'


def body_key(raw: bytes) -> str | None:
    """The client key a body carries (userDefinedContext.api_key), read without parsing
    the body: the object after the first `"userDefinedContext"` name (written plainly,
    as BigQuery writes it) is decoded alone. A request without a valid key header is
    refused unless this key is valid, before its body is parsed: parsing a keyless 10 MB
    body took 0.27-0.75 s (issue 25, N13), finding and decoding the context 0.44 ms
    in a 2.6 MB one (bench/README.md). The full parse that follows checks the key again where the parsed
    body has it (`bigquery`)."""
    at = raw.find(_CONTEXT_NAME)
    if at < 0:
        return None
    start = at + len(_CONTEXT_NAME)
    text = raw[start:start + CONTEXT_WINDOW_BYTES].decode("utf-8", "replace").lstrip()
    if not text.startswith(":"):
        return None
    try:
        context, _ = _DECODER.raw_decode(text[1:].lstrip())
    except ValueError:
        return None
    key = context.get("api_key") if isinstance(context, dict) else None
    return key if isinstance(key, str) and key else None


_DECODER = json.JSONDecoder()


def _error(status: int, code: str, message: str, headers=None, bigquery_body: bool = True):
    """BigQuery gets {"errorMessage"}; a Vertex client the usual error body, with the
    old body's 422 where BigQuery gets a 400."""
    if not bigquery_body:
        return ApiError(422 if status == 400 else status, code, message, headers=headers)
    if len(message) > MAX_ERROR_CHARS:
        message = message[:MAX_ERROR_CHARS - 3] + "..."
    return RemoteFunctionError(status, code, message, headers=headers)


def _options(task: str, given, where: str, default_output: str, bigquery_body: bool) -> dict:
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise _error(400, "invalid_request", f"'{where}' must be a JSON object",
                     bigquery_body=bigquery_body)
    outputs = tasks.get(task).kind.outputs
    options = {"model_type": None, "metric": None, "output": default_output}
    for name in ("model_type", "metric", "output"):
        value = given.get(name)
        if value is None:
            continue
        if not isinstance(value, str) or not value or len(value) > 64:
            raise _error(400, "invalid_request", f"{where}.{name} must be a short string",
                         bigquery_body=bigquery_body)
        options[name] = value
    if options["output"] not in outputs:
        raise _error(400, "invalid_request",
                     f"{where}.output {options['output']!r} is not one of "
                     f"{', '.join(outputs)} for {task}", bigquery_body=bigquery_body)
    return options


def _predict(caller: Caller, records: Records, options: dict, bigquery_body: bool,
             skip_unscorable: bool = False):
    try:
        return caller.predictor.predict(records, options["model_type"], options["metric"],
                                        skip_unscorable)
    except (UnknownModelChoice, NoModelAvailable) as exc:
        # BigQuery's caller mistakes are 400s (velocast.core.errors.HTTP says 422: _error maps
        # it back for a Vertex body); a 503 on purpose: BigQuery retries it, and a model
        # appears on the next refresh.
        http = as_http(exc)
        raise _error(400 if http.status == 422 else http.status, http.code, http.message,
                     http.headers, bigquery_body=bigquery_body) from None


def _replier(task: str, output: str, response: dict, bigquery_body: bool):
    """i -> the reply for the i-th scored row, from the function's own response."""
    try:
        return tasks.get(task).kind.replies(output, response)
    except ValueError as exc:
        raise _error(400, "invalid_request", f"{exc} ({task})", bigquery_body=bigquery_body) from None


# -- BigQuery ------------------------------------------------------------------------

def _finite(value) -> float:
    """A FLOAT64 argument: a JSON number, or "NaN"/"Infinity" strings; NaN when absent."""
    if type(value) is float or (type(value) is int and abs(value) < 1e300):
        return float(value)
    return math.nan  # null, "NaN", "Infinity", anything else: no usable coordinate


def _floats(column: tuple) -> np.ndarray:
    """A FLOAT64 column; a value that is not a finite number (null, "NaN", "Infinity",
    a word) becomes NaN: no coordinate, which only matters for an unknown counter."""
    try:
        # One C loop: null -> NaN, "NaN"/"Infinity" -> non-finite. Falls back to a
        # Python loop when a value is not a number (a list, a word).
        values = np.array(column, dtype=np.float64)
        if values.ndim != 1:
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        values = np.array([_finite(v) for v in column], dtype=np.float64)
    values[~np.isfinite(values)] = np.nan
    return values


def _names(column: tuple) -> list:
    # A batch holds few distinct counters: check each once.
    clean = {n: (n.strip() if 0 < len(n) <= MAX_NAME_LENGTH and n.strip() else None)
             for n in {n for n in column if type(n) is str}}
    return [clean[n] if type(n) is str else None for n in column]


def _epochs(column: tuple) -> np.ndarray:
    # ... and few distinct hours: parse each string once.
    epochs: dict[str, float] = {}
    for text in {t for t in column if type(t) is str}:
        try:
            epochs[text] = parse_timestamp(text)[0]  # (UTC epoch, an ambiguity note)
        except ValueError:
            epochs[text] = math.nan
    return np.array([epochs[t] if type(t) is str else math.nan for t in column],
                    dtype=np.float64)


def _parse_calls(calls: list) -> tuple[list, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Names, epochs, latitudes, longitudes and a usable-row mask, column by column (a
    row-by-row loop was 25 % of a 5,000-row request: bench/README.md). A wrong arity or
    a call that is not a list fails the whole request (the routine is misdeclared)."""
    arity = len(BIGQUERY_ARGUMENTS)
    if not all(type(call) is list and len(call) == arity for call in calls):
        i, call = next((i, c) for i, c in enumerate(calls)
                       if type(c) is not list or len(c) != arity)
        got = f"{len(call)} argument(s)" if isinstance(call, list) else type(call).__name__
        raise _error(400, "invalid_request",
                     f"calls[{i}]: expected {arity} arguments "
                     f"({', '.join(a for a, _ in BIGQUERY_ARGUMENTS)}), got {got}")
    if not calls:
        return [], *(np.empty(0) for _ in range(3)), np.empty(0, dtype=bool)
    # itemgetter columns: zip(*calls) with 5,000 arguments took 4x longer.
    names = _names(list(map(itemgetter(0), calls)))
    epochs = _epochs(list(map(itemgetter(1), calls)))
    usable = np.isfinite(epochs) & np.fromiter((n is not None for n in names), bool, len(names))
    return (names, epochs, _floats(list(map(itemgetter(2), calls))),
            _floats(list(map(itemgetter(3), calls))), usable)


def bigquery(body: dict, caller: Caller, denied=None) -> tuple[dict, int]:
    context = body.get("userDefinedContext")
    if denied is not None:
        # BigQuery sends no headers of ours (its Authorization is a Google ID token),
        # so the routine carries the client key in its userDefinedContext.
        key = context.get("api_key") if isinstance(context, dict) else None
        if not isinstance(key, str) or not key:
            raise _error(denied.status, denied.code, denied.message + "; a BigQuery remote "
                         "function sends it as userDefinedContext.api_key", denied.headers)
        try:
            caller.check_key({"X-API-Key": key})
        except ApiError as exc:
            raise _error(exc.status, exc.code, exc.message, exc.headers) from None
    calls = body.get("calls")
    if not isinstance(calls, list):
        raise _error(400, "invalid_request", "'calls' must be a list of argument lists")
    if len(calls) > caller.max_records:
        raise _error(413, "too_many_records", f"{len(calls):,} calls; the limit is "
                     f"{caller.max_records:,} per request: lower the routine's max_batching_rows")
    options = _options(caller.task, context, "userDefinedContext",
                       caller.predictor.task.kind.bigquery_output, True)
    names, epochs, lats, lons, usable = _parse_calls(calls)
    replies: list = [None] * len(calls)
    fields = {"name": "bigquery", "request_id": str(body.get("requestId", ""))[:100],
              "calls": len(calls)}
    if calls:
        rows = np.flatnonzero(usable)
        answer = _predict(caller, Records([names[i] for i in rows.tolist()], epochs[rows],
                                          lats[rows], lons[rows]), options, True,
                          skip_unscorable=True)
        if answer.fields:
            reply = _replier(caller.task, options["output"], answer.fields, True)
            for j, i in enumerate(rows[answer.rows].tolist()):
                replies[i] = reply(j)
        fields["model_version"] = answer.model.entry.version
    fields["null_replies"] = replies.count(None)
    _log_fields.set({"protocol": fields})
    return {"replies": replies}, len(calls)


# -- Vertex AI -----------------------------------------------------------------------

def vertex(body: dict, caller: Caller, denied=None) -> tuple[dict, int]:
    """Validated exactly as the old body (same 4xx), scored by the same core, reshaped."""
    if denied is not None:
        raise denied
    instances = body.get("instances")
    if not isinstance(instances, list) or not instances:
        raise _error(422, "invalid_request", "'instances' must be a non-empty list of records",
                     bigquery_body=False)
    check_count(instances, caller.max_records)
    options = _options(caller.task, body.get("parameters"), "parameters",
                       caller.predictor.task.kind.vertex_output, False)
    records = parse_records(instances)
    answer = caller.predictor.predict(records, options["model_type"], options["metric"])
    reply = _replier(caller.task, options["output"], answer.fields, False)
    _log_fields.set({"protocol": {"name": "vertex", "instances": len(records)}})
    return {"predictions": [reply(i) for i in range(len(records))],
            "modelVersionId": answer.model.entry.version}, len(records)
