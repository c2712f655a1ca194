"""Outbound events to the app built on this service (Standard Webhooks): the endpoints it registered,
the events written for them, one delivery per (event, endpoint), and the last `sync_status` each
connection was reported with (what a `connection.status_changed` compares against)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, JSONType, one_of, partial_index, utcnow
from .transaction import BigId


class EndpointStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"  # its deliveries kept dying; a manual retry of one enables it again


class DeliveryStatus(StrEnum):
    """Where one event's delivery to one endpoint is."""

    PENDING = "pending"  # its first attempt is queued
    FAILED_RETRYING = "failed_retrying"  # an attempt failed; the next is at next_attempt_at
    DELIVERED = "delivered"  # the endpoint answered 2xx
    DEAD = "dead"  # every attempt of the schedule failed (or its endpoint was disabled)


ENDPOINT_STATUSES = tuple(EndpointStatus)
DELIVERY_STATUSES = tuple(DeliveryStatus)
# Deliveries still to be attempted (a manual retry of one is 409).
OPEN_DELIVERY_STATUSES = (DeliveryStatus.PENDING, DeliveryStatus.FAILED_RETRYING)


class WebhookEndpoint(Base):
    """A URL of the app's that receives events, and its signing secret, sealed: never stored in clear
    (sync/outbound/secrets.py). During a rotation the previous secret still signs until it expires."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (sa.CheckConstraint(one_of("status", ENDPOINT_STATUSES), name="status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(sa.String(2048))
    # The event types it receives; NULL: every type.
    event_types: Mapped[list | None] = mapped_column(JSONType)
    sealed_secret: Mapped[str] = mapped_column(sa.Text)
    sealed_previous_secret: Mapped[str | None] = mapped_column(sa.Text)
    previous_secret_expires_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(sa.String(16), default=EndpointStatus.ACTIVE)
    disabled_at: Mapped[datetime | None]
    last_delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    deliveries: Mapped[list[WebhookDelivery]] = relationship(back_populates="endpoint", passive_deletes=True)

    def __repr__(self) -> str:
        # The URL may carry a token of the app's in its query: only the id and status.
        return f"<WebhookEndpoint {self.id} {self.status}>"


class OutboundEvent(Base):
    """One event, as sent: `payload` is the whole body ({"type", "timestamp", "data"}); `message_id`
    is its `webhook-id`, the same on every attempt and for every endpoint."""

    __tablename__ = "outbound_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    message_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    type: Mapped[str] = mapped_column(sa.String(64))
    payload: Mapped[dict]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"<OutboundEvent {self.id} {self.type}>"


class WebhookDelivery(Base):
    """One event's delivery to one endpoint: its attempts and how the last one went."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        sa.CheckConstraint(one_of("status", DELIVERY_STATUSES), name="status"),
        sa.UniqueConstraint("event_id", "endpoint_id"),
        # An endpoint's deliveries, newest first (the list's order).
        sa.Index("ix_webhook_deliveries_endpoint_id_id", "endpoint_id", "id"),
        # The console's deliveries of one status, newest first; and of one status to one endpoint
        # (an endpoint's dead ones, say), which would otherwise read all of that endpoint's.
        sa.Index("ix_webhook_deliveries_status_id", "status", "id"),
        sa.Index("ix_webhook_deliveries_endpoint_id_status_id", "endpoint_id", "status", "id"),
        partial_index("ix_webhook_deliveries_dead_id", "id", where="status = 'dead'"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("outbound_events.id", ondelete="CASCADE"))
    endpoint_id: Mapped[int] = mapped_column(sa.ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(sa.String(16), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    next_attempt_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    event: Mapped[OutboundEvent] = relationship()
    endpoint: Mapped[WebhookEndpoint] = relationship(back_populates="deliveries")

    def __repr__(self) -> str:
        return f"<WebhookDelivery {self.id} event={self.event_id} endpoint={self.endpoint_id} {self.status}>"


class ReportedStatus(Base):
    """The `sync_status` a connection was last seen with by the outbound events: a change from it is
    a `connection.status_changed`. Kept with a tombstone; goes with the connection."""

    __tablename__ = "reported_statuses"
    # The console's list by sync_status, newest first (sync/operations/connections.py).
    __table_args__ = (sa.Index("ix_reported_statuses_sync_status_connection_id", "sync_status", "connection_id"),)

    connection_id: Mapped[int] = mapped_column(sa.ForeignKey("connections.id", ondelete="CASCADE"), primary_key=True)
    sync_status: Mapped[str] = mapped_column(sa.String(32))

    def __repr__(self) -> str:
        return f"<ReportedStatus {self.connection_id} {self.sync_status}>"
