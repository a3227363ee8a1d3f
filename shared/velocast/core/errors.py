"""velocast's errors: domain errors raised where a problem is found (no HTTP in them),
mapped to HTTP in one table (`HTTP`, `as_http`) and rendered in one place
(`velocast.serving.service.Service.handle`; BigQuery's `{"errorMessage"}` in
velocast.serving.protocols), as functions-framework renders its own exception hierarchy.

Every error answers `{"error": {"code", "message", "details"}}`. Subclasses exist
only where callers need to tell causes apart.
"""

from __future__ import annotations


class Error(Exception):
    """Something a caller did or must wait for, said for people (`message`) and by
    record and field (`details`)."""

    def __init__(self, message: str, details: list | None = None):
        super().__init__(message)
        self.message = message
        self.details = list(details or [])


class NoModelAvailable(Error):
    """Nothing can be served yet (nothing published, or the store is unreachable)."""

    def __init__(self, message: str, retry_after: int = 30):
        super().__init__(message)
        self.retry_after = retry_after


class UnknownModelChoice(Error, ValueError):
    """A model type or metric the registry cannot satisfy; a client error."""

    def __init__(self, field_name: str, message: str):
        super().__init__(message, [{"field": field_name, "reason": message}])
        self.field = field_name


class RecordError(Error, ValueError):
    """One record cannot be featurized (training treats it as a ValueError)."""

    def __init__(self, row: int, field: str, message: str, reason: str):
        super().__init__(f"record {row}: {message}",
                         [{"record": row, "field": field, "reason": reason}])
        self.row = row
        self.reason = message

    def __str__(self) -> str:
        return self.reason


class InvalidRequest(Error):
    """The body's shape is wrong (not a record: `records` missing, empty, not a list)."""


class InvalidRecords(Error, ValueError):
    """Fields of records cannot be read: every one, by record and field, in `details`."""


class ApiError(Error):
    """An error of the HTTP exchange itself (body, media type, route, key, limits),
    raised by the edge with its status."""

    def __init__(self, status: int, code: str, message: str, details: list | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message, details)
        self.status, self.code = status, code
        self.headers = dict(headers or {})

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.code!r}, {self.message!r})"


# The one table from domain errors to HTTP: type -> (status, code, headers).
HTTP: dict[type, tuple] = {
    # 503, not 500: the caller should retry (BigQuery does), a model appears on refresh.
    NoModelAvailable: (503, "no_model", lambda e: {"Retry-After": str(e.retry_after)}),
    UnknownModelChoice: (422, "invalid_request", lambda e: {}),
    RecordError: (422, "invalid_records", lambda e: {}),
    InvalidRecords: (422, "invalid_records", lambda e: {}),
    InvalidRequest: (422, "invalid_request", lambda e: {}),
}


def as_http(exc: Error) -> ApiError:
    """The HTTP form of any velocast error."""
    if isinstance(exc, ApiError):
        return exc
    for kind in type(exc).__mro__:
        if kind in HTTP:
            status, code, headers = HTTP[kind]
            return ApiError(status, code, exc.message, exc.details, headers(exc))
    raise TypeError(f"{type(exc).__name__} has no HTTP mapping in velocast.core.errors.HTTP")
