"""SQLite's writers of one process take turns before its lock (models/sqlite_writes.py): a waiting
writer goes on as soon as the one ahead ends its transaction, reads never wait, and a turn is never
kept past the transaction that took it (commit, rollback, a failed statement, close, a fork)."""

from __future__ import annotations

import os
import sqlite3
import threading

import pytest
import sqlalchemy as sa

from models import engine_options, sqlite_writes
from models.sqlite_writes import SerialWriterConnection


@pytest.fixture
def path(tmp_path):
    database = str(tmp_path / "turns.db")
    with connect(database) as setup:
        setup.execute("PRAGMA journal_mode=WAL")
        setup.execute("CREATE TABLE t (x INTEGER)")
    return database


def connect(database: str) -> SerialWriterConnection:
    connection = sqlite3.connect(database, factory=SerialWriterConnection, check_same_thread=False)
    assert isinstance(connection, SerialWriterConnection)
    return connection


def rows(database: str) -> list[int]:
    with connect(database) as reader:
        return [x for (x,) in reader.execute("SELECT x FROM t ORDER BY rowid")]


def test_a_second_writer_waits_for_the_first_to_commit_then_writes(path):
    first, second = connect(path), connect(path)
    second.execute("PRAGMA busy_timeout=0")  # at SQLite's own lock it would fail at once
    first.execute("INSERT INTO t VALUES (1)")
    waiting, wrote = threading.Event(), threading.Event()

    def write_after() -> None:
        waiting.set()
        second.execute("INSERT INTO t VALUES (2)")
        wrote.set()
        second.commit()

    writer = threading.Thread(target=write_after)
    writer.start()
    waiting.wait()
    assert not wrote.wait(0.2)  # it waits on the turn while the first holds it
    first.commit()
    writer.join(timeout=5)
    assert not writer.is_alive()
    assert rows(path) == [1, 2]


def test_reads_do_not_wait_for_a_writer(path):
    writer, reader = connect(path), connect(path)
    writer.execute("INSERT INTO t VALUES (1)")
    answer: list = []
    thread = threading.Thread(target=lambda: answer.append(reader.execute("SELECT count(*) FROM t").fetchone()))
    thread.start()
    thread.join(timeout=5)
    assert answer == [(0,)]  # WAL: the committed state, while the write goes on
    writer.rollback()


@pytest.mark.parametrize("end", ["commit", "rollback", "close"])
def test_the_turn_is_given_back_when_the_transaction_ends(path, end):
    first = connect(path)
    first.execute("INSERT INTO t VALUES (1)")
    assert first.in_transaction
    getattr(first, end)()
    second = connect(path)
    second.execute("INSERT INTO t VALUES (2)")  # would wait for the turn, then fail, if it were kept
    second.commit()
    assert rows(path)[-1] == 2


def test_a_failed_write_outside_a_transaction_gives_the_turn_back(path):
    first = connect(path)
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        first.execute("INSERT INTO missing VALUES (1)")
    assert not first.in_transaction
    second = connect(path)
    second.execute("INSERT INTO t VALUES (1)")
    second.commit()


def test_a_write_inside_a_transaction_keeps_the_turn_after_an_error_until_rollback(path, monkeypatch):
    monkeypatch.setattr(sqlite_writes, "BUSY_TIMEOUT_MS", 50)
    first, second = connect(path), connect(path)
    first.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        first.execute("INSERT INTO missing VALUES (1)")
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        second.execute("INSERT INTO t VALUES (2)")  # as SQLite says when its own wait runs out
    first.rollback()
    second.execute("INSERT INTO t VALUES (2)")
    second.commit()
    assert rows(path) == [2]


def test_a_forked_child_is_not_left_a_turn_a_thread_of_its_parent_held(path):
    # Held without a connection: SQLite's own state must not cross a fork, the process's turns may.
    turn = sqlite_writes.turn_of(sqlite_writes.database_key(path))
    turn.acquire()
    try:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                child = connect(path)
                child.execute("PRAGMA busy_timeout=0")
                child.execute("INSERT INTO t VALUES (2)")
                child.commit()
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
    finally:
        turn.release()
    assert os.waitstatus_to_exitcode(status) == 0
    assert rows(path) == [2]


def test_the_service_engine_on_sqlite_writes_through_turns(path):
    engine = sa.create_engine(f"sqlite:///{path}", **engine_options(f"sqlite:///{path}"))
    with engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO t VALUES (7)"))
        assert isinstance(connection.connection.driver_connection, SerialWriterConnection)
    engine.dispose()
    assert rows(path) == [7]


def test_an_in_memory_database_has_no_turn_to_share():
    first = sqlite3.connect(":memory:", factory=SerialWriterConnection)
    first.execute("CREATE TABLE t (x INTEGER)")
    first.execute("INSERT INTO t VALUES (1)")
    second = sqlite3.connect(":memory:", factory=SerialWriterConnection)
    second.execute("CREATE TABLE t (x INTEGER)")  # a database of its own: it does not wait for the first
    second.commit()
    first.commit()
