"""Pluggy's error answer: ``{"code": <status>, "message", "codeDescription"?, "data"?}``."""

from __future__ import annotations

import math
from typing import Any

from .data import error_body

# Pluggy's documented limits per minute (PLUGGY.md "Errors and limits"); other routes share the
# general one.
RATE_LIMIT_WINDOW_S = 60
PATCH_ITEMS_LIMIT = 20
GENERAL_LIMIT = 360
DEFAULT_RETRY_AFTER_S = 60


class PluggyApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        code_description: str | None = None,
        data: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message
        self.code_description = code_description
        self.data = data
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {**error_body(self.status, self.code_description, self.message, self.data), **self.extra}


def bad_request(message: str, code_description: str | None = None, **extra: Any) -> PluggyApiError:
    return PluggyApiError(400, message, code_description, **extra)


def not_found(what: str) -> PluggyApiError:
    return PluggyApiError(404, f"{what.lower()} not found", f"{what.upper()}_NOT_FOUND")


def validation_error(details: list[dict[str, str]]) -> PluggyApiError:
    """Item parameters that break the connector's rules: each detail is ``{code, message, parameter}``
    (the OAS's POST /items examples; the field the live API fills is ``details``)."""
    return bad_request(
        "Connector parameters do not match validation rules", "CONNECTOR_VALIDATION_ERROR", details=details
    )


def rate_limited(message: str, limit: int, retry_after_s: float) -> PluggyApiError:
    return PluggyApiError(429, message, "RATE_LIMIT_EXCEEDED", headers=rate_limit_headers(limit, retry_after_s))


def rate_limit_headers(limit: int, retry_after_s: float) -> dict[str, str]:
    """What comes with Pluggy's 429: ``Retry-After`` and the RateLimit-* headers."""
    seconds = str(max(0, math.ceil(retry_after_s)))
    return {
        "Retry-After": seconds,
        "RateLimit-Limit": str(limit),
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": seconds,
    }


def limit_of(method: str, path: str) -> int:
    """The documented per-minute limit of a route."""
    return PATCH_ITEMS_LIMIT if method == "PATCH" and path.startswith("/items/") else GENERAL_LIMIT


FORBIDDEN = "Missing or invalid authorization token"
