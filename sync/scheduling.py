"""The kinds of job the sync layer queues, and how each is queued (coalescing keys, item locks)."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from jobqueue import enqueue
from models import Connection, RunTrigger, SyncRun
from models.base import utcnow
from models.database import DbSession


class JobKind(StrEnum):
    """Every kind of job the sync layer queues; `sync.jobs.register` gives each its handler."""

    INITIAL_SYNC = "initial_sync"  # first fetch of a newly registered connection
    FETCH_ITEM = "fetch_item"  # fetch after Pluggy finished an item update
    WATCH_ITEM = "watch_item"  # follow a triggered item until it settles, then fetch
    SWEEP_ITEMS = "sweep_items"  # periodic: find item updates whose webhook never came
    PROCESS_EVENTS = "webhook_events"  # handle stored webhook events: all of an item's, or one without an item
    REMOVE_ITEM_DATA = "remove_item_data"  # a deleted item's copied data, once its retention is over
    PRUNE_CHANGES = "prune_changes"  # periodic: forget the change feed's entries of long-deleted objects
    DELIVER_EVENT = "deliver_event"  # one outbound event to one of the app's endpoints (sync/outbound/)
    PRUNE_OUTBOUND_EVENTS = "prune_outbound_events"  # periodic: forget events delivered long ago


def queue_initial_sync(session: DbSession, connection: Connection) -> int:
    return enqueue(
        session,
        JobKind.INITIAL_SYNC,
        {"connection_id": connection.id},
        key=f"initial:{connection.item_id}",
        item_id=connection.item_id,
    )


def queue_event_processing(session: DbSession, row_id: int, item_id: str | None) -> int:
    """Handle a stored webhook event: one job drains every pending event of its item, so a burst
    for one item is one job; an event without an item has a job of its own."""
    if item_id is None:
        return enqueue(session, JobKind.PROCESS_EVENTS, {"event_row_id": row_id})
    return enqueue(session, JobKind.PROCESS_EVENTS, {"item_id": item_id}, key=f"webhooks:{item_id}", item_id=item_id)


def queue_fetch(session: DbSession, connection: Connection, trigger: str) -> int:
    # While one fetch of the item waits in the queue, asking again joins it: it reads everything new.
    return enqueue(
        session,
        JobKind.FETCH_ITEM,
        {"connection_id": connection.id, "trigger": trigger},
        key=f"fetch:{connection.item_id}",
        item_id=connection.item_id,
    )


def queue_reread(session: DbSession, connection: Connection, account_id: str | None = None) -> int:
    """Re-read what Pluggy already has (no item update) into the connection's open run."""
    return enqueue(
        session,
        JobKind.FETCH_ITEM,
        {"connection_id": connection.id, "trigger": RunTrigger.MANUAL, "reread": True, "account_id": account_id},
        # Joined only by the same re-read: one of every account must not become one of an account.
        key=f"reread:{connection.item_id}:{account_id or '*'}",
        item_id=connection.item_id,
    )


def queue_watch(session: DbSession, run: SyncRun, connection: Connection, *, after_s: float = 0) -> int:
    return enqueue(
        session,
        JobKind.WATCH_ITEM,
        {"connection_id": connection.id, "run_id": run.id},
        # One watcher a run: a new run's would otherwise join the waiting watcher of a closed one.
        key=f"watch:{connection.item_id}:{run.id}",
        item_id=connection.item_id,
        run_at=utcnow() + timedelta(seconds=after_s),
    )


def queue_sweep(session: DbSession, *, after: timedelta = timedelta(0)) -> int:
    return enqueue(session, JobKind.SWEEP_ITEMS, key="periodic:sweep_items", run_at=utcnow() + after)


def queue_changes_pruning(session: DbSession, *, after: timedelta = timedelta(0)) -> int:
    return enqueue(session, JobKind.PRUNE_CHANGES, key="periodic:prune_changes", run_at=utcnow() + after)


def queue_events_pruning(session: DbSession, *, after: timedelta = timedelta(0)) -> int:
    return enqueue(
        session, JobKind.PRUNE_OUTBOUND_EVENTS, key="periodic:prune_outbound_events", run_at=utcnow() + after
    )


def queue_data_removal(session: DbSession, connection: Connection, *, at: datetime) -> int:
    """Remove a deleted connection's copied data at `at`, under its item's lock: never while a fetch
    of the item is still writing."""
    return enqueue(
        session,
        JobKind.REMOVE_ITEM_DATA,
        {"connection_id": connection.id},
        key=f"remove:{connection.item_id}",
        item_id=connection.item_id,
        run_at=at,
    )


def queue_delivery(session: DbSession, delivery_id: int, *, at: datetime | None = None) -> int:
    """Send a delivery at `at` (now if None). No item: a delivery never waits behind an item's fetch;
    its key joins a retry asked for while its next attempt waits in the queue."""
    return enqueue(
        session, JobKind.DELIVER_EVENT, {"delivery_id": delivery_id}, key=f"deliver:{delivery_id}", run_at=at
    )
