from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, JSONType, one_of, partial_index, utcnow

if TYPE_CHECKING:
    from .account import Account
    from .sync_run import SyncRun
    from .user import User


class DeletedReason(StrEnum):
    """Why a connection became a tombstone (its `deleted_at` says when)."""

    ITEM_DELETED = "item_deleted"  # Pluggy's item/deleted webhook: access revoked at the bank or at Pluggy
    ITEM_NOT_FOUND = "item_not_found"  # Pluggy answered 404 for the item (the sweep, or a webhook's read)
    USER_REQUEST = "user_request"  # DELETE /api/banking/connections/<id>/


DELETED_REASONS = tuple(DeletedReason)


class Connection(Base):
    """One Pluggy item (a user's link to one institution), mirroring the item's status fields.
    A deleted item's connection stays as a tombstone: when (`deleted_at`), why (`deleted_reason`)
    and when its copied data was removed (`data_removed_at`)."""

    __tablename__ = "connections"
    __table_args__ = (
        sa.CheckConstraint(one_of("deleted_reason", DELETED_REASONS), name="deleted_reason"),
        # A user's connections in id order (the API's lists, the console's search by email).
        sa.Index("ix_connections_user_id_id", "user_id", "id"),
        # The console's list by connector, newest first (sync/operations/connections.py).
        sa.Index("ix_connections_connector_id_id", "connector_id", "id"),
        sa.Index("ix_connections_connector_name_id", "connector_name", "id"),
        # The tombstones, few beside the live connections: the console's overview counts the live
        # ones by status as all of them but these.
        partial_index("ix_connections_deleted_id", "id", where="deleted_at IS NOT NULL"),
        # SQLite would otherwise give a deleted connection's id to the next one (jobs name it by id).
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    item_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    connector_id: Mapped[int | None]
    connector_name: Mapped[str | None] = mapped_column(sa.String(255))
    client_user_id: Mapped[str | None] = mapped_column(sa.String(255))

    # Pluggy's own words, stored as strings: Pluggy adds values and we must not refuse them.
    item_status: Mapped[str | None] = mapped_column(sa.String(32))
    execution_status: Mapped[str | None] = mapped_column(sa.String(64))
    status_detail: Mapped[dict | None]
    # What Pluggy collects for the item (its `products`: ACCOUNTS, CREDIT_CARDS, INVESTMENTS...).
    products: Mapped[list[str] | None] = mapped_column(JSONType)
    error_code: Mapped[str | None] = mapped_column(sa.String(64))
    error_message: Mapped[str | None] = mapped_column(sa.Text)
    # The prompt Pluggy is waiting on (name, label, type, expiresAt...); never the user's answer.
    mfa_parameter: Mapped[dict | None]
    user_action: Mapped[dict | None]

    last_updated_at: Mapped[datetime | None]  # Pluggy's lastUpdatedAt: its last good bank sync
    next_auto_sync_at: Mapped[datetime | None]
    consent_expires_at: Mapped[datetime | None]
    # Open Finance: the item reads under a consent (GET /consents). Once it is revoked or past its
    # expiry, Pluggy's data routes answer empty data: nothing stored may be taken for deleted then.
    open_finance: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    consent_id: Mapped[str | None] = mapped_column(sa.String(64))
    consent_granted_at: Mapped[datetime | None]
    consent_revoked_at: Mapped[datetime | None]
    consent_products: Mapped[list[str] | None] = mapped_column(JSONType)
    consent_permissions: Mapped[list[str] | None] = mapped_column(JSONType)
    last_synced_at: Mapped[datetime | None]  # our last complete fetch of the item
    last_checked_at: Mapped[datetime | None]  # the missed-webhook sweep's last look at the item
    # A user's DELETE, written before Pluggy is asked to delete the item: whichever process then
    # makes the tombstone names it `user_request` (sync/removal.py). Cleared when Pluggy refuses.
    deletion_requested_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]  # the item was deleted at Pluggy
    deleted_reason: Mapped[str | None] = mapped_column(sa.String(32))  # a DeletedReason
    data_removed_at: Mapped[datetime | None]  # its accounts, transactions and products were removed
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    user: Mapped[User] = relationship(back_populates="connections")
    accounts: Mapped[list[Account]] = relationship(back_populates="connection", passive_deletes=True)
    sync_runs: Mapped[list[SyncRun]] = relationship(back_populates="connection", passive_deletes=True)

    def __repr__(self) -> str:
        return f"<Connection {self.id} item={self.item_id} {self.item_status}>"
