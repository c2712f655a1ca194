"""Exceptions raised by the Pluggy client, one class per way a caller reacts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import requests

from .retry import retry_after_seconds

REDACTED = "[redacted]"


class PluggyError(Exception):
    """Pluggy refused or failed a call. ``status`` is None when Pluggy never answered."""

    def __init__(
        self,
        status: int | None,
        code_description: str | None,
        message: str,
        data: Any = None,
    ) -> None:
        super().__init__(status, code_description, message, data)
        self.status = status
        self.code_description = code_description
        self.message = message
        self.data = data

    def __str__(self) -> str:
        status = self.status if self.status is not None else "(no answer)"
        code = f" {self.code_description}" if self.code_description else ""
        return f"Pluggy {status}{code}: {self.message}"


class PluggyAuthError(PluggyError):
    """401/403: the client credentials or the API key were refused."""


class PluggyNotFound(PluggyError):
    """404: the item, transaction or webhook does not exist (any more)."""


class PluggyRateLimited(PluggyError):
    """429 that was not worth waiting for; ``retry_after`` is in seconds when Pluggy said."""

    def __init__(
        self,
        status: int | None,
        code_description: str | None,
        message: str,
        data: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(status, code_description, message, data)
        # Exception.args drives pickling; keep it in step with this signature.
        self.args = (status, code_description, message, data, retry_after)
        self.retry_after = retry_after


class PluggyUnavailable(PluggyError):
    """5xx, timeout or connection failure: worth retrying later."""


def error_from_response(response: requests.Response, secrets: Iterable[str] = ()) -> PluggyError:
    """The exception for a non-2xx answer, with ``secrets`` blanked out of its message and data."""
    known = [secret for secret in secrets if secret]
    body = _json_object(response)
    message = _redact(str(body.get("message") or response.reason or "no message"), known)
    code_description = body.get("codeDescription")
    data = _redact(body.get("data"), known)
    status = response.status_code
    if status == 429:
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        return PluggyRateLimited(status, code_description, message, data, retry_after)
    return _error_class(status)(status, code_description, message, data)


def _error_class(status: int) -> type[PluggyError]:
    if status in (401, 403):
        return PluggyAuthError
    if status == 404:
        return PluggyNotFound
    if status >= 500:
        return PluggyUnavailable
    return PluggyError


def _json_object(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _redact(value: Any, secrets: list[str]) -> Any:
    """``value`` with every secret replaced, looking inside the JSON structure Pluggy sent."""
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {key: _redact(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [_redact(item, secrets) for item in value]
    return value
