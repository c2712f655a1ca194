"""The database every layer shares: Flask-SQLAlchemy's `db` and Flask-Migrate's extension, created
unbound here and attached by the app factory, and how connections to each engine are set up."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeAlias

from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, scoped_session

from .base import Base, dump_json

db = SQLAlchemy(model_class=Base)
migrate = Migrate(render_as_batch=True, compare_type=True)

# What the service layer and the queue take as `session`: the app hands them `db.session`, a
# scoped_session that proxies the current Session (a Flask-SQLAlchemy subclass, hence Any), and
# tests and scripts may hand them a plain Session. Both offer the same methods.
DbSession: TypeAlias = Session | scoped_session[Any]


def engine_options(database_uri: str) -> dict[str, Any]:
    # A refused statement's parameters are personal data (an identity's CPF, a payer's name): its
    # error, which reaches logs and jobs.last_error, says the SQL without them.
    options: dict[str, Any] = {"json_serializer": dump_json, "hide_parameters": True}
    if database_uri.startswith("postgresql"):
        # Every outbound call has a timeout, the database included; pre-ping survives server restarts.
        options.update(pool_pre_ping=True, connect_args={"connect_timeout": 5})
    return options


@contextmanager
def read_snapshot(engine: Engine) -> Iterator[Session]:
    """A session whose reads all see one committed state of the database, whatever commits
    meanwhile: REPEATABLE READ on PostgreSQL; on SQLite an explicit BEGIN (the driver would begin a
    transaction only before a write, leaving each read its own)."""
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            connection = connection.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        else:
            connection.exec_driver_sql("BEGIN")
        with Session(bind=connection) as session:
            yield session
        connection.rollback()


@event.listens_for(Engine, "connect")
def configure_sqlite(dbapi_connection: Any, connection_record: Any) -> None:
    """SQLite has two writers here (web and worker): WAL and a busy timeout let them take turns,
    and foreign keys must be switched on for ON DELETE rules to hold."""
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
