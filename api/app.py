"""/api/app: the server-to-server API of the app built on this service, authenticated by the app
key (`Authorization: Bearer <APP_API_KEY>`): provisioning users, their API tokens, and erasing a
user with everything stored about them; the webhook endpoints its events go to, and their
deliveries. Without APP_API_KEY it does not exist (every path 404).

Views parse, look up, call one service (sync/users.py, shared with `flask users ...`;
sync/outbound/endpoints.py) and render.
"""

from __future__ import annotations

from flask import Blueprint, current_app

from config import ConfigError
from models import User, WebhookDelivery, WebhookEndpoint, db
from pluggy_client import PluggyError
from sync import listing, users
from sync.outbound import endpoints
from sync.outbound.events import EventType
from sync.outbound.guard import UnsafeUrl
from sync.runtime import pluggy_client, sync_settings
from web.errors import ApiError

from . import feed, paging, schemas
from .auth import authenticate_app
from .banking import not_configured, pluggy_error
from .serializers import app_user_json, webhook_delivery_json, webhook_endpoint_json
from .validation import parse_body, parse_query, refuse_unread_query, takes_query

bp = Blueprint("app_api", __name__, url_prefix="/api/app")
bp.before_request(authenticate_app)
bp.before_request(refuse_unread_query)
bp.register_error_handler(ConfigError, not_configured)
bp.register_error_handler(PluggyError, pluggy_error)


def user_or_404(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        raise ApiError(404, "user_not_found", "No such user.")
    return user


def render_user(user: User) -> dict:
    connections = users.user_connections(db.session, user)
    return app_user_json(user, connections, listing.open_runs(db.session, connections))


def with_token(user: User) -> dict:
    return {"user": render_user(user), "token": users.api_token(current_app.config["SECRET_KEY"], user)}


@bp.post("/users/")
def create_user():
    body = parse_body(schemas.CreateAppUser)
    user, created = users.ensure_user(db.session, body.email)
    return with_token(user), 201 if created else 200


@bp.get("/users/<id:user_id>/")
def get_user(user_id: int):
    return render_user(user_or_404(user_id))


@bp.post("/users/<id:user_id>/token/")
def rotate_token(user_id: int):
    user = user_or_404(user_id)
    users.rotate_token(db.session, user)
    return with_token(user)


@bp.delete("/users/<id:user_id>/")
def erase_user(user_id: int):
    users.erase_user(db.session, user_or_404(user_id), pluggy_client)
    return "", 204


@bp.get("/changes/")
@takes_query
def app_changes():
    """What changed in every user's data since the cursor (sync/changes.py)."""
    return feed.changes_page({"app": True}, personal=False)


# Webhook endpoints and their deliveries (outbound events) -------------------------------------


def endpoint_or_404(endpoint_id: int) -> WebhookEndpoint:
    endpoint = db.session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        raise ApiError(404, "webhook_endpoint_not_found", "No such webhook endpoint.")
    return endpoint


def with_secret(endpoint: WebhookEndpoint, secret: str) -> dict:
    return {"endpoint": webhook_endpoint_json(endpoint), "secret": secret}


@bp.post("/webhook_endpoints/")
def create_webhook_endpoint():
    body = parse_body(schemas.CreateWebhookEndpoint)
    types = None if body.events is None else [EventType(name) for name in body.events]
    try:
        endpoint, secret = endpoints.create_endpoint(db.session, body.url, types, sync_settings())
    except UnsafeUrl as refused:
        raise ApiError(400, "invalid_url", f"The URL cannot receive events: {refused}.") from None
    return with_secret(endpoint, secret), 201


@bp.get("/webhook_endpoints/")
@takes_query
def list_webhook_endpoints():
    query = parse_query(schemas.KeysetQuery)
    scope = paging.scope_of(query)
    page = endpoints.endpoints_page(
        db.session, paging.cursor_window(query.cursor, query.page_size, endpoints.ENDPOINTS, scope)
    )
    return {
        "webhook_endpoints": [webhook_endpoint_json(row[0]) for row in page.rows],
        "next_cursor": paging.next_cursor(page, endpoints.ENDPOINTS, scope),
    }


@bp.get("/webhook_endpoints/<id:endpoint_id>/")
def get_webhook_endpoint(endpoint_id: int):
    return webhook_endpoint_json(endpoint_or_404(endpoint_id))


@bp.delete("/webhook_endpoints/<id:endpoint_id>/")
def delete_webhook_endpoint(endpoint_id: int):
    endpoints.delete_endpoint(db.session, endpoint_or_404(endpoint_id))
    return "", 204


@bp.post("/webhook_endpoints/<id:endpoint_id>/rotate_secret/")
def rotate_webhook_secret(endpoint_id: int):
    endpoint = endpoint_or_404(endpoint_id)
    return with_secret(endpoint, endpoints.rotate_secret(db.session, endpoint, sync_settings()))


@bp.get("/webhook_deliveries/")
@takes_query
def list_webhook_deliveries():
    query = parse_query(schemas.DeliveriesQuery)
    endpoint = endpoint_or_404(query.endpoint_id) if query.endpoint_id is not None else None
    scope = paging.scope_of(query)
    page = endpoints.deliveries_page(
        db.session, endpoint, paging.cursor_window(query.cursor, query.page_size, endpoints.DELIVERIES, scope)
    )
    return {
        "webhook_deliveries": [webhook_delivery_json(row[0]) for row in page.rows],
        "next_cursor": paging.next_cursor(page, endpoints.DELIVERIES, scope),
    }


@bp.post("/webhook_deliveries/<id:delivery_id>/retry/")
def retry_webhook_delivery(delivery_id: int):
    delivery = db.session.get(WebhookDelivery, delivery_id)
    if delivery is None:
        raise ApiError(404, "webhook_delivery_not_found", "No such webhook delivery.")
    try:
        endpoints.retry_delivery(db.session, delivery)
    except endpoints.DeliveryNotRetryable as refused:
        raise ApiError(
            409, "delivery_not_retryable", f"The delivery is {refused.status}: only a failed or dead one is retried."
        ) from None
    return webhook_delivery_json(delivery), 202
