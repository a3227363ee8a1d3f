"""A function's settings, from its environment (Terraform's `functions` map sets them
in the cloud; README "Configuration" lists them)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    model_store: str
    refresh_seconds: float
    max_records: int
    max_body_bytes: int
    project: str | None
    onnx_threads: int
    body_timeout_seconds: float

    @classmethod
    def from_env(cls, environ=os.environ) -> "Settings":
        def number(name, default, kind=int, minimum=0):
            raw = environ.get(name, "")
            try:
                value = kind(raw) if raw.strip() else default
            except ValueError:
                raise ValueError(f"{name}={raw!r} is not a number") from None
            if value < minimum:
                raise ValueError(f"{name} must be at least {minimum}")
            return value

        return cls(
            model_store=environ.get("MODEL_STORE", "models"),
            refresh_seconds=number("REFRESH_SECONDS", 300.0, float),
            max_records=number("MAX_RECORDS", 10_000, int, 1),
            max_body_bytes=number("MAX_BODY_BYTES", 10 * 1024 * 1024, int, 1),
            project=environ.get("GCP_PROJECT") or environ.get("GOOGLE_CLOUD_PROJECT"),
            onnx_threads=number("ONNX_THREADS", 1, int, 1),
            body_timeout_seconds=number("BODY_TIMEOUT_SECONDS", 10.0, float),
        )
