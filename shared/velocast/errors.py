"""The one error type of the HTTP contract, raised where a problem is found and
rendered in one place (`velocast.service.Service.handle`), as functions-framework
renders its own exception hierarchy.

Every error answers `{"error": {"code", "message", "details"}}` with `status` and
`headers`. Subclasses exist only where callers need to tell causes apart.
"""

from __future__ import annotations


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: list | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details = list(details or [])
        self.headers = dict(headers or {})

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.code!r}, {self.message!r})"


class NoModelAvailable(ApiError):
    """Nothing can be served yet (nothing published, or the store is unreachable)."""

    def __init__(self, message: str, retry_after: int = 30):
        super().__init__(503, "no_model", message, headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after


class UnknownModelChoice(ApiError, ValueError):
    """A model type or metric the registry cannot satisfy; a client error."""

    def __init__(self, field_name: str, message: str):
        super().__init__(422, "invalid_request", message, [{"field": field_name, "reason": message}])
        self.field = field_name


class RecordError(ApiError, ValueError):
    """One record cannot be featurized (training treats it as a ValueError)."""

    def __init__(self, row: int, field: str, message: str, reason: str):
        super().__init__(422, "invalid_records", f"record {row}: {message}",
                         [{"record": row, "field": field, "reason": reason}])
        self.row = row
        self.reason = message

    def __str__(self) -> str:
        return self.reason
