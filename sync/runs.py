"""Sync runs: opening one (at most one open per connection, enforced by the database), reserving
an item update under the PATCH throttle, and closing a run with its outcome."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from models import FETCHED_SYNC_STATUSES, LIVE_JOB_STATUSES, OPEN_SYNC_STATUSES, Connection, Job, RunStatus, SyncRun
from models.base import UTCDateTime, utcnow
from models.database import DbSession
from observability import logs, metrics

from .outbound import events as outbound

log = logging.getLogger(__name__)

THROTTLE_WINDOW = timedelta(seconds=60)
# The client gives a PATCH 33 s (connect and read timeouts) and never retries it: a run that asked
# for an item update this long ago without Pluggy's answer never reached Pluggy.
UNANSWERED_PATCH = timedelta(seconds=60)
# Any constant shared by every process: it names the PostgreSQL advisory lock of the throttle.
ITEM_UPDATE_LOCK_ID = 0x706C7567


class AlreadySyncing(Exception):
    def __init__(self, run: SyncRun | None) -> None:
        super().__init__("a sync of this connection is already open")
        self.run = run


class Throttled(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"item update limit reached; retry in {retry_after:.0f} s")
        self.retry_after = retry_after


def find_open_run(session: DbSession, connection_id: int) -> SyncRun | None:
    return session.scalars(
        sa.select(SyncRun).where(SyncRun.connection_id == connection_id, SyncRun.status.in_(OPEN_SYNC_STATUSES))
    ).one_or_none()


def run_of_update(session: DbSession, connection: Connection) -> SyncRun | None:
    """The run that fetched the item's current update (Pluggy's lastUpdatedAt), if one did: later
    webhooks about that update join it instead of opening another run."""
    if connection.last_updated_at is None:
        return None
    return session.scalars(
        sa.select(SyncRun)
        .where(
            SyncRun.connection_id == connection.id,
            SyncRun.status.in_(FETCHED_SYNC_STATUSES),
            SyncRun.item_last_updated_at == connection.last_updated_at,
        )
        .order_by(SyncRun.id.desc())
        .limit(1)
    ).one_or_none()


def open_run(session: DbSession, connection: Connection, trigger: str) -> SyncRun:
    """A new pending run, committed; AlreadySyncing if the connection has an open one."""
    run = SyncRun(connection_id=connection.id, trigger=trigger, status=RunStatus.PENDING)
    session.add(run)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise AlreadySyncing(find_open_run(session, connection.id)) from None
    return run


def reserve_item_update(
    session: DbSession, connection: Connection, trigger: str, *, per_minute: int, now: datetime | None = None
) -> SyncRun:
    """Open a run that is about to PATCH the item, if the throttle allows one more PATCH this minute.

    Counting and inserting is one statement, serialised on PostgreSQL by an advisory lock, so the
    limit holds across any number of processes. Raises AlreadySyncing or Throttled."""
    now = now or utcnow()
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.select(sa.func.pg_advisory_xact_lock(ITEM_UPDATE_LOCK_ID)))
    recent = (
        sa.select(sa.func.count()).where(SyncRun.item_update_requested_at > now - THROTTLE_WINDOW).scalar_subquery()
    )
    stamp = sa.literal(now, UTCDateTime())
    row = sa.select(
        sa.literal(connection.id),
        sa.literal(str(trigger), sa.String()),
        sa.literal(RunStatus.PENDING.value, sa.String()),
        stamp,
        stamp,
    ).where(recent < per_minute)
    insert = (
        sa.insert(SyncRun)
        .from_select(["connection_id", "trigger", "status", "started_at", "item_update_requested_at"], row)
        .returning(SyncRun.id)
    )
    try:
        run_id = session.execute(insert).scalar_one_or_none()
        session.commit()
    except IntegrityError:
        session.rollback()
        raise AlreadySyncing(find_open_run(session, connection.id)) from None
    if run_id is None:
        raise Throttled(throttle_retry_after(session, now))
    return session.get_one(SyncRun, run_id)


def throttle_retry_after(session: DbSession, now: datetime) -> float:
    oldest = session.scalar(
        sa.select(sa.func.min(SyncRun.item_update_requested_at)).where(
            SyncRun.item_update_requested_at > now - THROTTLE_WINDOW
        )
    )
    if oldest is None:
        return 1.0
    if isinstance(oldest, str):  # SQLite returns aggregates untyped
        oldest = UTCDateTime().process_result_value(datetime.fromisoformat(oldest), None)
    return max(1.0, (oldest + THROTTLE_WINDOW - now).total_seconds())


def accept_item_update(run: SyncRun) -> None:
    """Pluggy answered the run's PATCH (the caller commits)."""
    run.item_update_accepted_at = utcnow()


def update_never_reached_pluggy(run: SyncRun, now: datetime | None = None) -> bool:
    """A run that asked for an item update that Pluggy never answered: the process sending it died
    (or the request failed without a word) between reserving the update and hearing back."""
    requested = run.item_update_requested_at
    return (
        run.status == RunStatus.PENDING
        and requested is not None
        and run.item_update_accepted_at is None
        and (now or utcnow()) - requested > UNANSWERED_PATCH
    )


def orphaned(session: DbSession, run: SyncRun) -> bool:
    """A fetch left running with no job of its item left to resume it (its job gave up)."""
    live_job = (
        sa.select(Job.id).where(Job.item_id == run.connection.item_id, Job.status.in_(LIVE_JOB_STATUSES)).exists()
    )
    return run.status == "running" and not session.scalar(sa.select(live_job))


def let_go_of_stale_run(session: DbSession, connection: Connection, timeout_s: float) -> None:
    """Close a run still waiting for Pluggy's outcome long after it began: none is coming (Pluggy
    had nothing to do, or every signal was lost), and it would block every later sync. A running
    fetch is never given up here: a dead worker's job takes it over."""
    run = find_open_run(session, connection.id)
    if run is not None and run.status == RunStatus.PENDING and (utcnow() - run.started_at).total_seconds() > timeout_s:
        close_run(session, run, RunStatus.ERROR, error_code="timeout", error="Pluggy's outcome never arrived")
    elif run is not None and orphaned(session, run):
        close_run(session, run, RunStatus.ERROR, error_code="fetch_failed", error="The fetch failed and was given up.")


def wait_until_closed(session: DbSession, run: SyncRun, timeout_s: float, *, interval_s: float = 0.25) -> SyncRun:
    """Re-read the run until another process (the worker) closes it, or the time is up."""
    deadline = time.monotonic() + timeout_s
    while run.status in OPEN_SYNC_STATUSES and time.monotonic() < deadline:
        time.sleep(min(interval_s, max(0.0, deadline - time.monotonic())))
        session.commit()  # end the read transaction, so the next read sees the worker's commits
        session.refresh(run)
    return run


def close_run(
    session: DbSession, run: SyncRun, status: str, *, error_code: str | None = None, error: str | None = None
) -> SyncRun:
    """Record a run's outcome, committed; counted and logged with what it wrote. A run that fetched
    changes tells the app (`sync.updates_available`) in the same commit."""
    run.status = status
    run.error_code = error_code
    run.error = error
    run.finished_at = utcnow()
    if status in FETCHED_SYNC_STATUSES:
        outbound.updates_available(session, run)
    session.commit()
    metrics.SYNC_RUNS.labels(run.trigger, status).inc()
    logs.event(
        log,
        "sync run closed",
        logging.WARNING if status == "error" else logging.INFO,
        run_id=run.id,
        connection_id=run.connection_id,
        trigger=run.trigger,
        status=status,
        accounts=run.accounts,
        created=run.created,
        updated=run.updated,
        deleted=run.deleted,
        error_code=error_code,
        duration_ms=round((run.finished_at - run.started_at).total_seconds() * 1000, 1) if run.started_at else None,
    )
    return run
