"""The change log behind the change feed (sync/changes.py): one row per object the API serves,
moved to a later position each time the object changes, written by database triggers.

Triggers, not the service layer, write it: every path that changes a row (bulk upserts, COPY, the
ORM, ON DELETE CASCADE, a migration) then records its change, and none can forget to. The triggers
are created by migration 0013 (which holds their SQL for both engines), with the columns each table
had then; a migration that adds a served column to a tracked table recreates its triggers the same
way (the tests change every column of every tracked table and fail when one is not watched).

A position must order rows by commit, not by when a number was handed out: a reader must never
pass a position that a transaction still open will later fill.
- On SQLite one transaction writes at a time, so a counter (`change_clock`) bumped inside the write
  is in commit order.
- On PostgreSQL a position is the writing transaction's id (`pg_current_xact_id()`), and a reader
  reads only positions below the oldest transaction still running (its snapshot's xmin): every
  transaction below that has ended, and any that starts later gets a larger id.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, one_of, utcnow
from .transaction import BigId


class ChangeKind(StrEnum):
    """What a change-feed entry is."""

    CONNECTION = "connection"
    ACCOUNT = "account"
    TRANSACTION = "transaction"
    BILL = "bill"
    INVESTMENT = "investment"
    INVESTMENT_TRANSACTION = "investment_transaction"
    IDENTITY = "identity"
    LOAN = "loan"


CHANGE_KINDS = tuple(ChangeKind)


class Change(Base):
    """The latest change of one object: which (`kind`, `key`: the id the API shows it by; an
    identity's is its connection's id), whose, and where it sits in the feed. `added_position` is
    where it first appeared: a reader whose position is before it cannot have seen it."""

    __tablename__ = "changes"
    __table_args__ = (
        sa.UniqueConstraint("kind", "key"),
        sa.CheckConstraint(one_of("kind", CHANGE_KINDS), name="kind"),
        sa.Index("ix_changes_position_id", "position", "id"),
        sa.Index("ix_changes_user_id_position_id", "user_id", "position", "id"),
        sa.Index("ix_changes_connection_id", "connection_id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(32))
    key: Mapped[str] = mapped_column(sa.String(64))
    # No foreign keys: the entry of a deleted object (or user) must outlive it to say it is gone.
    user_id: Mapped[int]
    connection_id: Mapped[int]
    position: Mapped[int] = mapped_column(sa.BigInteger)
    added_position: Mapped[int | None] = mapped_column(sa.BigInteger)
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"<Change {self.kind} {self.key} @{self.position}>"


class ChangeClock(Base):
    """One row: SQLite's position counter, and the feed's horizon (`pruned_before`): entries of
    removed objects below it were pruned, so a cursor below it may have missed one."""

    __tablename__ = "change_clock"

    id: Mapped[int] = mapped_column(primary_key=True)
    value: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    pruned_before: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")


# Bookkeeping columns: writing them is not a change of what the API serves (the triggers' tests
# change every other column of every tracked table and expect each to move the row in the feed).
UNWATCHED_COLUMNS = {
    "*": frozenset({"id", "created_at", "updated_at", "last_seen_at", "last_checked_at"}),
    "accounts": frozenset({"transactions_watermark"}),  # how far our reads got
    "investments": frozenset({"movements_key"}),
}
