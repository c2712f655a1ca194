"""What a job that gives up (goes dead) leaves behind.

Its item's open sync run is closed, so manual syncs are not refused with ALREADY_SYNCING for ever,
and the webhook events it was to handle are marked failed with its error, so they show why nothing
came of them (`flask jobs retry` puts them back). While another job of the item is queued or
running, nothing is closed: that job carries the run and the events on.

An operator may also discard a dead or waiting job (`discard`): it is given up for good, and what it
owned is closed the same way, with "discarded by an operator" as the reason, so that nothing it was
to do is left waiting silently for a job that will never run.
"""

from __future__ import annotations

import sqlalchemy as sa

from jobqueue import ClaimedJob, queue
from models import (
    LIVE_JOB_STATUSES,
    OPEN_SYNC_STATUSES,
    Connection,
    EventStatus,
    Job,
    JobStatus,
    RunStatus,
    SyncRun,
    WebhookEvent,
)
from models.base import utcnow
from models.database import DbSession

from . import runs
from .outbound import delivery
from .scheduling import JobKind


def close_what_it_owned(session: DbSession, job: ClaimedJob | Job, error: str) -> None:
    """Close the dead job's run and events (committed)."""
    owned = events_of(job)
    if owned is not None and not (job.item_id and item_has_live_job(session, job.item_id, kind=JobKind.PROCESS_EVENTS)):
        fail_events(session, owned, error)
    if job.item_id is not None and not item_has_live_job(session, job.item_id):
        for run in open_runs_of_item(session, job.item_id):
            runs.close_run(
                session, run, RunStatus.ERROR, error_code="fetch_failed", error="The fetch failed and was given up."
            )


def retry(session: DbSession, job: Job) -> bool:
    """Run a dead or waiting job as soon as a worker is free, the events a dead one gave up on
    pending again with it (one commit). False if the same work is already queued under its key."""
    if job.status == "dead":
        reopen_what_it_owned(session, job)
    return queue.retry_now(session, job.id)


def retry_dead(session: DbSession, kind: str | None = None) -> list[int]:
    """Queue every dead job again (only those of `kind` if given); returns the ids of those that
    were (not those whose work was already queued under their key)."""
    dead = sa.select(Job).where(Job.status == JobStatus.DEAD).order_by(Job.id)
    if kind is not None:
        dead = dead.where(Job.kind == kind)
    return [job.id for job in session.scalars(dead).all() if retry(session, job)]


def discard(session: DbSession, job: Job) -> bool:
    """Give up a dead or waiting job for good (`jobqueue.queue.discard`: the row is kept, done, with
    "discarded by an operator" as its last error) and close what it owned as if it had gone dead with
    that reason: its pending webhook events failed, its item's open run closed, its outbound delivery
    dead. A dead job's were closed when it died; closing again changes nothing. False, with nothing
    changed, if the job is running or done (committed)."""
    if not queue.discard(session, job.id):
        session.rollback()
        return False
    # Closed after the job is done (in this transaction): it no longer counts as its item's live job.
    close_what_it_owned(session, job, queue.DISCARDED)
    delivery.job_gave_up(session, job, queue.DISCARDED, discarded=True)
    session.commit()
    return True


def reopen_what_it_owned(session: DbSession, job: Job) -> None:
    owned = events_of(job)
    if owned is not None:
        session.execute(
            sa.update(WebhookEvent)
            .where(owned, WebhookEvent.status == EventStatus.FAILED)
            .values(status=EventStatus.PENDING)
        )


def events_of(job: ClaimedJob | Job) -> sa.ColumnElement[bool] | None:
    """The webhook events an events job handles: every one of its item, or its one event."""
    if job.kind != JobKind.PROCESS_EVENTS:
        return None
    if job.item_id is not None:
        return WebhookEvent.item_id == job.item_id
    return WebhookEvent.id == job.payload["event_row_id"]


def item_has_live_job(session: DbSession, item_id: str, *, kind: str | None = None) -> bool:
    live = sa.select(Job.id).where(Job.item_id == item_id, Job.status.in_(LIVE_JOB_STATUSES))
    if kind is not None:
        live = live.where(Job.kind == kind)
    return bool(session.scalar(sa.select(live.exists())))


def fail_events(session: DbSession, owned: sa.ColumnElement[bool], error: str) -> None:
    session.execute(
        sa.update(WebhookEvent)
        .where(owned, WebhookEvent.status == EventStatus.PENDING)
        .values(status=EventStatus.FAILED, last_error=error, processed_at=utcnow())
    )
    session.commit()


def open_runs_of_item(session: DbSession, item_id: str) -> list[SyncRun]:
    return list(
        session.scalars(
            sa.select(SyncRun)
            .join(Connection, SyncRun.connection_id == Connection.id)
            .where(Connection.item_id == item_id, SyncRun.status.in_(OPEN_SYNC_STATUSES))
        )
    )
