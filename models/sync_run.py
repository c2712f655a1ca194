from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, one_of, partial_index, utcnow

if TYPE_CHECKING:
    from .connection import Connection


class RunTrigger(StrEnum):
    """What started a sync run."""

    MANUAL = "manual"
    WEBHOOK = "webhook"
    CLI = "cli"
    RECONCILE = "reconcile"  # the missed-webhook sweep
    INITIAL = "initial"  # a new connection's first sync


class RunStatus(StrEnum):
    """Where a sync run is: open (pending, running) or how it ended."""

    PENDING = "pending"  # waiting for Pluggy's update of the item, or for its job
    RUNNING = "running"  # a worker is fetching
    SUCCESS = "success"
    PARTIAL = "partial"  # fetched, but Pluggy's update of some product failed
    MFA_REQUIRED = "mfa_required"
    CREDENTIALS_REQUIRED = "credentials_required"
    USER_ACTION_REQUIRED = "user_action_required"
    ERROR = "error"


SYNC_TRIGGERS = tuple(RunTrigger)
SYNC_STATUSES = tuple(RunStatus)
OPEN_SYNC_STATUSES = (RunStatus.PENDING, RunStatus.RUNNING)
# A run that ended by fetching what Pluggy had.
FETCHED_SYNC_STATUSES = (RunStatus.SUCCESS, RunStatus.PARTIAL)


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
        # The console's overview: the last day's runs by hour and outcome, from the index alone.
        sa.Index("ix_sync_runs_started_at_status", "started_at", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    connection_id: Mapped[int] = mapped_column(sa.ForeignKey("connections.id", ondelete="CASCADE"))
    trigger: Mapped[str] = mapped_column(sa.String(16))
    status: Mapped[str] = mapped_column(sa.String(32), default=RunStatus.PENDING)
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
