"""The job queue that lives in the database.

Enqueue writes a row (joining a queued job with the same key instead of adding one); a claim takes
the oldest due job with a lease, `FOR UPDATE SKIP LOCKED` on PostgreSQL so any number of workers
share the queue, and SQLite's single writer elsewhere. A job whose lease ran out (its worker died)
is claimed again. Failures retry with exponential backoff and jitter, honouring a `retry_after`,
until the job is dead.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TypeAlias, cast

import sqlalchemy as sa
from flask import current_app, has_app_context
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from models import Job, JobStatus
from models.base import utcnow
from models.database import DbSession
from models.job import DEAD_ONLY, DEFAULT_MAX_ATTEMPTS, QUEUED_ONLY, RUNNING_ONLY
from observability import metrics

from . import wakeup


class JobOutcome(StrEnum):
    """How one run of a job ended (the `outcome` of its log line and of its duration metric)."""

    DONE = "done"
    FAILED = "failed"  # an attempt spent; it runs again after a backoff
    DEAD = "dead"  # attempts spent: given up
    RETRY = "retry"  # the handler asked to run again later, no attempt spent
    RELEASED = "released"  # a stopping worker gave it back to the queue
    LEASE_LOST = "lease_lost"  # another worker took it over


DEFAULT_LEASE = timedelta(minutes=5)
BACKOFF_BASE_SECONDS = 10.0
BACKOFF_CAP_SECONDS = 3600.0
# A claim that collides with another worker's lease on the same item looks again; each collision
# means that worker got a job, so the whole queue advances even when this claim gives up.
CLAIM_TRIES = 5
# The dialect's own INSERT, for its ON CONFLICT clauses; it takes a table or a mapped class.
DialectInsert: TypeAlias = postgresql.Insert | sqlite.Insert
INSERTS: dict[str, Callable[[sa.Table | type], DialectInsert]] = {
    "postgresql": postgresql.insert,
    "sqlite": sqlite.insert,
}


@dataclass
class ClaimedJob:
    """A job as this worker claimed it: plain values that no session expiry can change under us
    (only `forgive_attempts` changes one, with the row)."""

    id: int
    kind: str
    payload: dict
    attempts: int
    max_attempts: int
    key: str | None
    item_id: str | None
    worker_id: str
    created_at: datetime
    taken_back: bool = False  # claimed after its lease ran out: the worker that had it is gone


def enqueue(
    session: DbSession,
    kind: str,
    payload: dict | None = None,
    *,
    key: str | None = None,
    item_id: str | None = None,
    run_at: datetime | None = None,
    max_attempts: int | None = None,
) -> int:
    """Queue a job and return its id. With a key, a job already queued under it is joined instead
    (it runs at the earlier of the two times). It may fail `max_attempts` times before it is dead:
    by default the app's JOB_MAX_ATTEMPTS. The caller commits."""
    run_at = run_at or utcnow()
    values = {
        "kind": kind,
        "payload": payload or {},
        "status": JobStatus.QUEUED,
        "key": key,
        "item_id": item_id,
        "run_at": run_at,
        "created_at": utcnow(),
        "max_attempts": default_max_attempts() if max_attempts is None else max_attempts,
    }
    statement = job_insert(session.get_bind().dialect.name, coalesce=key is not None)
    job_id, queued_for = session.execute(statement, values).one()
    # Only a job this call made due wakes the workers: one already due had its NOTIFY when it was
    # queued, and on PostgreSQL every transaction that notifies commits in turn with all the others
    # that do (a lock on the notification queue, held through the commit's WAL flush), so a NOTIFY
    # per webhook delivery would serialise the intake's commits.
    if queued_for == run_at and run_at <= utcnow():
        wakeup.notify(session)
    return job_id


def default_max_attempts() -> int:
    if has_app_context():
        return current_app.config.get("JOB_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS)
    return DEFAULT_MAX_ATTEMPTS


@functools.cache
def job_insert(dialect_name: str, *, coalesce: bool):
    """The INSERT that queues a job, built once: the webhook intake runs it on every delivery. With
    `coalesce`, a job already queued under the same key is joined and keeps the earlier run_at."""
    table = Job.__table__
    insert = INSERTS[dialect_name](table)
    if coalesce:
        earlier = sa.case((insert.excluded.run_at < table.c.run_at, insert.excluded.run_at), else_=table.c.run_at)
        insert = insert.on_conflict_do_update(
            index_elements=[table.c.key], index_where=sa.text(QUEUED_ONLY), set_={"run_at": earlier}
        )
    return insert.returning(table.c.id, table.c.run_at)


def dialect_insert(session: DbSession) -> Callable[[sa.Table | type], DialectInsert]:
    return INSERTS[session.get_bind().dialect.name]


def claim(
    session: DbSession,
    worker_id: str,
    *,
    lease: timedelta = DEFAULT_LEASE,
    item_id: str | None = None,
    now: datetime | None = None,
) -> ClaimedJob | None:
    """Take back a job whose lease expired (its worker died), or else take the next due job, and
    commit the lease. None if nothing is due. Abandoned jobs first: each holds its item, so every job
    of that item waits behind it, and a steady stream of other due jobs would keep it waiting.

    A job whose item already has a running job waits, so one item's jobs never overlap; the running
    job counts whether or not its lease expired, so a due job never stands in the way of taking the
    abandoned one back. `item_id` limits the claim to that item's jobs (the CLI's --wait runs only
    its own)."""
    now = now or utcnow()
    # The status tests are literal SQL so that SQLite sees they match its partial indexes.
    due = sa.text(QUEUED_ONLY) & (Job.run_at <= now)
    abandoned = sa.text(RUNNING_ONLY) & (Job.locked_until < now)
    for _ in range(CLAIM_TRIES):
        try:
            # Two looks rather than one `due OR abandoned`: each walks its own partial index in order
            # and stops at the first free job, however long the queue.
            # A plain look first: an UPDATE that finds nothing still costs a write on SQLite, and
            # there is seldom an abandoned job to take.
            taken_back = session.scalar(sa.select(sa.exists().where(abandoned))) and take(
                session, worker_id, abandoned, (Job.locked_until, Job.id), lease, item_id, now, taken_back=True
            )
            job = taken_back or take(session, worker_id, due, (Job.run_at, Job.id), lease, item_id, now)
            session.commit()
            return job
        except IntegrityError:
            # Another worker leased a job of the same item between our look and our lease (PostgreSQL
            # lets the two overlap): look again, and that item is now seen busy.
            session.rollback()
            metrics.QUEUE_CLAIM_CONFLICTS.inc()
    return None


def take(
    session: DbSession,
    worker_id: str,
    condition,
    order,
    lease: timedelta,
    item_id: str | None,
    now: datetime,
    *,
    taken_back: bool = False,
) -> ClaimedJob | None:
    """Lease the first job matching `condition` in `order` whose item is not busy, or None."""
    running = aliased(Job)
    item_busy = sa.exists().where(
        running.item_id == Job.item_id, running.status == JobStatus.RUNNING, running.id != Job.id
    )
    candidates = sa.select(Job.id).where(condition, ~item_busy)
    if item_id is not None:
        candidates = candidates.where(Job.item_id == item_id)
    next_id = candidates.order_by(*order).limit(1).with_for_update(skip_locked=True).scalar_subquery()
    statement = (
        sa.update(Job)
        .where(Job.id == next_id)
        .values(status=JobStatus.RUNNING, locked_by=worker_id, locked_until=now + lease, attempts=Job.attempts + 1)
        .returning(Job)
        .execution_options(synchronize_session=False)
    )
    job = session.scalars(statement).one_or_none()
    return None if job is None else claimed_job(job, worker_id, taken_back=taken_back)


def claimed_job(job: Job, worker_id: str, *, taken_back: bool = False) -> ClaimedJob:
    return ClaimedJob(
        id=job.id,
        kind=job.kind,
        payload=dict(job.payload or {}),
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        key=job.key,
        item_id=job.item_id,
        worker_id=worker_id,
        created_at=job.created_at,
        taken_back=taken_back,
    )


def extend_lease(connection: sa.Connection, job: ClaimedJob, lease: timedelta = DEFAULT_LEASE) -> bool:
    """Keep a long job's lease alive. False if the job is no longer ours (the lease was lost)."""
    result = connection.execute(
        sa.update(Job)
        .where(Job.id == job.id, Job.locked_by == job.worker_id, Job.status == JobStatus.RUNNING)
        .values(locked_until=utcnow() + lease)
    )
    return result.rowcount == 1


def forgive_attempts(connection: sa.Connection, job: ClaimedJob) -> None:
    """The job made progress: the attempts its earlier crashes or failures spent are given back,
    and this one is its first."""
    result = connection.execute(
        sa.update(Job)
        .where(Job.id == job.id, Job.locked_by == job.worker_id, Job.status == JobStatus.RUNNING)
        .values(attempts=1)
    )
    if result.rowcount == 1:
        job.attempts = 1


def complete(session: DbSession, job: ClaimedJob) -> None:
    finish(session, job, status=JobStatus.DONE)


def fail(session: DbSession, job: ClaimedJob, error: str, *, retry_after: float | None = None) -> JobOutcome:
    """Record a failed attempt: retry later with backoff, or give up once attempts are spent.
    Returns the outcome: FAILED (to be retried) or DEAD."""
    if job.attempts >= job.max_attempts:
        finish(session, job, status=JobStatus.DEAD, error=error)
        return JobOutcome.DEAD
    requeue(session, job, after_seconds=max(backoff_seconds(job.attempts), retry_after or 0), error=error)
    return JobOutcome.FAILED


def postpone(session: DbSession, job: ClaimedJob, after_seconds: float, reason: str = "") -> None:
    """Run the job again later without spending an attempt (e.g. waiting for Pluggy to settle)."""
    requeue(session, job, after_seconds=after_seconds, error=reason or None, spend_attempt=False)


def backoff_seconds(attempts: int) -> float:
    """Exponential, capped, with jitter so jobs that failed together do not retry together."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempts - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def requeue(
    session: DbSession, job: ClaimedJob, *, after_seconds: float, error: str | None, spend_attempt: bool = True
) -> None:
    run_at = utcnow() + timedelta(seconds=after_seconds)
    values = {
        "status": JobStatus.QUEUED,
        "run_at": run_at,
        "locked_by": None,
        "locked_until": None,
        "last_error": error,
    }
    if not spend_attempt:
        values["attempts"] = Job.attempts - 1
    try:
        update_own_job(session, job, values)
    except IntegrityError:
        # The same work was queued again under this key meanwhile: that job will do it.
        session.rollback()
        if spend_attempt:
            carry_failure(session, job, run_at, error)
        finish(session, job, status=JobStatus.DONE, error=f"superseded by a queued job with key {job.key}")


def carry_failure(session: DbSession, job: ClaimedJob, run_at: datetime, error: str | None) -> None:
    """A failed job superseded by the queued job of its key hands that job its spent attempts and its
    backoff: else work that keeps failing, joined by new work while it runs (a webhook for its item),
    would be tried again at once, with fresh attempts, for as long as new work comes."""
    session.execute(
        sa.update(Job)
        .where(Job.key == job.key, Job.status == JobStatus.QUEUED)
        .values(
            attempts=sa.case((Job.attempts < job.attempts, job.attempts), else_=Job.attempts),
            run_at=sa.case((Job.run_at < run_at, run_at), else_=Job.run_at),
            last_error=error,
        )
        .execution_options(synchronize_session=False)
    )


def finish(session: DbSession, job: ClaimedJob, *, status: str, error: str | None = None) -> None:
    # locked_by stays: which worker finished the job is worth knowing afterwards.
    values = {"status": status, "finished_at": utcnow(), "locked_until": None}
    if error is not None:
        values["last_error"] = error
    update_own_job(session, job, values)


def update_own_job(session: DbSession, job: ClaimedJob, values: dict) -> None:
    """Update a job only while this worker still holds it, so a worker that lost its lease
    cannot overwrite the outcome of the worker that took the job over."""
    session.execute(
        sa.update(Job)
        .where(Job.id == job.id, Job.locked_by == job.worker_id, Job.status == JobStatus.RUNNING)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    session.commit()


def retry_now(session: DbSession, job_id: int) -> bool:
    """Run a dead or waiting job as soon as a worker is free (a dead one with fresh attempts).
    False if there is no such job, or the same work is already queued under its key."""
    statement = (
        sa.update(Job)
        .where(Job.id == job_id, Job.status.in_((JobStatus.DEAD, JobStatus.QUEUED)))
        .values(
            status=JobStatus.QUEUED,
            run_at=utcnow(),
            finished_at=None,
            attempts=sa.case((Job.status == JobStatus.DEAD, 0), else_=Job.attempts),
        )
    )
    try:
        # Session.execute is typed to answer a Result; an UPDATE's is a CursorResult, with a rowcount.
        updated = cast(CursorResult, session.execute(statement)).rowcount == 1
        wakeup.notify(session)
        session.commit()
    except IntegrityError:
        session.rollback()
        return False
    return updated


DISCARDED = "discarded by an operator"


def discard(session: DbSession, job_id: int) -> bool:
    """Give up a dead or waiting job for good: it is marked done, with DISCARDED as its last error,
    rather than deleted, so that its page still tells what it was and who ended it until done jobs
    are pruned. Never a running job: its worker holds it. False if there is no such job. The caller
    commits (and closes what the job owned)."""
    statement = (
        sa.update(Job)
        .where(Job.id == job_id, Job.status.in_((JobStatus.DEAD, JobStatus.QUEUED)))
        .values(status=JobStatus.DONE, finished_at=utcnow(), locked_until=None, last_error=DISCARDED)
        .execution_options(synchronize_session=False)
    )
    return cast(CursorResult, session.execute(statement)).rowcount == 1


def queue_stats(session: DbSession, now: datetime | None = None) -> dict:
    """What an operator watches: due, scheduled, running and dead jobs, and how long the oldest due
    job has waited. Each figure is read along its own partial index, never the done jobs."""
    now = now or utcnow()
    queued, running, dead = sa.text(QUEUED_ONLY), sa.text(RUNNING_ONLY), sa.text(DEAD_ONLY)

    def count(condition):
        return sa.select(sa.func.count()).select_from(Job).where(condition).scalar_subquery()

    oldest_due = sa.select(sa.func.min(Job.run_at)).where(queued & (Job.run_at <= now)).scalar_subquery()
    due, scheduled, running_now, dead_now, oldest = session.execute(
        sa.select(
            count(queued & (Job.run_at <= now)),
            count(queued & (Job.run_at > now)),
            count(running),
            count(dead),
            oldest_due,
        )
    ).one()
    return {
        "due": due,
        "scheduled": scheduled,
        "running": running_now,
        "dead": dead_now,
        "oldest_due_age_s": round(age_seconds(oldest, now), 3),
    }


def age_seconds(moment: datetime | str | None, now: datetime) -> float:
    if moment is None:
        return 0.0
    if isinstance(moment, str):  # SQLite returns aggregates untyped
        moment = datetime.fromisoformat(moment)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=now.tzinfo)
    return max(0.0, (now - moment).total_seconds())
