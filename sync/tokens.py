"""Signed tokens: the users' API tokens and the token inside the webhook URL given to Pluggy.

Both are itsdangerous signatures with SECRET_KEY, a salt per purpose so one can never pass for the
other. An API token carries the user's token version, so bumping it revokes every older token.
Tokens are always signed with SECRET_KEY and also accepted when signed with one of
SECRET_KEY_FALLBACKS, so the key can be rotated without downtime.
"""

from __future__ import annotations

from collections.abc import Mapping

from itsdangerous import BadSignature, URLSafeSerializer

from models import User

API_TOKEN_SALT = "pluggy-sync.api-token"
WEBHOOK_TOKEN_SALT = "pluggy-sync.webhook-url"


def accepted_keys(config: Mapping) -> list[str]:
    """The keys a token may be signed with: the ones being retired, then SECRET_KEY (itsdangerous
    takes the newest last)."""
    return [*config.get("SECRET_KEY_FALLBACKS", ()), config["SECRET_KEY"]]


def issue_api_token(secret_key: str, user: User) -> str:
    return URLSafeSerializer(secret_key, salt=API_TOKEN_SALT).dumps([user.id, user.token_version])


def read_api_token(keys: list[str], token: str) -> tuple[int, int] | None:
    """(user id, token version) from a genuine token, else None. The caller checks the version."""
    try:
        user_id, version = URLSafeSerializer(keys, salt=API_TOKEN_SALT).loads(token)
    except (BadSignature, TypeError, ValueError):
        return None
    if not isinstance(user_id, int) or not isinstance(version, int):
        return None
    return user_id, version


def issue_webhook_token(secret_key: str) -> str:
    return URLSafeSerializer(secret_key, salt=WEBHOOK_TOKEN_SALT).dumps("pluggy")


def webhook_token_is_valid(keys: list[str], token: str) -> bool:
    try:
        return URLSafeSerializer(keys, salt=WEBHOOK_TOKEN_SALT).loads(token) == "pluggy"
    except BadSignature:
        return False


def webhook_url(public_base_url: str | None, secret_key: str) -> str | None:
    """The URL put into a connect token's webhookUrl; None when the service has no public URL."""
    if not public_base_url:
        return None
    return f"{public_base_url}/webhooks/pluggy/{issue_webhook_token(secret_key)}"


# The clientUserId this service puts on every connect token it creates: the user's id, in digits.
# An item made through such a token names its owner; one made otherwise carries no clientUserId, or
# one of another system's making (not a canonical number).


def client_user_id(user: User) -> str:
    return str(user.id)


def user_id_named_by(client_user_id: object) -> int | None:
    """The id of the user a clientUserId of this service's making names, else None (no value, or a
    value this service never hands out: '007', '1e3', 'ana@example.com')."""
    if not isinstance(client_user_id, str) or not (client_user_id.isascii() and client_user_id.isdigit()):
        return None
    user_id = int(client_user_id)
    return user_id if str(user_id) == client_user_id else None
