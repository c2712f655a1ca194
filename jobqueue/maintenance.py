"""The queue's own periodic job: forgetting jobs that finished long ago."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from models import Job, JobStatus
from models.base import utcnow
from models.database import DbSession

from .queue import enqueue
from .registry import JobContext, JobRegistry

PRUNE_JOBS = "prune_jobs"
KINDS = (PRUNE_JOBS,)
PRUNE_EVERY = timedelta(hours=1)
KEEP_FINISHED_JOBS = timedelta(days=7)


def register(registry: JobRegistry) -> None:
    registry.register(PRUNE_JOBS, prune_jobs)
    registry.at_start(queue_prune)


def queue_prune(session: DbSession, *, after: timedelta = timedelta(0)) -> int:
    # One key for the periodic job: every worker may ask for it, only one is ever queued.
    return enqueue(session, PRUNE_JOBS, key="periodic:prune_jobs", run_at=utcnow() + after)


def prune_jobs(context: JobContext) -> None:
    """Delete jobs that finished long ago (dead ones stay until retried), then come back later."""
    context.session.execute(
        sa.delete(Job).where(Job.status == JobStatus.DONE, Job.finished_at < utcnow() - KEEP_FINISHED_JOBS)
    )
    queue_prune(context.session, after=PRUNE_EVERY)
    context.session.commit()
