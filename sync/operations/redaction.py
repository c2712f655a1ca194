"""What is never stored or shown of a document: the value of any key named like a secret, at any
depth. The webhook intake stores a delivery's headers through `redacted_headers`; an operator page
shows a stored document (a job's payload, a webhook's headers and payload, Pluggy's status detail)
through `redacted` too, which hides what an older row may still hold."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

REDACTED = "[redacted]"
# Names of secrets wherever they appear in a key, in any case (X-Webhook-Secret, api_key,
# webhook-signature, mfaToken, Authorization...).
SECRET_NAME = re.compile(
    r"secret|signature|authori[sz]ation|token|passw(or)?d|cookie|api[-_]?key|credential|mfa|otp|cpf",
    re.IGNORECASE,
)
# Headers in which a proxy may repeat the request's URL (X-Original-URI, X-Forwarded-Uri, Referer):
# a webhook sent to /webhooks/pluggy/<token> carries its secret in that URL.
URL_HEADER = re.compile(r"ur[il]|referr?er", re.IGNORECASE)


def redacted(value: Any, also: frozenset[str] = frozenset()) -> Any:
    """A copy of `value` with what every key named like a secret holds replaced by REDACTED, and
    what the keys named exactly as one of `also` (lower case) hold."""
    if isinstance(value, dict):
        return {key: REDACTED if is_secret(str(key), also) else redacted(item, also) for key, item in value.items()}
    if isinstance(value, list):
        return [redacted(item, also) for item in value]
    return value


def is_secret(key: str, also: frozenset[str] = frozenset()) -> bool:
    return key.lower() in also or SECRET_NAME.search(key) is not None


def redacted_headers(headers: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Request headers (their `.items()`) with the value of each one named like a secret, or one a proxy may have
    copied the request's URL into, replaced by REDACTED."""
    return {name: REDACTED if is_secret_header(name) else value for name, value in headers}


# The webhook intake asks for every delivery, and senders send the same few names: two regular
# expressions per header cost a delivery 16 us, a cached answer 2 us.
@functools.lru_cache(maxsize=1024)
def is_secret_header(name: str) -> bool:
    return is_secret(name) or URL_HEADER.search(name) is not None
