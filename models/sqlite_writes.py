"""SQLite's writers take turns in the process before they reach its lock.

SQLite lets one connection write at a time. A connection that finds the write lock taken calls its
busy handler, which sleeps in growing steps (1, 2, 5, 10, 15, 20, 25 ms and on) and tries again, so
when the threads of a web process queue on the lock, each retry can oversleep the writer ahead of
it by up to a step: a p99 of tens of milliseconds for writes that hold the lock for about one.
Here a connection takes its database's turn, a lock shared by every connection of the process to
that file, before its transaction's first write, and gives it back when the transaction ends; a
waiting thread wakes the moment the turn is released. Other processes (the worker, a second web
process) still meet at SQLite's own lock, with one writer from this process among them at most.

The turn is taken by the DB-API connection itself (`sqlite3.connect(factory=...)`), so every
write is covered however it is sent: the ORM, Core, or the driver's cursor in `sync/bulk.py`.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Self

BUSY_TIMEOUT_MS = 5000

# Statements that may write, and so take the write lock: anything else is a read, which WAL lets
# run beside the writer. A `WITH` may end in either; it counts as a write to be safe.
WRITES = re.compile(r"\s*(insert|update|delete|replace|create|drop|alter|with|begin\s+(immediate|exclusive))\b", re.I)

_turns: dict[str, threading.Lock] = {}
_turns_guard = threading.Lock()


def turn_of(database: str) -> threading.Lock:
    with _turns_guard:
        return _turns.setdefault(database, threading.Lock())


def forget_turns() -> None:
    """A child forked while a thread of its parent held a turn would find it held forever."""
    _turns.clear()


os.register_at_fork(after_in_child=forget_turns)


def database_key(database: Any) -> str | None:
    """The file every connection to `database` shares, or None for a private in-memory database."""
    name = os.fsdecode(database)
    if name in ("", ":memory:"):
        return None
    if name.startswith("file:"):
        return name  # a URI: connections that name it alike share it
    return os.path.realpath(name)


class SerialWriterConnection(sqlite3.Connection):
    def __init__(self, database: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        key = database_key(database)
        self._turn = turn_of(key) if key is not None else None
        self._holds_turn = False

    def cursor(self, factory: Any = None) -> Any:
        return super().cursor(factory or SerialWriterCursor)

    # The driver's shortcuts make a plain cursor of their own: these go through ours.
    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> Any:
        return self.cursor().executemany(sql, seq_of_parameters)

    def executescript(self, sql_script: str, /) -> Any:
        return self.cursor().executescript(sql_script)

    @contextmanager
    def turn_for(self, statement: str) -> Iterator[None]:
        """The turn for a statement that may write, kept while its transaction lasts."""
        if self._turn is not None and not self._holds_turn and WRITES.match(statement):
            if not self._turn.acquire(timeout=BUSY_TIMEOUT_MS / 1000):
                raise sqlite3.OperationalError("database is locked")  # what SQLite says at its own timeout
            self._holds_turn = True
        try:
            yield
        finally:
            if not self.in_transaction:
                self.end_turn()

    def end_turn(self) -> None:
        if self._holds_turn:
            self._holds_turn = False
            assert self._turn is not None
            self._turn.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            if not self.in_transaction:
                self.end_turn()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            if not self.in_transaction:
                self.end_turn()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.end_turn()


class SerialWriterCursor(sqlite3.Cursor):
    connection: SerialWriterConnection

    def execute(self, sql: str, parameters: Any = (), /) -> Self:
        with self.connection.turn_for(sql):
            return super().execute(sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> Self:
        with self.connection.turn_for(sql):
            return super().executemany(sql, seq_of_parameters)

    def executescript(self, sql_script: str, /) -> sqlite3.Cursor:
        with self.connection.turn_for("CREATE"):  # a script may write anything
            return super().executescript(sql_script)
