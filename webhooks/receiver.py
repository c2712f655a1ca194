"""POST /webhooks/pluggy[/<token>]: verify, store, acknowledge. Fetching happens in the worker."""

from __future__ import annotations

import hmac
import json
import logging

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import RequestEntityTooLarge

from models import db
from models.base import json_storable
from observability import logs
from observability.metrics import WEBHOOKS_RECEIVED
from sync.events import event_label
from sync.tokens import accepted_keys, webhook_token_is_valid
from web.errors import ApiError, request_body

from .inbox import store

log = logging.getLogger(__name__)
bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")

MAX_BODY = 64 * 1024


def secret_header_matches() -> bool:
    """X-Webhook-Secret equals one of the configured secrets, compared in constant time, every one
    of them compared so the time taken does not tell which matched."""
    given = request.headers.get("X-Webhook-Secret", "").encode()
    matched = False
    for secret in current_app.config["PLUGGY_WEBHOOK_SECRETS"]:
        matched |= hmac.compare_digest(given, secret.encode())
    return matched and bool(given)


def url_token_matches(token: str) -> bool:
    return webhook_token_is_valid(accepted_keys(current_app.config), token)


def parse_event() -> tuple[bytes, dict]:
    request.max_content_length = MAX_BODY  # a larger body is refused (413) before it is read
    raw = request_body()
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError):
        raise ApiError(400, "invalid_json", "The body is not valid JSON.") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("event"), str) or not payload["event"]:
        raise ApiError(400, "invalid_event", "The body must be a JSON object with an 'event'.")
    if not json_storable(payload):
        # Refused now, not answered 503 when the insert fails: Pluggy would retry it forever.
        raise ApiError(400, "invalid_json", "The body holds values no JSON column can store.")
    return raw, payload


def accept(verified: bool):
    if not verified:
        received(None, "unauthorized")
        raise ApiError(401, "unauthorized", "Unknown sender.")
    try:
        raw, payload = parse_event()
    except (ApiError, RequestEntityTooLarge):
        received(None, "invalid")
        raise
    try:
        new, event_id = store(db.session, raw, payload, request.headers)
    except SQLAlchemyError as exc:
        db.session.rollback()
        received(payload["event"], "unavailable")
        log.error("webhook not stored, Pluggy will retry: %s", type(exc).__name__)
        raise ApiError(503, "unavailable", "The event could not be stored; try again.") from None
    outcome = "accepted" if new else "duplicate"
    received(payload["event"], outcome)
    logs.bind(event_id=event_id, event=payload["event"][:64])
    return jsonify(status=outcome, event_id=event_id)


def received(event: str | None, outcome: str) -> None:
    WEBHOOKS_RECEIVED.labels(event_label(event), outcome).inc()


@bp.post("/pluggy")
def receive():
    """Deliveries of the subscriptions made by `flask webhooks register`, with the secret header."""
    return accept(secret_header_matches())


@bp.post("/pluggy/<token>")
def receive_with_token(token: str):
    """Deliveries to the signed webhookUrl given in connect tokens (Pluggy sends no header there)."""
    return accept(url_token_matches(token))
