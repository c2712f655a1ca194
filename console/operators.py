"""Who may use the console, and their signed session cookie.

An operator signs in with OPERATOR_PASSWORD or one of the app keys. The session (Flask's cookie,
signed with SECRET_KEY by itsdangerous, HttpOnly, SameSite=Strict, path /console) holds a random
session id, when it began, and a fingerprint of the secret used: changing that secret ends every
session signed in with it. The session id names the operator in the logs of what they did.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from flask import Flask, current_app, session

from observability.logs import event

log = logging.getLogger("console")

SESSION_LIFETIME = timedelta(hours=12)
COOKIE_NAME = "pluggy_sync_console"


def operator_secrets(config: Mapping[str, Any]) -> tuple[str, ...]:
    password = config.get("OPERATOR_PASSWORD")
    return ((password,) if password else ()) + tuple(config.get("APP_API_KEYS") or ())


def configure_session(app: Flask) -> None:
    app.config.update(
        SESSION_COOKIE_NAME=COOKIE_NAME,
        SESSION_COOKIE_PATH="/console",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=(app.config.get("PUBLIC_BASE_URL") or "").startswith("https://"),
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
        # Flask-WTF checks the token only where the console asks (its guard), never on the APIs,
        # and a form stays valid as long as the session that rendered it.
        WTF_CSRF_CHECK_DEFAULT=False,
        WTF_CSRF_TIME_LIMIT=None,
    )


def fingerprint(secret: str) -> str:
    """Names a secret in the cookie without revealing it (keyed with SECRET_KEY)."""
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, b"console-operator:" + secret.encode(), hashlib.sha256).hexdigest()[:32]


def matching_secret(given: str) -> str | None:
    """The configured secret `given` is, compared with every one in constant time."""
    found = None
    for secret in operator_secrets(current_app.config):
        if hmac.compare_digest(given.encode(), secret.encode()):
            found = secret
    return found


def sign_in(secret: str) -> str:
    session.clear()  # a new session id: nothing from before the sign-in is carried over
    session_id = secrets.token_hex(8)
    session.update(operator=session_id, since=int(time.time()), key=fingerprint(secret))
    event(log, "console sign-in", operator_session=session_id)
    return session_id


def sign_out() -> None:
    if operator := current_operator():
        event(log, "console sign-out", operator_session=operator)
    session.clear()


def current_operator() -> str | None:
    """The signed-in operator's session id, if the session is still good: young enough, and made
    with a secret still configured."""
    operator, since, key = session.get("operator"), session.get("since"), session.get("key")
    if not (isinstance(operator, str) and isinstance(since, int) and isinstance(key, str)):
        return None
    if time.time() - since > SESSION_LIFETIME.total_seconds():
        return None
    if not any(hmac.compare_digest(key, fingerprint(s)) for s in operator_secrets(current_app.config)):
        return None
    return operator


def log_action(operator: str, action: str, **fields: Any) -> None:
    """Every change an operator makes is logged with their session id."""
    event(log, "console action", action=action, operator_session=operator, **fields)
