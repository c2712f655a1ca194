"""Endpoint secrets and signatures.

A secret is Standard Webhooks' `whsec_<base64 of 24 random bytes>`, shown to the app once, at
creation or rotation. The database holds it sealed only: Fernet (AES-128-CBC with an HMAC-SHA256,
from the `cryptography` package) under a key derived from SECRET_KEY, so neither a copy of the
database nor a backup gives it away. Like the API tokens, sealing uses SECRET_KEY and opening also
tries SECRET_KEY_FALLBACKS, so the service key rotates without losing the endpoints' secrets.

Signing is the `standardwebhooks` package's: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from datetime import datetime

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24
# What the sealing key is derived for: never the same key as the tokens' signatures.
SEAL_INFO = b"pluggy-sync.webhook-endpoint-secret"


class SecretUnreadable(RuntimeError):
    """A sealed secret that none of the service's keys opens (SECRET_KEY changed with no fallback)."""


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def sealer(keys: Sequence[str]) -> MultiFernet:
    """Seals with the first key, opens with any: SECRET_KEY first, then its fallbacks."""
    return MultiFernet([Fernet(fernet_key(key)) for key in keys])


def fernet_key(service_key: str) -> bytes:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=SEAL_INFO).derive(service_key.encode())
    return base64.urlsafe_b64encode(derived)


def seal(secret: str, keys: Sequence[str]) -> str:
    return sealer(keys).encrypt(secret.encode()).decode()


def unseal(sealed: str, keys: Sequence[str]) -> str:
    try:
        return sealer(keys).decrypt(sealed.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable("no configured SECRET_KEY opens this endpoint's secret") from None


def signature_header(secrets_in_use: Sequence[str], message_id: str, moment: datetime, body: str) -> str:
    """`webhook-signature`: one `v1,...` per secret in use, space separated (two during a rotation)."""
    return " ".join(Webhook(secret).sign(message_id, moment, body) for secret in secrets_in_use)
