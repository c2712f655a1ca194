"""Deleted items: the connection stays as a tombstone (when: `deleted_at`, why: `deleted_reason`),
and the item's copied data is removed once DELETED_ITEM_RETENTION_DAYS have passed (0: at once).

"Copied data" is every row of a table with a foreign key to `connections.id` (accounts, and each
product table hung off the connection), except the service's own records of the connection
(`KEPT_WITH_TOMBSTONE`), plus whatever hangs off those rows by ON DELETE CASCADE (transactions
under their accounts, and products under accounts). The tables are found through the models'
metadata, so a product added later is removed without a change here.

The removal is a job (`remove_item_data`) queued for the moment the retention ends, under the
item's lock: it never runs while a fetch of the item is still writing, it is retried like any job,
and it checks again when it runs (a connection revived since keeps its data; a retention raised
since postpones it).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import sqlalchemy as sa

from config import Settings
from jobqueue import RetryLater
from models import Connection
from models.base import utcnow
from models.connection import DeletedReason
from models.database import DbSession
from observability import logs, metrics

from .job_context import SyncJobContext
from .outbound import events as outbound
from .scheduling import queue_data_removal

log = logging.getLogger(__name__)

# The service's own record of what it did for the connection, not data copied from Pluggy: kept with
# the tombstone.
KEPT_WITH_TOMBSTONE = frozenset({"sync_runs", "reported_statuses"})


def mark_deleted(
    session: DbSession,
    connection: Connection,
    reason: DeletedReason,
    settings: Settings,
    *,
    now: datetime | None = None,
) -> None:
    """Make the connection a tombstone (the first deletion's when and why are kept) and queue the
    removal of its copied data for when its retention ends; the app is told (`connection.deleted`)
    in the same transaction, once whichever process gets there first. The caller commits."""
    written = tombstone(session, connection, reason, now or utcnow())
    if written is not None:
        outbound.connection_deleted(session, connection, written)
    if connection.data_removed_at is None:
        queue_data_removal(session, connection, at=removal_due(connection, settings))


def tombstone(session: DbSession, connection: Connection, reason: DeletedReason, when: datetime) -> str | None:
    """Write the tombstone's when and why unless the connection has them; the reason written, None
    when it was a tombstone already. The database settles it, not what this session read before: a
    user's DELETE and the `item/deleted` it makes Pluggy send (or a worker's read finding the item
    gone) race, and only one of them may tell the app. A deletion the user asked for
    (`deletion_requested_at`, written before Pluggy was asked) is `user_request` whichever writes it."""
    named = sa.case(
        (Connection.deletion_requested_at.is_not(None), DeletedReason.USER_REQUEST.value), else_=reason.value
    )
    written = session.execute(
        sa.update(Connection)
        .where(Connection.id == connection.id, Connection.deleted_at.is_(None))
        .values(deleted_at=when, deleted_reason=named)
        .returning(Connection.deleted_reason)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    session.refresh(connection)
    return written


def revived(connection: Connection) -> None:
    """A tombstone whose item Pluggy knows again: live once more."""
    connection.deleted_at = None
    connection.deleted_reason = None
    connection.data_removed_at = None
    connection.deletion_requested_at = None


def queue_overdue_removals(session: DbSession, settings: Settings, *, now: datetime, limit: int) -> int:
    """The sweep's safety net: tombstones whose data is still here past their retention and that no
    removal job waits for (connections deleted before the removal existed, a removal job that went
    dead) get one now. Returns how many. The caller commits."""
    overdue = session.scalars(
        sa.select(Connection)
        .where(
            Connection.deleted_at.is_not(None),
            Connection.data_removed_at.is_(None),
            Connection.deleted_at < now - timedelta(days=settings.deleted_item_retention_days),
        )
        .order_by(Connection.deleted_at)
        .limit(limit)
    ).all()
    for connection in overdue:
        queue_data_removal(session, connection, at=now)
    return len(overdue)


def removal_due(connection: Connection, settings: Settings) -> datetime:
    """When the copied data goes: at once when the user asked for the deletion, else after the
    retention."""
    assert connection.deleted_at is not None
    if connection.deleted_reason == DeletedReason.USER_REQUEST:
        return connection.deleted_at
    return connection.deleted_at + timedelta(days=settings.deleted_item_retention_days)


def connection_data_tables(metadata: sa.MetaData) -> list[tuple[sa.Table, sa.Column]]:
    """Each table holding an item's copied data by a foreign key to connections.id, with that column."""
    connections = Connection.__tablename__
    found = []
    for table in metadata.sorted_tables:
        if table.name == connections or table.name in KEPT_WITH_TOMBSTONE:
            continue
        for fk in table.foreign_keys:
            if fk.column.table.name == connections:
                found.append((table, fk.parent))
    return found


def dependent_tables(metadata: sa.MetaData, parents: list[sa.Table]) -> list[tuple[sa.Table, sa.Column, sa.Table]]:
    """Tables whose rows hang off rows of `parents` (transactions under accounts): (table, its
    foreign key column, the parent table). Their rows go by ON DELETE CASCADE."""
    found = []
    for table in metadata.sorted_tables:
        for fk in table.foreign_keys:
            if fk.column.table in parents and table not in parents:
                found.append((table, fk.parent, fk.column.table))
    return found


def remove_copied_data(
    session: DbSession,
    connection: Connection,
    *,
    now: datetime | None = None,
    metadata: sa.MetaData | None = None,
) -> dict[str, int]:
    """Delete the connection's copied data (the connection itself stays); returns the rows removed
    per table. Idempotent: a second call removes what a fetch in flight wrote since, if anything.
    `metadata`: the models' (tests hand in one with tables of their own)."""
    metadata = metadata or Connection.metadata
    tables = connection_data_tables(metadata)
    removed: dict[str, int] = {}
    owned = {table: sa.select(table.c.id).where(column == connection.id) for table, column in tables}
    for table, column, parent in dependent_tables(metadata, list(owned)):
        # Counted for the log line and the metric; the delete below takes them by cascade.
        number = session.scalar(sa.select(sa.func.count()).select_from(table).where(column.in_(owned[parent])))
        name = str(table.name)  # a plain str: the JSON log line takes no subclass as a key
        removed[name] = removed.get(name, 0) + (number or 0)
    for table, column in tables:
        result = session.execute(sa.delete(table).where(column == connection.id))
        name = str(table.name)
        removed[name] = removed.get(name, 0) + max(result.rowcount or 0, 0)  # type: ignore[attr-defined]
    first_time = connection.data_removed_at is None
    if first_time:
        connection.data_removed_at = now or utcnow()
    # What Pluggy said about the item's accounts and prompts goes with them.
    connection.status_detail = None
    connection.mfa_parameter = None
    connection.user_action = None
    session.commit()
    session.expire(connection, ["accounts"])
    if first_time or any(removed.values()):
        metrics.count_data_removal(connection.deleted_reason or "unknown", removed)
        logs.event(
            log,
            "deleted item's data removed",
            connection_id=connection.id,
            item_id=connection.item_id,
            reason=connection.deleted_reason,
            deleted_at=connection.deleted_at.isoformat() if connection.deleted_at else None,
            rows=removed,
        )
    return removed


def remove_item_data(context: SyncJobContext) -> None:
    """The job: remove a deleted connection's copied data once its retention is over."""
    session = context.session
    connection = session.get(Connection, context.job.payload["connection_id"])
    if connection is None or connection.deleted_at is None:
        return  # gone altogether, or revived: its data is its own again
    now = utcnow()
    due = removal_due(connection, context.settings)
    if due > now:
        raise RetryLater((due - now).total_seconds(), "retention not over")
    remove_copied_data(session, connection, now=now)
    context.checkpoint(progressed=True)
