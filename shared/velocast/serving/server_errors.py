"""JSON for the errors that the layers below a function produce, so that every error
a client sees is `{"error": {"code", "message", "details"}}`:
- Flask's (functions-framework answers /robots.txt and /favicon.ico with its own 404),
  through functions-framework's documented `errorhandler`;
- gunicorn's (a malformed request line, headers over its limits: 400 and 431), which
  it writes as HTML straight to the socket from `gunicorn.util.write_error`, the one
  function its workers call for that. In the cloud Google's front end refuses most of
  those first; locally and behind a load balancer they reach gunicorn.
"""

from __future__ import annotations

import json
import re

from velocast.serving import transport

_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed",
          408: "request_timeout", 413: "payload_too_large", 431: "headers_too_large"}


def error_json(status: int, message: str) -> str:
    return json.dumps({"error": {"code": _CODES.get(status, "http_error"),
                                 "message": message, "details": []}}, ensure_ascii=False)


def flask_error(exc):
    """errorhandler(HTTPException) -> the JSON error of the same status."""
    status = getattr(exc, "code", None) or 500
    message = getattr(exc, "description", None) or str(exc)
    return error_json(status, message), status, {"Content-Type": "application/json; charset=utf-8"}


def write_error(sock, status_int, reason, mesg):
    """gunicorn.util.write_error's signature: a JSON error straight to the socket, then
    (Connection: close) gunicorn closes it."""
    from gunicorn import util  # noqa: PLC0415

    # The reason goes into the status line: keep it to a safe token.
    reason = re.sub(r"[^A-Za-z0-9 ]", "", str(reason))[:64] or "Error"
    body = error_json(int(status_int), f"{reason}: {mesg}").encode("utf-8")
    head = (f"HTTP/1.1 {int(status_int)} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
    try:
        util.write_nonblock(sock, head + body)
    except OSError:
        pass  # the client is gone: nothing to tell it


def install() -> None:
    """Called once per process when a function module is loaded; also installs the
    head deadline and the close handling of velocast.serving.transport."""
    import functions_framework  # noqa: PLC0415
    from werkzeug.exceptions import HTTPException  # noqa: PLC0415

    functions_framework.errorhandler(HTTPException)(flask_error)
    try:
        from gunicorn import util  # noqa: PLC0415
    except ImportError:  # functions-framework --debug runs Flask's own server
        return
    util.write_error = write_error
    transport.install()
