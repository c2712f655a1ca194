"""Faults as they happen to a running `flask worker` process, with jobs waiting: on PostgreSQL its
database cut (a TCP proxy on loopback closes every connection and refuses new ones), on SQLite its
database locked by another writer for longer than the busy timeout. The worker rides it out.
"""

from __future__ import annotations

import signal
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import sqlalchemy as sa

from harness.processes import killed_on_exit, reading
from harness.waiting import wait_until
from models import Connection, Job, Transaction
from models.base import utcnow
from sync import scheduling
from tests.tcp_proxy import CuttableProxy
from tests.test_processes import add_connection, flask

CONNECTIONS = 6
TRANSACTIONS = 3


class DatabaseCut:
    """PostgreSQL gone: the worker reaches it through a proxy that the test cuts. Jobs are queued
    during the cut, straight to the database, so their NOTIFY reaches no listener either."""

    def __init__(self, database_url: str) -> None:
        url = sa.engine.make_url(database_url)
        self.proxy = CuttableProxy(url.host or "127.0.0.1", url.port or 5432)
        self.worker_url = url.set(host="127.0.0.1", port=self.proxy.port).render_as_string(hide_password=False)

    @contextmanager
    def running(self) -> Iterator[DatabaseCut]:
        with self.proxy:
            yield self

    def begin(self, queue_jobs) -> None:
        self.proxy.cut()
        queue_jobs(due_in_s=0)

    def felt(self, output: list[str]) -> bool:
        """The worker met the cut and went on trying, backing off, for seconds: ten reconnections refused."""
        return logged(output, "database unavailable") and self.proxy.refused >= 10

    def end(self) -> None:
        self.proxy.restore()


class DatabaseLock:
    """SQLite held by another writer (the test, BEGIN EXCLUSIVE) longer than the worker's busy
    timeout. Nothing can be queued while it holds, so jobs are queued just before, due once it does."""

    def __init__(self, database_url: str) -> None:
        self.path = sa.engine.make_url(database_url).database
        self.worker_url = database_url
        self.holder: sqlite3.Connection | None = None

    @contextmanager
    def running(self) -> Iterator[DatabaseLock]:
        try:
            yield self
        finally:
            self.end()

    def begin(self, queue_jobs) -> None:
        queue_jobs(due_in_s=1)
        self.holder = sqlite3.connect(self.path, isolation_level=None, timeout=10)
        self.holder.execute("BEGIN EXCLUSIVE")

    def felt(self, output: list[str]) -> bool:
        return logged(output, "database unavailable")

    def end(self) -> None:
        if self.holder is not None:
            self.holder.execute("ROLLBACK")
            self.holder.close()
            self.holder = None


def fault_for(database_url: str) -> DatabaseCut | DatabaseLock:
    return DatabaseCut(database_url) if database_url.startswith("postgresql") else DatabaseLock(database_url)


def seen(condition, output: list[str], what: str, timeout: float = 20) -> None:
    """wait_until, failing with what the worker said."""
    try:
        wait_until(condition, timeout=timeout, what=what)
    except AssertionError as failure:
        raise AssertionError(f"{failure}; the worker said:\n{''.join(output)}") from None


def logged(output: list[str], message: str) -> bool:
    return any(message in line for line in list(output))


def first_syncs_queued(session, connections: list[Connection], due_in_s: float) -> None:
    ids = [scheduling.queue_initial_sync(session, connection) for connection in connections]
    later = utcnow() + timedelta(seconds=due_in_s)
    session.execute(sa.update(Job).where(Job.id.in_(ids)).values(run_at=later))
    session.commit()


def done(session, kind: str) -> bool:
    session.expire_all()
    statuses = session.scalars(sa.select(Job.status).where(Job.kind == kind)).all()
    return bool(statuses) and set(statuses) == {"done"}


def transactions(session) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(Transaction))


def test_a_worker_rides_out_a_lost_or_locked_database(app, session, user, served_pluggy, database_url):
    first, *others = [add_connection(session, user, served_pluggy, TRANSACTIONS) for _ in range(CONNECTIONS)]
    fault = fault_for(database_url)
    args = ("worker", "--concurrency", "2", "--poll-interval", "0.1")

    with (
        fault.running(),
        killed_on_exit(flask(fault.worker_url, served_pluggy.base_url, *args)) as worker,
        reading(worker) as output,
    ):
        first_syncs_queued(session, [first], due_in_s=0)
        seen(lambda: done(session, "initial_sync"), output, "the worker at work", timeout=30)
        # Two fetches must be in flight at once before any goes on: both threads work afterwards.
        both_threads = served_pluggy.hold("GET", "/v2/transactions", opens_at=2)

        fault.begin(lambda due_in_s: first_syncs_queued(session, others, due_in_s))
        seen(lambda: fault.felt(output), output, "the worker meeting the fault")
        fault.end()

        seen(lambda: done(session, "initial_sync"), output, "every first sync done")
        assert transactions(session) == CONNECTIONS * TRANSACTIONS
        assert both_threads.is_open
        assert worker.poll() is None, "".join(output)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, "".join(output)

    assert logged(output, "database available again"), "".join(output)
