"""What the functions change in gunicorn, the HTTP server functions-framework runs them
on (`velocast.serving.server_errors.install` calls `install` when a function module loads).

gunicorn 27 has no setting for either (its settings: docs.gunicorn.org/en/stable/settings.html;
`timeout` is the worker heartbeat, `keepalive` the idle time between requests):
- A deadline on a request's head. Its gthread worker reads the head in a pool thread with
  no timeout once the first byte has come, so 8 clients sending `POST /predict
  HTTP/1.1\\r\\nHost: x\\r\\n` and nothing more held every thread for as long as they
  liked (issue 25, N5). The head now gets HEAD_SECONDS from its first byte (the body
  watchdog of velocast.serving.body shuts the read side down), then a 408 and the close.
  gunicorn's wait for that first byte (DEFAULT_WORKER_DATA_TIMEOUT, 5 s, in a pool thread
  too) is cut to the same bound.
- `Connection: close` from the application. gunicorn drops it as hop-by-hop and keeps
  the connection, so an answer that left its body unread (404, 405, 415, 413) kept the
  connection alive with the body's bytes in it; the body watchdog then cut that
  connection under the next request (issue 25, N6: 16 of 11,973 requests lost in a load
  burst, 9 of them valid). The header now makes gunicorn announce and do the close.

Both are wrapped around gunicorn's own methods, checked by tests/service/test_transport_*.py
against the gunicorn that functions-framework installs.
"""

from __future__ import annotations

import logging

from velocast.serving.body import GRACE_SECONDS, WATCHDOG

log = logging.getLogger("velocast.transport")

# A head is a few hundred bytes (8 KiB at most in practice): at the body's minimal rate
# (velocast.serving.body.MIN_BYTES_PER_SECOND) it needs 0.08 s, so it gets the body's grace.
HEAD_SECONDS = GRACE_SECONDS
# How long a new connection may hold a pool thread before its first byte; after it the
# connection waits on gunicorn's poller (no thread) for up to its keepalive (2 s).
FIRST_BYTE_SECONDS = 1.0

_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    try:
        from gunicorn.http import parser, wsgi  # noqa: PLC0415
    except ImportError:  # functions-framework --debug runs Flask's own server
        return
    from velocast.serving.server_errors import write_error  # noqa: PLC0415

    head = parser.Parser.__next__

    def next_request(self):
        sock = getattr(self.unreader, "sock", None)
        if sock is None:
            return head(self)
        ticket = WATCHDOG.arm(sock, HEAD_SECONDS)
        try:
            request = head(self)
        except Exception:
            if WATCHDOG.disarm(ticket):
                # The read side is shut: the 408 still goes out before the close.
                write_error(sock, 408, "Request Timeout",
                            f"the request head did not arrive within {HEAD_SECONDS:g} s")
                raise StopIteration() from None
            raise
        WATCHDOG.disarm(ticket)
        return request

    parser.Parser.__next__ = next_request
    parser.Parser.next = next_request

    process_headers = wsgi.Response.process_headers

    def honour_close(self, headers):
        headers = list(headers)
        if any(name.lower() == "connection" and "close" in value.lower()
               for name, value in headers):
            self.force_close()
        return process_headers(self, headers)

    wsgi.Response.process_headers = honour_close

    try:
        from gunicorn.workers import gthread  # noqa: PLC0415
    except ImportError:
        pass
    else:
        waited = getattr(gthread, "DEFAULT_WORKER_DATA_TIMEOUT", None)
        if waited is not None:  # gunicorn >= 24; before, a thread waited with no bound
            gthread.DEFAULT_WORKER_DATA_TIMEOUT = min(waited, FIRST_BYTE_SECONDS)
    _installed = True
