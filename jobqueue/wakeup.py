"""Waking idle workers as soon as a job is queued, rather than at their next look at the queue.

PostgreSQL: whoever queues a job due now sends `NOTIFY` in the same transaction (delivered on
commit, dropped on rollback), and each worker process `LISTEN`s on a connection of its own.
SQLite: a worker process watches `PRAGMA data_version`, which changes whenever another connection
commits. Either way the poll interval stays as the fallback, for jobs scheduled later and for a
listener that lost its connection; the listener outlives database errors, logging once when it stops
hearing and once when it hears again, and counting each in the workers' database error metric.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

import psycopg
import sqlalchemy as sa

from models.database import DbSession
from observability import metrics

log = logging.getLogger(__name__)

CHANNEL = "pluggy_sync_jobs"
SQLITE_WATCH_INTERVAL_S = 0.05  # a pragma read on a local file: cheap enough to ask often
LISTEN_RETRY_S = 5.0


def notify(session: DbSession) -> None:
    """Tell listening workers a job is due; sent when the caller's transaction commits."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.select(sa.func.pg_notify(CHANNEL, "")))


class Wakeup:
    """A doorbell for one worker process: `wait` returns when a job may be due, or at the timeout."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.stopping = threading.Event()
        self.bell = threading.Event()
        self.thread: threading.Thread | None = None
        self.deaf = False  # lost its connection (or its reads fail): the workers poll meanwhile

    def start(self) -> None:
        target: Callable[..., None]
        args: tuple[Any, ...]
        if self.engine.dialect.name == "postgresql":
            target, args = self.listen, ()
        else:
            # The version is first read here, so that a commit made once start() returns is seen.
            connection = self.engine.raw_connection()
            target, args = self.watch_sqlite, (connection, data_version(connection))
        self.thread = threading.Thread(target=target, args=args, name="wakeup", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.ring()

    def wait(self, timeout: float) -> None:
        self.bell.wait(timeout)
        # Cleared after waking, never before claiming: a ring that comes in between is kept.
        self.bell.clear()

    def ring(self) -> None:
        self.bell.set()

    def listen(self) -> None:
        conninfo = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while not self.stopping.is_set():
            try:
                with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as connection:
                    connection.execute(f"LISTEN {CHANNEL}")
                    self.hearing()
                    self.ring()  # anything queued while nobody listened
                    while not self.stopping.is_set():
                        for _ in connection.notifies(timeout=1.0, stop_after=1):
                            self.ring()
            except psycopg.Error as exc:
                self.not_hearing(exc)
                self.stopping.wait(LISTEN_RETRY_S)
            except Exception:
                log.exception("the listener for new jobs failed; polling until it reconnects")
                self.stopping.wait(LISTEN_RETRY_S)

    def watch_sqlite(self, connection, seen: int) -> None:
        try:
            while not self.stopping.wait(SQLITE_WATCH_INTERVAL_S):
                try:
                    version = data_version(connection)
                except sqlite3.Error as exc:
                    self.not_hearing(exc)
                    continue
                self.hearing()
                if version != seen:
                    seen = version
                    self.ring()
        finally:
            connection.close()

    def not_hearing(self, exc: Exception) -> None:
        metrics.WORKER_DATABASE_ERRORS.inc()
        if not self.deaf:
            log.warning("not listening for new jobs (%s); polling until it works again", type(exc).__name__)
        self.deaf = True

    def hearing(self) -> None:
        if self.deaf:
            log.info("listening for new jobs again")
        self.deaf = False


def data_version(connection) -> int:
    cursor = connection.cursor()
    try:
        return cursor.execute("PRAGMA data_version").fetchone()[0]
    finally:
        cursor.close()
