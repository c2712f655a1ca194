"""urllib3 retry policy for calls to Pluggy."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Collection
from types import TracebackType
from typing import Any

from urllib3.connectionpool import ConnectionPool
from urllib3.exceptions import MaxRetryError, ResponseError
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})
RATE_LIMITED = 429
DEFAULT_MAX_WAIT_SECONDS = 5


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or HTTP-date); None if unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # isdigit() alone takes "²", which float() refuses
        return float(value)
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        return None
    return max(0.0, email.utils.mktime_tz(parsed) - time.time())


class PluggyRetry(Retry):
    """Retry 5xx and read errors on safe methods only; a 429 on any method, but only a short one.

    ``retry_after_max`` is the longest wait accepted: a 429 asking for more is handed back at once
    (the caller raises PluggyRateLimited instead of blocking a worker), and a 503's Retry-After is
    capped to it.
    """

    def __init__(
        self,
        total: bool | int | None = 3,
        *,
        allowed_methods: Collection[str] | None = SAFE_METHODS,
        status_forcelist: Collection[int] | None = RETRYABLE_STATUSES,
        backoff_factor: float = 0.5,
        backoff_jitter: float = 0.5,
        raise_on_status: bool = False,
        retry_after_max: int = DEFAULT_MAX_WAIT_SECONDS,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            total,
            allowed_methods=allowed_methods,
            status_forcelist=status_forcelist,
            backoff_factor=backoff_factor,
            backoff_jitter=backoff_jitter,
            raise_on_status=raise_on_status,
            retry_after_max=retry_after_max,
            **kwargs,
        )

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        if status_code == RATE_LIMITED:
            # Pluggy refused the request before acting on it, so repeating even a PATCH is safe.
            return has_retry_after and self.respect_retry_after_header
        return super().is_retry(method, status_code, has_retry_after)

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> PluggyRetry:
        if self._is_too_long_a_rate_limit(response):
            # With raise_on_status=False urllib3 answers MaxRetryError by returning this 429 as is.
            reason = ResponseError("Retry-After too long to wait for")
            raise MaxRetryError(_pool, url, reason)  # type: ignore[arg-type]
        return super().increment(method, url, response, error, _pool, _stacktrace)

    def _is_too_long_a_rate_limit(self, response: BaseHTTPResponse | None) -> bool:
        if response is None or response.status != RATE_LIMITED:
            return False
        # Parsed here because urllib3's own parser caps the value at retry_after_max.
        seconds = retry_after_seconds(response.headers.get("Retry-After"))
        return seconds is None or seconds > self.retry_after_max
