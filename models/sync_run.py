from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, one_of, partial_index, utcnow

if TYPE_CHECKING:
    from .connection import Connection

SYNC_TRIGGERS = ("manual", "webhook", "cli", "reconcile", "initial")
SYNC_STATUSES = (
    "pending",
    "running",
    "success",
    "partial",
    "mfa_required",
    "credentials_required",
    "user_action_required",
    "error",
)
OPEN_SYNC_STATUSES = ("pending", "running")
# A run that ended by fetching what Pluggy had.
FETCHED_SYNC_STATUSES = ("success", "partial")


class SyncRun(Base):
    """One sync of a connection: why it ran, how it ended, and what it changed."""

    __tablename__ = "sync_runs"
    __table_args__ = (
        sa.CheckConstraint(one_of("trigger", SYNC_TRIGGERS), name="trigger"),
        sa.CheckConstraint(one_of("status", SYNC_STATUSES), name="status"),
        # One open run per connection is a database fact, so it holds across processes:
        # a second concurrent insert fails and that caller answers ALREADY_SYNCING.
        partial_index(
            "uq_sync_runs_open_connection_id",
            "connection_id",
            where=one_of("status", OPEN_SYNC_STATUSES),
            unique=True,
        ),
        sa.Index("ix_sync_runs_connection_id_started_at", "connection_id", "started_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    connection_id: Mapped[int] = mapped_column(sa.ForeignKey("connections.id", ondelete="CASCADE"))
    trigger: Mapped[str] = mapped_column(sa.String(16))
    status: Mapped[str] = mapped_column(sa.String(32), default="pending")
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    # When this run asked Pluggy to update the item: counted to stay under Pluggy's PATCH limit.
    item_update_requested_at: Mapped[datetime | None] = mapped_column(index=True)
    # When Pluggy answered that PATCH: a run requested long ago but never accepted never reached Pluggy.
    item_update_accepted_at: Mapped[datetime | None]
    # Pluggy's lastUpdatedAt of the item this run fetched: which of the item's updates it brought in.
    item_last_updated_at: Mapped[datetime | None]
    accounts: Mapped[int] = mapped_column(default=0, server_default="0")
    created: Mapped[int] = mapped_column(default=0, server_default="0")
    updated: Mapped[int] = mapped_column(default=0, server_default="0")
    deleted: Mapped[int] = mapped_column(default=0, server_default="0")
    error_code: Mapped[str | None] = mapped_column(sa.String(64))
    error: Mapped[str | None] = mapped_column(sa.Text)

    connection: Mapped[Connection] = relationship(back_populates="sync_runs")

    def __repr__(self) -> str:
        return f"<SyncRun {self.id} connection={self.connection_id} {self.trigger} {self.status}>"
