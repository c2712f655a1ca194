"""The webhooks pages: the inbox (every webhook Pluggy delivered, what became of it and the run it
caused) and the outbound deliveries to the app's endpoints, with a manual retry of one.

Both lists are newest first by id, paged by keyset. Each filter has an index led by its column and
ending with the id (migration 0018), so a window is a range scan of that index whatever the size of
the table; without a filter the primary key serves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import sqlalchemy as sa
from sqlalchemy.orm import defer

from models import (
    Connection,
    DeliveryStatus,
    EventStatus,
    OutboundEvent,
    SyncRun,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from models.database import DbSession

from ..listing import Key, Order, Window, read_window
from ..outbound.endpoints import DELIVERIES, retry_delivery
from ..values import fits_text_column
from .redaction import redacted, redacted_headers

WEBHOOK_EVENTS = Order("console_webhook_events", (WebhookEvent.id,))
# What an item id can be (webhooks/inbox.py keeps 1 to 64 characters); the rest matches nothing.
MAX_ITEM_ID = 64
MAX_EVENT_NAME = 64


# The inbox ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InboxFilter:
    status: EventStatus | None = None
    event: str | None = None
    item_id: str | None = None

    def scope(self) -> dict:
        """What a cursor of the list is bound to."""
        return {"status": self.status, "event": self.event, "item": self.item_id}


@dataclass(frozen=True)
class InboxRow:
    event: WebhookEvent
    connection_id: int | None  # the live connection of the event's item
    run_connection_id: int | None  # the live connection of the run the event caused


@dataclass(frozen=True)
class InboxPage:
    rows: list[InboxRow]
    next_key: Key | None


def inbox_page(session: DbSession, filters: InboxFilter, window: Window) -> InboxPage:
    """A window of the inbox, newest first, each event with the connections its links go to."""
    statement = sa.select(WebhookEvent).options(defer(WebhookEvent.payload), defer(WebhookEvent.headers))
    if filters.status is not None:
        statement = statement.where(WebhookEvent.status == filters.status)
    if filters.event is not None:
        statement = statement.where(WebhookEvent.event == filters.event)
    if filters.item_id is not None:
        statement = statement.where(WebhookEvent.item_id == filters.item_id)
    found = read_window(session, statement, WEBHOOK_EVENTS, window)
    events = [row[0] for row in found.rows]
    by_item = live_connections_of_items(session, {e.item_id for e in events if e.item_id})
    by_run = live_connections_of_runs(session, {e.sync_run_id for e in events if e.sync_run_id})
    rows = [InboxRow(e, by_item.get(e.item_id or ""), by_run.get(e.sync_run_id or 0)) for e in events]
    return InboxPage(rows, found.next_key)


def live_connections_of_items(session: DbSession, item_ids: set[str]) -> dict[str, int]:
    if not item_ids:
        return {}
    found = session.execute(
        sa.select(Connection.item_id, Connection.id).where(
            Connection.item_id.in_(item_ids), Connection.deleted_at.is_(None)
        )
    )
    return dict(found.all())


def live_connections_of_runs(session: DbSession, run_ids: set[int]) -> dict[int, int]:
    if not run_ids:
        return {}
    found = session.execute(
        sa.select(SyncRun.id, SyncRun.connection_id)
        .join(Connection, SyncRun.connection_id == Connection.id)
        .where(SyncRun.id.in_(run_ids), Connection.deleted_at.is_(None))
    )
    return dict(found.all())


@dataclass(frozen=True)
class EventRecord:
    """One inbox event as its page shows it: headers and payload with any secret redacted."""

    event: WebhookEvent
    headers: dict[str, Any]
    payload: Any
    connection_id: int | None
    run_connection_id: int | None


def event_record(session: DbSession, event_id: int) -> EventRecord | None:
    event = session.get(WebhookEvent, event_id)
    if event is None:
        return None
    connection_id = live_connections_of_items(session, {event.item_id} if event.item_id else set())
    run_connection_id = live_connections_of_runs(session, {event.sync_run_id} if event.sync_run_id else set())
    return EventRecord(
        event=event,
        headers=redacted_headers((event.headers or {}).items()),
        payload=redacted(event.payload),
        connection_id=connection_id.get(event.item_id or ""),
        run_connection_id=run_connection_id.get(event.sync_run_id or 0),
    )


def plausible_item_id(value: str) -> bool:
    return fits_text_column(value, MAX_ITEM_ID)


def plausible_event_name(value: str) -> bool:
    return fits_text_column(value, MAX_EVENT_NAME)


# Outbound deliveries ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryFilter:
    status: DeliveryStatus | None = None
    endpoint_id: int | None = None

    def scope(self) -> dict:
        return {"status": self.status, "endpoint": self.endpoint_id}


@dataclass(frozen=True)
class DeliveryRow:
    delivery: WebhookDelivery
    event_type: str
    endpoint_url: str  # without query, fragment or credentials

    @property
    def retryable(self) -> bool:
        return self.delivery.status in RETRYABLE


@dataclass(frozen=True)
class DeliveriesPage:
    rows: list[DeliveryRow]
    next_key: Key | None


# The statuses sync/outbound/endpoints.retry_delivery accepts.
RETRYABLE = (DeliveryStatus.FAILED_RETRYING, DeliveryStatus.DEAD)


def deliveries_page(session: DbSession, filters: DeliveryFilter, window: Window) -> DeliveriesPage:
    """A window of the deliveries, newest first, each with its event's type and its endpoint's URL
    (only those columns of the two: never an event's payload nor an endpoint's sealed secrets)."""
    statement = (
        sa.select(WebhookDelivery, OutboundEvent.type, WebhookEndpoint.url)
        .join(OutboundEvent, WebhookDelivery.event_id == OutboundEvent.id)
        .join(WebhookEndpoint, WebhookDelivery.endpoint_id == WebhookEndpoint.id)
    )
    if filters.status is not None:
        statement = statement.where(WebhookDelivery.status == filters.status)
    if filters.endpoint_id is not None:
        statement = statement.where(WebhookDelivery.endpoint_id == filters.endpoint_id)
    found = read_window(session, statement, DELIVERIES, window)
    rows = [DeliveryRow(delivery, event_type, shown_url(url)) for delivery, event_type, url in found.rows]
    return DeliveriesPage(rows, found.next_key)


def shown_url(url: str) -> str:
    """An endpoint's URL without what may carry a credential of the app's: user and password, query
    and fragment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "(unreadable URL)"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class DeliveryNotFound(LookupError):
    pass


def retry(session: DbSession, delivery_id: int) -> WebhookDelivery:
    """Queue a failed or dead delivery again (sync/outbound/endpoints.retry_delivery, which raises
    DeliveryNotRetryable for a pending or delivered one). DeliveryNotFound for an unknown id."""
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None:
        raise DeliveryNotFound(delivery_id)
    retry_delivery(session, delivery)
    return delivery
