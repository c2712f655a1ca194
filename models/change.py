"""The change log behind the change feed (sync/changes.py): one row per object the API serves,
moved to a later position each time the object changes, written by database triggers.

Triggers, not the service layer, write it: every path that changes a row (bulk upserts, COPY, the
ORM, ON DELETE CASCADE, a migration) then records its change, and none can forget to. One exception: rows
inserted into `transactions`, the one table written in bulk, are recorded by their writer, a page in
one statement (`record_new_transactions`: sync/bulk.py, and an ORM hook for rows a session adds). A
row trigger there tripled the time of a first sync on SQLite; updates and deletes of transactions,
far fewer, keep their triggers. The triggers
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

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, dump_json, one_of, utcnow
from .transaction import BigId, Transaction


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
    where it first appeared: a reader whose position is before it cannot have seen it.

    `object_id` is the object's row id (an identity's, its connection's). Entries are unique by
    (kind, object_id, key), so a page of new rows adds its entries at the end of that index. Keyed
    by the Pluggy id alone, each page of a first sync wrote into leaves all over the index, and
    SQLite's WAL writes each touched page whole: 2.2 GB written for 100,000 transactions, against
    1.0 GB now. The key stays in the constraint: SQLite may hand a deleted row's id out again, and
    the new object must not take over the old one's entry."""

    __tablename__ = "changes"
    __table_args__ = (
        sa.UniqueConstraint("kind", "object_id", "key"),
        sa.CheckConstraint(one_of("kind", CHANGE_KINDS), name="kind"),
        sa.Index("ix_changes_position_id", "position", "id"),
        sa.Index("ix_changes_user_id_position_id", "user_id", "position", "id"),
        sa.Index("ix_changes_connection_id", "connection_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(32))
    key: Mapped[str] = mapped_column(sa.String(64))
    object_id: Mapped[int] = mapped_column(sa.BigInteger)
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
    # How far our reads got, and when: every sync writes them. A connection's deletion request is
    # not served either: the tombstone that follows it is.
    "accounts": frozenset({"transactions_watermark", "last_synced_at"}),
    "connections": frozenset({"last_synced_at", "deletion_requested_at"}),
    "investments": frozenset({"movements_key"}),
}


def record_new_transactions(connection: sa.Connection, account_id: int, new_rows: Sequence[tuple[int, str]]) -> None:
    """Enter transactions just inserted for an account, each `(id, pluggy_id)`, into the change
    feed at one position (this transaction's id on PostgreSQL; on SQLite the clock, ticked once).
    Another path that inserts transactions must call it too."""
    if not new_rows:
        return
    if connection.dialect.name == "postgresql":
        position, now = "pg_current_xact_id()::text::bigint", "now()"
        wanted = "unnest(:ids, :keys) AS new (id, key)"
        rows: list[sa.BindParameter] = [
            sa.bindparam("ids", [row_id for row_id, _ in new_rows], type_=postgresql.ARRAY(sa.BigInteger)),
            sa.bindparam("keys", [key for _, key in new_rows], type_=postgresql.ARRAY(sa.String)),
        ]
    else:
        connection.execute(sa.text(SQLITE_TICK))
        position, now = "(SELECT value FROM change_clock WHERE id = 1)", "strftime('%Y-%m-%d %H:%M:%f000', 'now')"
        wanted = "(SELECT value ->> 0 AS id, value ->> 1 AS key FROM json_each(:rows)) AS new"
        rows = [sa.bindparam("rows", dump_json(list(new_rows)))]
    # The owner comes from the account, by its key, and the rows' ids from the writer: nothing is
    # looked up by Pluggy id (a plan prepared while the table was small would scan it for each).
    statement = sa.text(
        "INSERT INTO changes (kind, key, object_id, user_id, connection_id, position, added_position, changed_at) "
        f"SELECT 'transaction', new.key, new.id, c.user_id, c.id, {position}, {position}, {now} "
        f"FROM {wanted} CROSS JOIN accounts a JOIN connections c ON c.id = a.connection_id WHERE a.id = :account_id "
        "ON CONFLICT (kind, object_id, key) DO UPDATE SET position = excluded.position, "
        "changed_at = excluded.changed_at, added_position = COALESCE(changes.added_position, excluded.added_position)"
    )
    connection.execute(statement.bindparams(*rows, account_id=account_id))


# The same tick as the triggers': an upsert, so a lost clock row cannot leave a NULL position.
SQLITE_TICK = (
    "INSERT INTO change_clock (id, value, pruned_before) VALUES (1, 1, 0) "
    "ON CONFLICT (id) DO UPDATE SET value = change_clock.value + 1"
)


@sa.event.listens_for(Transaction, "after_insert")
def record_added_transaction(mapper: object, connection: sa.Connection, target: Transaction) -> None:
    record_new_transactions(connection, target.account_id, [(target.id, target.pluggy_id)])
