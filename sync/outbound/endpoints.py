"""The app's webhook endpoints: registering one (its URL checked, its secret made and sealed),
listing, rotating the secret, deleting; the deliveries' list and a manual retry of one."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import sqlalchemy as sa

from config import Settings
from models import DeliveryStatus, EndpointStatus, WebhookDelivery, WebhookEndpoint
from models.base import utcnow
from models.database import DbSession

from ..listing import Order, Slice, Window, read_window
from ..scheduling import queue_delivery
from .delivery import service_keys
from .events import EventType
from .guard import check_url
from .signing import new_secret, seal

# How long a replaced secret still signs deliveries, beside the new one.
ROTATION_GRACE = timedelta(hours=24)

ENDPOINTS = Order("webhook_endpoints", (WebhookEndpoint.id,), descending=False)
DELIVERIES = Order("webhook_deliveries", (WebhookDelivery.id,))


class DeliveryNotRetryable(Exception):
    """A delivery still to be attempted, or already delivered: nothing to retry."""

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


def create_endpoint(
    session: DbSession, url: str, event_types: Sequence[EventType] | None, settings: Settings
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its secret, in clear for the caller to show once. Raises UnsafeUrl."""
    check_url(url, allow_private=settings.allow_private_webhook_urls)
    secret = new_secret()
    types = None if event_types is None else sorted({str(event_type) for event_type in event_types})
    endpoint = WebhookEndpoint(url=url, event_types=types, sealed_secret=seal(secret, service_keys(settings)))
    session.add(endpoint)
    session.commit()
    return endpoint, secret


def rotate_secret(session: DbSession, endpoint: WebhookEndpoint, settings: Settings) -> str:
    """A new secret; the one it replaces keeps signing for ROTATION_GRACE, so the app can switch
    without losing a delivery. A rotation during the grace of another drops the oldest."""
    secret = new_secret()
    endpoint.sealed_previous_secret = endpoint.sealed_secret
    endpoint.previous_secret_expires_at = utcnow() + ROTATION_GRACE
    endpoint.sealed_secret = seal(secret, service_keys(settings))
    session.commit()
    return secret


def delete_endpoint(session: DbSession, endpoint: WebhookEndpoint) -> None:
    """The endpoint and its deliveries go; their queued jobs then find nothing to send."""
    session.delete(endpoint)
    session.commit()


def rotation_ends_at(endpoint: WebhookEndpoint):
    expires = endpoint.previous_secret_expires_at
    return expires if expires is not None and expires > utcnow() else None


def endpoints_page(session: DbSession, window: Window) -> Slice:
    return read_window(session, sa.select(WebhookEndpoint), ENDPOINTS, window)


def deliveries_page(session: DbSession, endpoint: WebhookEndpoint | None, window: Window) -> Slice:
    """Deliveries newest first, of one endpoint or of all."""
    statement = sa.select(WebhookDelivery)
    if endpoint is not None:
        statement = statement.where(WebhookDelivery.endpoint_id == endpoint.id)
    return read_window(session, statement, DELIVERIES, window)


def retry_delivery(session: DbSession, delivery: WebhookDelivery) -> None:
    """Attempt a failed or dead delivery again now. A dead one gets one more attempt (its schedule is
    spent); a disabled endpoint is enabled again by it. DeliveryNotRetryable for a delivery that is
    pending or delivered."""
    if delivery.status in (DeliveryStatus.DELIVERED, DeliveryStatus.PENDING):
        raise DeliveryNotRetryable(delivery.status)
    delivery.status = DeliveryStatus.PENDING
    delivery.next_attempt_at = None
    endpoint = delivery.endpoint
    if endpoint.status == EndpointStatus.DISABLED:
        endpoint.status = EndpointStatus.ACTIVE
        endpoint.disabled_at = None
    queue_delivery(session, delivery.id)
    session.commit()
