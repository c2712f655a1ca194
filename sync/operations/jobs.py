"""The jobs page: the queue's jobs by state and kind, one job with its payload, and what an
operator may do to a job (retry it, retry every dead job of a kind, discard it).

Each state is listed in an order one of the `jobs` table's indexes serves, so a window is an
index range scan however many done jobs the table holds: due and scheduled jobs in the order a
worker takes them (run_at, id) along the queued jobs' partial index; running ones by when their
lease runs out; dead and done ones newest first. With a kind, `ix_jobs_queued_kind_run_at_id`,
`ix_jobs_dead_kind_id` and `ix_jobs_done_kind_id` (migration 0017) serve the same orders; a kind's
running jobs are found among the few running ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa

from jobqueue import queue_stats
from models import Job, JobStatus
from models.base import utcnow
from models.database import DbSession
from models.job import DEAD_ONLY, DONE_ONLY, QUEUED_ONLY, RUNNING_ONLY

from .. import giving_up
from ..jobs import job_kinds
from ..listing import Order, Slice, Window, read_window
from .redaction import redacted


class JobState(StrEnum):
    """What the jobs list is filtered by: a job's status, queued ones split by whether they are due."""

    DUE = "due"  # queued, run_at passed: waiting for a worker
    SCHEDULED = "scheduled"  # queued for later
    RUNNING = "running"
    DEAD = "dead"
    DONE = "done"


ORDERS = {
    JobState.DUE: Order("console-jobs-due", (Job.run_at, Job.id), descending=False),
    JobState.SCHEDULED: Order("console-jobs-scheduled", (Job.run_at, Job.id), descending=False),
    JobState.RUNNING: Order("console-jobs-running", (Job.locked_until, Job.id), descending=False),
    JobState.DEAD: Order("console-jobs-dead", (Job.id,)),
    JobState.DONE: Order("console-jobs-done", (Job.id,)),
}
# Literal SQL, so that SQLite sees the conditions of its partial indexes (as jobqueue.queue does).
STATUS_CONDITIONS = {
    JobState.DUE: QUEUED_ONLY,
    JobState.SCHEDULED: QUEUED_ONLY,
    JobState.RUNNING: RUNNING_ONLY,
    JobState.DEAD: DEAD_ONLY,
    JobState.DONE: DONE_ONLY,
}
ERROR_EXCERPT = 120


@dataclass(frozen=True)
class JobFilter:
    state: JobState = JobState.DUE
    kind: str | None = None  # one of sync.jobs.job_kinds()

    def scope(self) -> dict:
        """What a cursor of this list is bound to."""
        return {"state": str(self.state), "kind": self.kind}


def parse_filter(state: str | None, kind: str | None) -> JobFilter:
    """The filter a query string asks for; an unknown state or kind is ignored (the default)."""
    chosen = JobState(state) if state in set(JobState) else JobState.DUE
    return JobFilter(chosen, kind if kind in job_kinds() else None)


def order_of(filters: JobFilter) -> Order:
    return ORDERS[filters.state]


def jobs_page(session: DbSession, filters: JobFilter, window: Window, now: datetime | None = None) -> Slice:
    """A window of the jobs in a state (of one kind if given), each row (job,)."""
    now = now or utcnow()
    statement = sa.select(Job).where(sa.text(STATUS_CONDITIONS[filters.state]))
    if filters.state == JobState.DUE:
        statement = statement.where(Job.run_at <= now)
    elif filters.state == JobState.SCHEDULED:
        statement = statement.where(Job.run_at > now)
    if filters.kind is not None:
        statement = statement.where(Job.kind == filters.kind)
    return read_window(session, statement, order_of(filters), window)


def queue_figures(session: DbSession, now: datetime | None = None) -> dict:
    """The count of jobs in each state but done (those are not counted: they are most of the table)."""
    return queue_stats(session, now)


def find_job(session: DbSession, job_id: int) -> Job | None:
    return session.get(Job, job_id)


def short_error(error: str | None) -> str:
    """The first line of an error, cut to fit a table cell."""
    if not error:
        return ""
    first = error.strip().splitlines()[0] if error.strip() else ""
    return first if len(first) <= ERROR_EXCERPT else first[: ERROR_EXCERPT - 1] + "…"


# Payloads ---------------------------------------------------------------------------------------
#
# The sync layer's jobs carry ids only (connection, run, delivery, webhook event row), a trigger and
# an item or account id: never a credential, a token or an MFA value, which go to Pluggy in the
# request that asks for them and are not stored. A payload is still shown through `redacted`, so
# that a key that ever names a secret is hidden rather than shown.

# `parameters`: what a request to Pluggy for an item's MFA carries, were it ever queued.
PAYLOAD_SECRETS = frozenset({"parameter", "parameters"})


def shown_payload(payload: dict | None) -> dict:
    return redacted(payload or {}, also=PAYLOAD_SECRETS)


# Actions ----------------------------------------------------------------------------------------


class Outcome(StrEnum):
    DONE = "done"
    NOT_NOW = "not_now"  # the job is in a state the action does not apply to
    ALREADY_QUEUED = "already_queued"  # the same work is queued under its key


@dataclass(frozen=True)
class ActionResult:
    outcome: Outcome
    status: str  # the job's status when the action was asked for
    other_job_id: int | None = None  # ALREADY_QUEUED: the job that will do the work


RETRYABLE = (JobStatus.DEAD, JobStatus.QUEUED)


def retry_job(session: DbSession, job: Job) -> ActionResult:
    """Run a dead or waiting job as soon as a worker is free (`giving_up.retry`: a dead job with
    fresh attempts and its webhook events pending again)."""
    status = job.status
    if status not in RETRYABLE:
        return ActionResult(Outcome.NOT_NOW, status)
    if giving_up.retry(session, job):
        return ActionResult(Outcome.DONE, status)
    return ActionResult(Outcome.ALREADY_QUEUED, status, queued_job_with_key(session, job.key))


def queued_job_with_key(session: DbSession, key: str | None) -> int | None:
    if key is None:
        return None
    return session.scalar(sa.select(Job.id).where(sa.text(QUEUED_ONLY), Job.key == key))


def retry_dead_of_kind(session: DbSession, kind: str) -> list[int]:
    """Queue every dead job of a kind again; the ids of those that were."""
    return giving_up.retry_dead(session, kind)


def discard_job(session: DbSession, job: Job) -> ActionResult:
    """Give up a dead or waiting job for good (`giving_up.discard`); never a running one."""
    status = job.status
    if status not in RETRYABLE or not giving_up.discard(session, job):
        return ActionResult(Outcome.NOT_NOW, status)
    return ActionResult(Outcome.DONE, status)
