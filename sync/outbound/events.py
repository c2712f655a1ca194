"""The events the service sends the app, and how each is written: the event, one delivery per
subscribed endpoint and each delivery's job, all in the caller's transaction, so a change rolled
back sends nothing and a change committed loses nothing, whatever happens to the process after.

Everything here writes with Core statements through the session, never by adding ORM objects: the
status watcher runs inside a flush, where added objects would not be flushed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, UOWTransaction

from jobqueue import dialect_insert
from models import (
    OPEN_SYNC_STATUSES,
    Change,
    ChangeKind,
    Connection,
    EndpointStatus,
    OutboundEvent,
    ReportedStatus,
    SyncRun,
    WebhookDelivery,
    WebhookEndpoint,
)
from models.base import utcnow
from models.database import DbSession

from ..item_state import sync_status
from ..scheduling import queue_delivery


class EventType(StrEnum):
    """Every event type an endpoint may receive (and filter on, `events`)."""

    SYNC_UPDATES_AVAILABLE = "sync.updates_available"  # a sync run stored changes: read them
    CONNECTION_STATUS_CHANGED = "connection.status_changed"  # the API's sync_status moved
    CONNECTION_DELETED = "connection.deleted"  # the connection became a tombstone, or its user was erased


def emit(session: DbSession | Session, event_type: EventType, data: dict[str, Any]) -> int | None:
    """Write the event and queue a delivery to every active endpoint that takes its type; the caller
    commits. Returns the event's id, or None when no endpoint takes it (nothing is written)."""
    endpoints = subscribed(session, event_type)
    if not endpoints:
        return None
    now = utcnow()
    payload = {"type": str(event_type), "timestamp": now.isoformat().replace("+00:00", "Z"), "data": data}
    event_id = session.execute(
        sa.insert(OutboundEvent.__table__).returning(OutboundEvent.__table__.c.id),
        {"message_id": f"msg_{uuid.uuid4().hex}", "type": str(event_type), "payload": payload, "created_at": now},
    ).scalar_one()
    deliveries = WebhookDelivery.__table__
    for endpoint_id in endpoints:
        delivery_id = session.execute(
            sa.insert(deliveries).returning(deliveries.c.id),
            {"event_id": event_id, "endpoint_id": endpoint_id, "status": "pending", "attempts": 0, "created_at": now},
        ).scalar_one()
        queue_delivery(session, delivery_id)
    return event_id


def subscribed(session: DbSession | Session, event_type: EventType) -> list[int]:
    table = WebhookEndpoint.__table__
    rows = session.execute(
        sa.select(table.c.id, table.c.event_types).where(table.c.status == EndpointStatus.ACTIVE).order_by(table.c.id)
    ).all()
    return [endpoint_id for endpoint_id, types in rows if types is None or str(event_type) in types]


# sync.updates_available ----------------------------------------------------------------------


def updates_available(session: DbSession, run: SyncRun) -> int | None:
    """The run fetched: tell the app what changed, if anything did. The caller commits."""
    if not subscribed(session, EventType.SYNC_UPDATES_AVAILABLE):
        return None
    kinds = changed_kinds(session, run)
    if not kinds:
        return None
    connection = run.connection
    return emit(
        session,
        EventType.SYNC_UPDATES_AVAILABLE,
        {**connection_ids(connection), "sync_run_id": run.id, "kinds": [str(kind) for kind in kinds]},
    )


def transactions_changed(session: DbSession, run: SyncRun) -> int | None:
    """Transactions a webhook changed after their item's update was fetched and its run closed (their
    counts join that run): told on their own. The caller commits."""
    data = {**connection_ids(run.connection), "sync_run_id": run.id, "kinds": [str(ChangeKind.TRANSACTION)]}
    return emit(session, EventType.SYNC_UPDATES_AVAILABLE, data)


def changed_kinds(session: DbSession, run: SyncRun) -> list[ChangeKind]:
    """What the change feed moved for the connection's objects since the run started, in the feed's
    words (`transaction`, `account`...): what a reader of /changes/ will find. The connection's own
    row is left out: its status has an event of its own."""
    kinds = session.scalars(
        sa.select(Change.kind)
        .distinct()
        .where(
            Change.connection_id == run.connection_id,
            Change.changed_at >= run.started_at,
            Change.kind != ChangeKind.CONNECTION,
        )
    )
    return sorted(ChangeKind(kind) for kind in kinds)


# connection.deleted --------------------------------------------------------------------------


def connection_deleted(session: DbSession, connection: Connection, reason: str) -> int | None:
    """The connection became a tombstone (or is about to be erased with its user). The caller commits."""
    return emit(session, EventType.CONNECTION_DELETED, {**connection_ids(connection), "reason": reason})


def connection_ids(connection: Connection) -> dict[str, Any]:
    return {"user_id": connection.user_id, "connection_id": connection.id, "item_id": connection.item_id}


# connection.status_changed: watched at every flush ---------------------------------------------
#
# A connection's sync_status follows from its item's state and its open run, which a dozen places
# change (webhooks, the sweep, manual syncs, MFA, runs opened and closed). Rather than a call in each
# of them, every flush that touches a connection or a run compares the status with the one last
# reported, in the same transaction.


def watch_statuses(session: Session, flush_context: UOWTransaction) -> None:
    for connection_id in touched_connections(session):
        connection = session.get(Connection, connection_id)
        if connection is not None and connection.deleted_at is None:
            note_status(session, connection)


# What sync_status is read from: a flush that changed none of these leaves it as it was.
STATUS_INPUTS = {
    Connection: ("item_status", "consent_revoked_at", "consent_expires_at", "deleted_at"),
    SyncRun: ("status",),
}


def touched_connections(session: Session) -> list[int]:
    ids: set[int] = set()
    for instance in session.new:
        if isinstance(instance, Connection | SyncRun):
            ids.add(instance.id if isinstance(instance, Connection) else instance.connection_id)
    for instance in session.dirty:
        inputs = STATUS_INPUTS.get(type(instance))
        state = sa.inspect(instance)
        if inputs and any(state.attrs[name].history.has_changes() for name in inputs):
            ids.add(instance.id if isinstance(instance, Connection) else instance.connection_id)
    return sorted(connection_id for connection_id in ids if connection_id is not None)


def note_status(session: DbSession | Session, connection: Connection) -> None:
    """Record the connection's sync_status; queue `connection.status_changed` when it moved from one
    reported before. The first status seen (a new connection) is recorded without an event."""
    open_run = session.scalars(
        sa.select(SyncRun).where(SyncRun.connection_id == connection.id, SyncRun.status.in_(OPEN_SYNC_STATUSES))
    ).first()
    status = sync_status(connection, open_run)
    table = ReportedStatus.__table__
    reported = session.execute(sa.select(table.c.sync_status).where(table.c.connection_id == connection.id)).scalar()
    if reported == status:
        return
    insert = dialect_insert(session)(table).values(connection_id=connection.id, sync_status=str(status))
    session.execute(
        insert.on_conflict_do_update(index_elements=[table.c.connection_id], set_={"sync_status": str(status)})
    )
    if reported is not None:
        emit(
            session,
            EventType.CONNECTION_STATUS_CHANGED,
            {**connection_ids(connection), "old_status": reported, "new_status": str(status)},
        )


MISSING_STATUS_BATCH = 500


def record_missing_statuses(session: DbSession, checkpoint: Callable[..., None]) -> int:
    """Give every live connection that has no reported sync_status its current one, without an event
    (none was reported before): connections made before statuses were recorded (migration 0014),
    which the console counts and filters by it. In batches along the connections' ids, each
    committed; the sweep calls it, and once every connection has one it is a single anti-join.
    Returns how many were recorded."""
    after, recorded = 0, 0
    while batch := missing_statuses(session, after):
        for connection in batch:
            note_status(session, connection)
        session.commit()
        checkpoint(progressed=True)
        after, recorded = batch[-1].id, recorded + len(batch)
    return recorded


def missing_statuses(session: DbSession, after: int) -> list[Connection]:
    return list(
        session.scalars(
            sa.select(Connection)
            .outerjoin(ReportedStatus, ReportedStatus.connection_id == Connection.id)
            .where(ReportedStatus.connection_id.is_(None), Connection.deleted_at.is_(None), Connection.id > after)
            .order_by(Connection.id)
            .limit(MISSING_STATUS_BATCH)
        )
    )


def watch(session_class: type[Session] = Session) -> None:
    """Install the status watcher on every session (once; the app factory calls it)."""
    if not sa.event.contains(session_class, "after_flush", watch_statuses):
        sa.event.listen(session_class, "after_flush", watch_statuses)
