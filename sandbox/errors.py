"""Pluggy's error answer: ``{"code": <status>, "message", "codeDescription"?, "data"?}``."""

from __future__ import annotations

from typing import Any

from .data import error_body


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


FORBIDDEN = "Missing or invalid authorization token"
