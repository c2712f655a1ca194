"""What an operator page never shows of a stored document (a job's payload, a webhook's headers and
payload, Pluggy's status detail): the value of any key named like a secret, at any depth. Stored
documents should hold none; this hides one that ever does rather than showing it."""

from __future__ import annotations

import re
from typing import Any

REDACTED = "[redacted]"
# Names of secrets wherever they appear in a key, in any case (X-Webhook-Secret, api_key,
# webhook-signature, mfaToken, Authorization...).
SECRET_NAME = re.compile(
    r"secret|signature|authori[sz]ation|token|passw(or)?d|cookie|api[-_]?key|credential|mfa|otp|cpf",
    re.IGNORECASE,
)


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
