from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, one_of, partial_index, utcnow
from .transaction import BigId


class JobStatus(StrEnum):
    QUEUED = "queued"  # due at run_at
    RUNNING = "running"  # leased by a worker until locked_until
    DONE = "done"
    DEAD = "dead"  # gave up: every attempt failed; `flask jobs retry` queues it again


JOB_STATUSES = tuple(JobStatus)
LIVE_JOB_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)
# Written out, not bound: PostgreSQL matches an ON CONFLICT target to a partial index by its text.
QUEUED_ONLY = "status = 'queued'"
RUNNING_ONLY = "status = 'running'"
DEAD_ONLY = "status = 'dead'"
DONE_ONLY = "status = 'done'"


DEFAULT_MAX_ATTEMPTS = 8


class Job(Base):
    """A unit of work in the queue that lives in the database itself."""

    __tablename__ = "jobs"
    __table_args__ = (
        sa.CheckConstraint(one_of("status", JOB_STATUSES), name="status"),
        # The claim reads queued jobs in (run_at, id) order and stops at the first free one;
        # done jobs never bloat it.
        partial_index("ix_jobs_queued_run_at_id", "run_at", "id", where=QUEUED_ONLY),
        # While a job with a key is queued, a new request with that key joins it.
        partial_index("uq_jobs_queued_key", "key", where=QUEUED_ONLY, unique=True),
        # Two jobs of one item never run at once, whichever workers claim them.
        partial_index("uq_jobs_running_item_id", "item_id", where=RUNNING_ONLY, unique=True),
        # A claim also takes back running jobs whose lease ran out (their worker died).
        partial_index("ix_jobs_running_locked_until", "locked_until", where=RUNNING_ONLY),
        # Health checks and metrics count dead jobs without reading the done ones.
        partial_index("ix_jobs_dead_id", "id", where=DEAD_ONLY),
        # The operator console lists one kind's jobs: dead or done ones newest first, queued ones in
        # the order a worker takes them. Partial: SQLite would count running and dead jobs by
        # scanning a covering (kind, status, id) index rather than their own partial indexes.
        partial_index("ix_jobs_dead_kind_id", "kind", "id", where=DEAD_ONLY),
        partial_index("ix_jobs_done_kind_id", "kind", "id", where=DONE_ONLY),
        partial_index("ix_jobs_queued_kind_run_at_id", "kind", "run_at", "id", where=QUEUED_ONLY),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(64))
    payload: Mapped[dict] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(sa.String(16), default=JobStatus.QUEUED)
    key: Mapped[str | None] = mapped_column(sa.String(255))
    item_id: Mapped[str | None] = mapped_column(sa.String(64))
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    max_attempts: Mapped[int] = mapped_column(default=DEFAULT_MAX_ATTEMPTS, server_default=str(DEFAULT_MAX_ATTEMPTS))
    run_at: Mapped[datetime] = mapped_column(default=utcnow)
    locked_by: Mapped[str | None] = mapped_column(sa.String(255))
    locked_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.kind} {self.status} attempts={self.attempts}>"
