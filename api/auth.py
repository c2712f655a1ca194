"""User authentication: `Authorization: Bearer <token>` with a token from `flask users create`."""

from __future__ import annotations

from flask import current_app, g, request

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
