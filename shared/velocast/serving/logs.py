"""Structured logs: one JSON object per line on stdout, in the shape Cloud Logging
reads (severity, message, httpRequest, trace)."""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
import time

# The trace of the request being handled, so every line logged during it links to it.
current_trace: contextvars.ContextVar[str | None] = contextvars.ContextVar("trace", default=None)

_SEVERITY = {"WARNING": "WARNING", "ERROR": "ERROR", "CRITICAL": "CRITICAL",
             "INFO": "INFO", "DEBUG": "DEBUG"}
_STRUCTURED_FIELDS = ("httpRequest", "records", "latency_ms", "task", "model", "status",
                      "error_code", "protocol")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "severity": _SEVERITY.get(record.levelname, "DEFAULT"),
            "message": record.getMessage(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                    + f".{int(record.msecs):03d}Z",
            "logger": record.name,
        }
        for name in _STRUCTURED_FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        trace = current_trace.get()
        if trace:
            entry["logging.googleapis.com/trace"] = trace
        if record.exc_info:
            entry["stack_trace"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure() -> None:
    """Route velocast's loggers to stdout as JSON lines (idempotent)."""
    logger = logging.getLogger("velocast")
    if any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())
    logger.propagate = False


def trace_from_header(header: str | None, project: str | None) -> str | None:
    """'TRACE_ID/SPAN_ID;o=1' -> 'projects/P/traces/TRACE_ID'."""
    if not header:
        return None
    trace_id = header.split("/", 1)[0].strip()
    if not trace_id or len(trace_id) > 64 or not trace_id.isalnum():
        return None
    return f"projects/{project}/traces/{trace_id}" if project else trace_id
