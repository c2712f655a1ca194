"""Authentication: a user's `Authorization: Bearer <token>` (a token from `flask users create` or
the app API) on /api/banking, and the app key (`Authorization: Bearer <APP_API_KEY>`) on /api/app."""

from __future__ import annotations

import hmac

from flask import current_app, g, request
from werkzeug.exceptions import NotFound

from models import User, db
from sync.tokens import accepted_keys, read_api_token
from web.errors import ApiError


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": 'Bearer realm="pluggy-sync"'})


def authenticate() -> None:
    """Set g.user from the bearer token, or answer 401. A token is refused once its user's token
    version has moved on (`flask users rotate-token`)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("Send the API token as 'Authorization: Bearer <token>'.")
    claims = read_api_token(accepted_keys(current_app.config), token.strip())
    user = db.session.get(User, claims[0]) if claims else None
    if claims is None or user is None or user.token_version != claims[1]:
        raise unauthorized("The API token is not valid.")
    g.user = user


def authenticate_app() -> None:
    """The app key, or answer 401; without APP_API_KEY the app API does not exist (404, the answer
    to any unknown path). The key given is compared with every configured one in constant time, so
    the time taken tells neither how much of it matched nor which key did."""
    keys = current_app.config.get("APP_API_KEYS") or ()
    if not keys:
        raise NotFound()
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    given_bytes = given.strip().encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given_bytes, key.encode())
    if scheme.lower() != "bearer" or not given_bytes or not matched:
        raise ApiError(
            401,
            "unauthorized",
            "Send the app key as 'Authorization: Bearer <app key>'.",
            headers={"WWW-Authenticate": 'Bearer realm="pluggy-sync-app"'},
        )
