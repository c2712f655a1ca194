"""The worker: claims jobs from the database queue and runs the handlers its registry names.

Any number of worker processes (and threads, with --concurrency) can share one queue. SIGTERM or
Ctrl-C stops claiming and lets the jobs in hand finish; a second one releases them back to the
queue at their next checkpoint.

A worker thread outlives a lost or locked database, and any other error around its jobs: it rolls
back, logs (a database outage once), backs off and tries again. A thread that ends any other way
stops the whole worker, which then says so (`flask worker` exits 1), so a supervisor restarts it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import timedelta

import psycopg
import sqlalchemy as sa
from flask import Flask

from models import JobStatus, db
from models.database import DbSession
from observability import logs, metrics

from . import queue
from .queue import ClaimedJob, JobOutcome
from .registry import JobContext, JobRegistry
from .wakeup import Wakeup

log = logging.getLogger(__name__)

# How long a thread waits after an error, at most: the first wait is the poll interval, then twice
# as long each time.
MAX_BACKOFF_S = 30.0
DATABASE_ERRORS = (
    sa.exc.DBAPIError,
    sa.exc.DisconnectionError,
    sa.exc.TimeoutError,
    sa.exc.PendingRollbackError,
    psycopg.Error,
    sqlite3.Error,
)


class RetryLater(Exception):
    """A handler asks to run again later without it counting as a failed attempt."""

    def __init__(self, after_seconds: float, reason: str = "") -> None:
        super().__init__(reason)
        self.after_seconds = after_seconds
        self.reason = reason


class Released(Exception):
    """The worker is shutting down: the job goes back to the queue untouched."""


class LeaseLost(Exception):
    """Another worker took the job over (our lease expired): leave its state to that worker."""


class FailureNotRecorded(Exception):
    """A job's handler failed and the database would not take the failed attempt (it was gone)."""

    def __init__(self, job: ClaimedJob, error: str) -> None:
        super().__init__(error)
        self.job = job
        self.error = error


class WorkerThreadDied(Exception):
    """A worker thread ended for a reason it could not ride out; the worker stopped."""


class Worker:
    def __init__(
        self,
        app: Flask,
        registry: JobRegistry,
        *,
        concurrency: int = 1,
        poll_interval: float = 1.0,
        wake: bool = True,
        lease: timedelta = queue.DEFAULT_LEASE,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self.registry = registry
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.wake = wake
        self.lease = lease
        self.progress = progress or (lambda message: log.info("%s", message))
        self.stopping = threading.Event()
        self.releasing = threading.Event()
        self.wakeup: Wakeup | None = None
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.outage = DatabaseOutage()
        self.threads: list[threading.Thread] = []
        self.died: list[str] = []

    # Running -------------------------------------------------------------------------------

    def run(self, *, burst: bool = False) -> None:
        """Work until stopped (or, with burst, until nothing is due). Raises MissingHandlers before
        anything runs if a kind that can be queued has no handler, and WorkerThreadDied if a thread
        ended abnormally (which stops the others)."""
        self.registry.check()
        self.schedule_periodic_jobs()
        if self.wake and not burst:
            self.wakeup = self.start_wakeup()
        restore = self.install_signal_handlers()
        self.threads = [
            threading.Thread(target=self.loop, args=(f"{self.name}:{n}", burst), name=f"worker-{n}")
            for n in range(self.concurrency)
        ]
        try:
            for thread in self.threads:
                thread.start()
            for thread in self.threads:
                while thread.is_alive():
                    thread.join(timeout=0.5)  # wake up for signals
        finally:
            if self.wakeup is not None:
                self.wakeup.stop()
            restore()
        if self.died:
            raise WorkerThreadDied(f"worker thread(s) {', '.join(self.died)} ended abnormally; the worker stopped")

    def start_wakeup(self) -> Wakeup:
        with self.app.app_context():
            wakeup = Wakeup(db.engine)
        wakeup.start()
        return wakeup

    def schedule_periodic_jobs(self) -> None:
        with self.app.app_context():
            for hook in self.registry.start_hooks:
                hook(db.session)
            db.session.commit()

    def loop(self, worker_id: str, burst: bool) -> None:
        """One worker thread. Should it end other than by a stop request or a finished burst, the
        other threads stop too: a supervisor restarting the whole process does better than a
        worker left running with fewer threads than it was given."""
        try:
            with self.app.app_context():
                self.work(worker_id, burst)
        except BaseException:
            log.critical("worker thread %s ended abnormally; stopping the worker", worker_id, exc_info=True)
            self.died.append(worker_id)
            self.stopping.set()
            if self.wakeup is not None:
                self.wakeup.ring()

    def work(self, worker_id: str, burst: bool) -> None:
        backoff = Backoff(self.poll_interval, MAX_BACKOFF_S)
        unrecorded: FailureNotRecorded | None = None
        while not self.stopping.is_set():
            try:
                if unrecorded is not None:
                    self.record_late(db.session, unrecorded)
                    unrecorded = None
                worked = self.run_one(db.session, worker_id)
            except FailureNotRecorded as lost:
                unrecorded = lost
                self.ride_out(lost.__cause__ or lost, backoff)
                continue
            except Exception as exc:
                # A job whose outcome (done, postponed) could not be written is left as it is: its
                # lease runs out and a claim takes it back like any job of a worker that died.
                self.ride_out(exc, backoff)
                continue
            self.outage.over()
            backoff.reset()
            if not worked:
                if burst:
                    return
                self.idle()

    def ride_out(self, exc: BaseException, backoff: Backoff) -> None:
        """Leave the session clean for the next try, say what happened, and wait (a stop request
        cuts the wait short). A broken connection is dropped with the session; the pool hands out
        a fresh one once the database is back (PostgreSQL pings it first)."""
        discard(db.session)
        if isinstance(exc, DATABASE_ERRORS):
            self.outage.error(exc)
        else:
            log.error("unexpected error in the worker loop; backing off", exc_info=exc)
        self.stopping.wait(backoff.next())

    def record_late(self, session: DbSession, lost: FailureNotRecorded) -> None:
        """The failed attempt the database would not take when the handler failed. Written only
        while the job is still ours: if its lease ran out and another worker took it, nothing is
        (and if the worker stops first, the job is left to its lease)."""
        job = lost.job
        with logs.scope(job_id=job.id, job_kind=job.kind, item_id=job.item_id):
            outcome = self.record_failure(session, job, lost.error)
            if outcome == JobOutcome.DEAD:
                self.close_what_it_owned(session, job, lost.error)
            logs.event(
                log, "job", logging.WARNING, outcome=outcome, attempt=job.attempts, error=lost.error, recorded_late=True
            )

    def record_failure(
        self, session: DbSession, job: ClaimedJob, error: str, retry_after: float | None = None
    ) -> JobOutcome:
        """A failed attempt: FAILED (to be retried) or DEAD. FailureNotRecorded if the database
        would not take it, for the thread to write it once the database is back."""
        try:
            session.rollback()
            return queue.fail(session, job, error, retry_after=retry_after)
        except DATABASE_ERRORS as exc:
            raise FailureNotRecorded(job, error) from exc

    def close_what_it_owned(self, session: DbSession, job: ClaimedJob, error: str) -> None:
        for hook in self.registry.dead_hooks:
            hook(session, job, error)

    def idle(self) -> None:
        """Wait for a job: until woken, or the poll interval passes, or a stop is asked for."""
        if self.wakeup is None:
            self.stopping.wait(self.poll_interval)
        else:
            self.wakeup.wait(self.poll_interval)

    def run_one(self, session: DbSession, worker_id: str, *, item_id: str | None = None) -> bool:
        """Claim and run one job. False when no job was due."""
        job = queue.claim(session, worker_id, lease=self.lease, item_id=item_id)
        if job is None:
            return False
        self.execute(session, job)
        return True

    def execute(self, session: DbSession, job: ClaimedJob) -> None:
        """Run one claimed job to an outcome, under its ids in every log line it causes, and
        finish with one line and one duration sample for it. A job that goes dead closes what it
        owned."""
        started = time.monotonic()
        with logs.scope(job_id=job.id, job_kind=job.kind, item_id=job.item_id):
            if job.taken_back:
                logs.event(log, "job taken back", logging.WARNING, attempt=job.attempts, reason="its lease ran out")
            outcome, error = self.outcome_of(session, job)
            if outcome == JobOutcome.DEAD:
                self.close_what_it_owned(session, job, error or "gave up")
            seconds = time.monotonic() - started
            metrics.JOB_DURATION.labels(job.kind, outcome).observe(seconds)
            level = (
                logging.WARNING
                if outcome in (JobOutcome.FAILED, JobOutcome.DEAD, JobOutcome.LEASE_LOST)
                else logging.INFO
            )
            logs.event(
                log,
                "job",
                level,
                outcome=outcome,
                attempt=job.attempts,
                duration_ms=round(seconds * 1000, 1),
                error=error,
            )

    def outcome_of(self, session: DbSession, job: ClaimedJob) -> tuple[JobOutcome, str | None]:
        if job.attempts > job.max_attempts:
            error = "gave up: its worker kept disappearing"
            queue.finish(session, job, status=JobStatus.DEAD, error=error)
            return JobOutcome.DEAD, error
        handler = self.registry.handler_for(job.kind)
        if handler is None:
            error = f"no handler for job kind {job.kind!r}"
            queue.finish(session, job, status=JobStatus.DEAD, error=error)
            return JobOutcome.DEAD, error
        context = JobContext(job, session, self.progress, self.checkpoint_for(job))
        try:
            handler(context)
        except RetryLater as wait:
            session.rollback()
            queue.postpone(session, job, wait.after_seconds, wait.reason)
            return JobOutcome.RETRY, None
        except Released:
            session.rollback()
            queue.postpone(session, job, 0, "released by a stopping worker")
            return JobOutcome.RELEASED, None
        except LeaseLost:
            session.rollback()
            return JobOutcome.LEASE_LOST, "another worker took the job over"
        except Exception as exc:
            # An error that says when to come back (Pluggy's rate limit has `retry_after`) is
            # retried no sooner; it is expected, so it gets no traceback.
            retry_after = getattr(exc, "retry_after", None)
            if not hasattr(exc, "retry_after"):
                log.exception("job %s (%s) failed", job.id, job.kind)
            return self.record_failure(session, job, describe(exc), retry_after), describe(exc)
        queue.complete(session, job)
        return JobOutcome.DONE, None

    def checkpoint_for(self, job: ClaimedJob) -> Callable[..., None]:
        """Called by long handlers between committed steps: keeps the lease, honours a hard stop,
        and, after a step that changed something, forgives the attempts earlier crashes spent, so a
        job that resumes from its committed work loses attempts only while it makes no progress."""
        last_extended = time.monotonic()

        def checkpoint(progressed: bool = False) -> None:
            nonlocal last_extended
            if self.releasing.is_set():
                raise Released()
            if progressed and job.attempts > 1:
                with db.engine.begin() as connection:
                    queue.forgive_attempts(connection, job)
            if time.monotonic() - last_extended < self.lease.total_seconds() / 3:
                return
            with db.engine.begin() as connection:
                if not queue.extend_lease(connection, job, self.lease):
                    raise LeaseLost()
            last_extended = time.monotonic()

        return checkpoint

    # Stopping ------------------------------------------------------------------------------

    def request_stop(self) -> None:
        if self.stopping.is_set():
            log.warning("second stop request: releasing the jobs in hand")
            self.releasing.set()
        else:
            log.info("stopping: finishing the jobs in hand (signal again to release them)")
            self.stopping.set()
            if self.wakeup is not None:
                self.wakeup.ring()

    def install_signal_handlers(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
        for sig in previous:
            signal.signal(sig, lambda *_: self.request_stop())

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore


def describe(exc: Exception) -> str:
    """An error as stored (jobs.last_error, an event's) and logged. A database error is only its
    first line: PostgreSQL's DETAIL after it repeats the row's values (a failing row's CPF)."""
    if isinstance(exc, sa.exc.DBAPIError):
        lines = str(exc.orig).strip().splitlines()
        return f"{type(exc).__name__}: {lines[0] if lines else ''}"
    return f"{type(exc).__name__}: {exc}"


def summary(exc: BaseException) -> str:
    """A database error's class and first line, without the SQL and parameters SQLAlchemy adds."""
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0] if lines else ''}"[:200]


def discard(session: DbSession) -> None:
    # A connection that is gone: close() hands it back to the pool, which drops it.
    with contextlib.suppress(*DATABASE_ERRORS):
        session.rollback()
    session.close()


class Backoff:
    """Waits that double from `first` up to `cap`, until reset."""

    def __init__(self, first: float, cap: float) -> None:
        self.first = first
        self.cap = cap
        self.current = first

    def next(self) -> float:
        wait = self.current
        self.current = min(self.cap, self.current * 2)
        return wait

    def reset(self) -> None:
        self.current = self.first


class DatabaseOutage:
    """What a worker's threads see of the database: every error is counted, the first of an
    outage is logged, and so is the first success after it, with how long it lasted."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started: float | None = None
        self.errors = 0

    def error(self, exc: BaseException) -> None:
        metrics.WORKER_DATABASE_ERRORS.inc()
        with self.lock:
            self.errors += 1
            first = self.started is None
            if first:
                self.started = time.monotonic()
        if first:
            logs.event(log, "database unavailable", logging.WARNING, error=summary(exc), then="backing off, retrying")

    def over(self) -> None:
        if self.started is None:
            return
        with self.lock:
            if self.started is None:
                return
            seconds, errors = time.monotonic() - self.started, self.errors
            self.started, self.errors = None, 0
        logs.event(log, "database available again", logging.INFO, outage_s=round(seconds, 1), errors=errors)
