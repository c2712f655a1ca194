from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, one_of, utcnow
from .transaction import BigId


class EventStatus(StrEnum):
    """A stored webhook event's processing state."""

    PENDING = "pending"
    PROCESSED = "processed"
    IGNORED = "ignored"  # nothing to do (an unknown item, an event not handled); `last_error` says why
    FAILED = "failed"  # its job gave up; `flask jobs retry` puts it back


WEBHOOK_EVENT_STATUSES = tuple(EventStatus)


class WebhookEvent(Base):
    """The inbox: every webhook Pluggy delivered, stored before it is answered."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        sa.CheckConstraint(one_of("status", WEBHOOK_EVENT_STATUSES), name="status"),
        # The console's inbox, newest first, filtered by status, event type (`event`) or item; the item
        # one also serves the processing of an item's pending events (it replaced an index on item_id).
        sa.Index("ix_webhook_events_status_id", "status", "id"),
        sa.Index("ix_webhook_events_type_id", "event", "id"),
        sa.Index("ix_webhook_events_item_id_id", "item_id", "id"),
        # The console's overview: webhooks received per minute, and the lag of those processed, in
        # the last hour.
        sa.Index("ix_webhook_events_received_at", "received_at"),
        sa.Index("ix_webhook_events_processed_at", "processed_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[str] = mapped_column(sa.String(128), unique=True)  # Pluggy's retries repeat it
    event: Mapped[str] = mapped_column(sa.String(64))
    item_id: Mapped[str | None] = mapped_column(sa.String(64))
    payload: Mapped[dict]
    headers: Mapped[dict | None]  # secrets redacted before storing
    status: Mapped[str] = mapped_column(sa.String(16), default=EventStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    sync_run_id: Mapped[int | None] = mapped_column(sa.ForeignKey("sync_runs.id", ondelete="SET NULL"), index=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"<WebhookEvent {self.id} {self.event} {self.event_id} {self.status}>"
