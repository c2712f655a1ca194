"""Upserting a page of transaction rows: insert the new ones, update the changed ones.

SQLite steps one `INSERT ... ON CONFLICT DO UPDATE`, compiled once, over the rows. PostgreSQL
COPYs the rows it does not hold yet straight into the table, and the others into a temporary table
to upsert from in one statement: psycopg takes longer to parse a statement with thousands of placeholders
than the server takes to run it, a prepared statement per row costs the server an executor start
per row, and COPY costs the server least of all (binary COPY, which also spares both sides the
text conversions).

A row never changes owner: a stored row of another account with the same Pluggy id (ids that
collide across items) is refused, neither written nor counted as created or updated.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import psycopg
import sqlalchemy as sa
from psycopg.types.json import set_json_dumps
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from models import Transaction
from models.base import UTCDateTime, dump_json
from models.change import record_new_transactions

TABLE = Transaction.__table__
# Columns an upsert never overwrites: identity, owner, first-seen time, and our own sync state and links.
KEEP_ON_UPDATE = {
    "id",
    "pluggy_id",
    "connection_id",
    "account_id",
    "created_at",
    "transactions_watermark",
    "last_synced_at",
    "replaces_id",  # restatement links (sync/restatements.py)
    "replaced_by_id",
}
STAGING = "incoming_transactions"


class Written(NamedTuple):
    created: int
    updated: int
    refused: int  # stored under another account: left as they are


def upsert_transactions(connection: Connection, rows: list[dict]) -> Written:
    """Write rows of one account stamped with one `created_at`, no two with the same pluggy_id.
    Answers how many were inserted, how many updated (rows that did not change are not written)
    and how many refused."""
    if connection.dialect.name == "postgresql":
        return upsert_through_staging(connection, rows)
    return upsert_in_sqlite(connection, rows)


def upsert_in_sqlite(connection: Connection, rows: list[dict]) -> Written:
    # One JSON array parameter instead of hundreds of placeholders.
    known: dict[str, int] = dict(
        connection.execute(
            sa.text(
                f"SELECT pluggy_id, account_id FROM {TABLE.name} WHERE pluggy_id IN (SELECT value FROM json_each(:ids))"
            ),
            {"ids": dump_json([row["pluggy_id"] for row in rows])},
        ).all()
    )
    foreign = sum(1 for account_id in known.values() if account_id != rows[0]["account_id"])
    sql, columns = sqlite_upsert(tuple(rows[0]), connection.dialect)
    driver = connection.connection.driver_connection
    assert driver is not None, "a connection in use is never detached from its driver's"
    cursor = driver.cursor()
    try:
        cursor.executemany(
            sql, [[process(row[name]) if process else row[name] for name, process in columns] for row in rows]
        )
        written = cursor.rowcount
    finally:
        cursor.close()
    new = [row["pluggy_id"] for row in rows if row["pluggy_id"] not in known]
    record_new_transactions(connection, rows[0]["account_id"], sqlite_ids(connection, new))
    return Written(len(new), written - len(new), foreign)


def sqlite_ids(connection: Connection, pluggy_ids: list[str]) -> list[tuple[int, str]]:
    """The row id of each of these stored Pluggy ids."""
    if not pluggy_ids:
        return []
    statement = f"SELECT id, pluggy_id FROM {TABLE.name} WHERE pluggy_id IN (SELECT value FROM json_each(:ids))"
    return [
        (row_id, key) for row_id, key in connection.execute(sa.text(statement), {"ids": dump_json(pluggy_ids)}).all()
    ]


@functools.cache
def sqlite_upsert(names: tuple[str, ...], dialect) -> tuple[str, list]:
    """The upsert's SQL, and in its parameter order each column with its type's bind processor, so
    that sqlite3 steps the statement over plain lists: SQLAlchemy's handling of each row's
    parameters would take longer than SQLite's own work on it."""
    insert = sqlite.insert(TABLE).values({name: sa.bindparam(name, type_=TABLE.c[name].type) for name in names})
    compiled = upsert(insert).compile(dialect=dialect)
    columns = [(name, bind_processor(TABLE.c[name].type, dialect)) for name in compiled.positiontup]
    return str(compiled), columns


def bind_processor(column_type: sa.types.TypeEngine, dialect):
    processor = column_type.dialect_impl(dialect).bind_processor(dialect)
    if processor is not None and isinstance(column_type, UTCDateTime):
        # A page's rows share their stamps and most of their dates: each value is formatted once.
        return functools.lru_cache(maxsize=4096)(processor)
    return processor


def upsert_through_staging(connection: Connection, rows: list[dict]) -> Written:
    ids = [row["pluggy_id"] for row in rows]
    owners = stored_owners(connection, ids)
    new = with_new_ids(connection, [row for row in rows if row["pluggy_id"] not in owners])
    if new and not copy_new_rows(connection, new):
        # Someone else stored some of them meanwhile: look again, and upsert the lot.
        return upsert_ours(connection, rows, stored_owners(connection, ids))
    record_new_transactions(connection, rows[0]["account_id"], [(row["id"], row["pluggy_id"]) for row in new])
    written = upsert_ours(connection, [row for row in rows if row["pluggy_id"] in owners], owners)
    return written._replace(created=written.created + len(new))


def upsert_ours(connection: Connection, rows: list[dict], owners: dict[str, int]) -> Written:
    """Upsert the rows that are not stored under another account, and refuse the others."""
    ours = [row for row in rows if owners.get(row["pluggy_id"], row["account_id"]) == row["account_id"]]
    created, updated = upsert_staged(connection, ours) if ours else (0, 0)
    return Written(created, updated, len(rows) - len(ours))


def upsert_staged(connection: Connection, rows: list[dict]) -> tuple[int, int]:
    names = list(rows[0])
    staging = copy_rows(connection, STAGING, rows)
    insert = postgresql.insert(TABLE).from_select(names, sa.select(*(staging.c[name] for name in names)))
    # created_at is never overwritten, so a written row that carries this page's stamp is new.
    written = connection.execute(upsert(insert).returning(TABLE.c.id, TABLE.c.pluggy_id, TABLE.c.created_at)).all()
    created = [(row_id, pluggy_id) for row_id, pluggy_id, stamp in written if stamp == rows[0]["created_at"]]
    record_new_transactions(connection, rows[0]["account_id"], created)
    return len(created), len(written) - len(created)


def stored_owners(connection: Connection, ids: list[str]) -> dict[str, int]:
    """The account of each of these Pluggy ids that is stored."""
    wanted = sa.bindparam("ids", ids, type_=postgresql.ARRAY(sa.String))
    owners = sa.select(TABLE.c.pluggy_id, TABLE.c.account_id).where(TABLE.c.pluggy_id == sa.any_(wanted))
    return dict(connection.execute(owners).all())


def with_new_ids(connection: Connection, rows: list[dict]) -> list[dict]:
    """The rows with ids taken from the table's sequence, for COPY to write and the change log to
    name them by (COPY answers no ids). The sequence is named, not looked up: looking it up for each
    id took four times as long as taking them."""
    if not rows:
        return rows
    ids = connection.execute(
        sa.text(f"SELECT array_agg(nextval('{TABLE.name}_id_seq')) FROM generate_series(1, :count)"),
        {"count": len(rows)},
    ).scalar_one()
    return [{"id": row_id, **row} for row_id, row in zip(ids, rows, strict=True)]


def copy_new_rows(connection: Connection, rows: list[dict]) -> bool:
    """COPY rows straight into the table. False, with nothing written, if one was there already."""
    try:
        with connection.begin_nested():
            copy_rows(connection, TABLE.name, rows)
    except psycopg.errors.UniqueViolation:
        return False
    return True


def copy_rows(connection: Connection, table_name: str, rows: list[dict]) -> sa.TableClause:
    names = list(rows[0])
    driver = connection.connection.driver_connection
    assert driver is not None, "a connection in use is never detached from its driver's"
    cursor = driver.cursor()
    if table_name == STAGING:
        # Per connection, emptied at each commit; IF NOT EXISTS as a rollback also undoes its creation.
        cursor.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGING} (LIKE {TABLE.name} INCLUDING DEFAULTS) "
            "ON COMMIT DELETE ROWS"
        )
    set_json_dumps(dump_json, cursor)
    with cursor.copy(f"COPY {table_name} ({', '.join(names)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(column_types(tuple(names)))
        for row in rows:
            copy.write_row(list(row.values()))
    return sa.table(table_name, *(sa.column(name) for name in names))


@functools.cache
def column_types(names: tuple[str, ...]) -> list[str]:
    """PostgreSQL's name of each column's type ("numeric", "timestamp with time zone"), which
    binary COPY needs to choose its dumpers."""
    dialect = postgresql.dialect()
    return [TABLE.c[name].type.compile(dialect).split("(")[0].lower() for name in names]


def upsert(insert):
    """ON CONFLICT (pluggy_id) DO UPDATE, only where the row changed (a re-read writes nothing) and
    is stored under the same account (whatever raced the look at who owns what)."""
    changed = sa.and_(
        TABLE.c.account_id == insert.excluded.account_id,
        sa.or_(TABLE.c.raw.is_distinct_from(insert.excluded.raw), TABLE.c.deleted_at.is_not(None)),
    )
    return insert.on_conflict_do_update(
        index_elements=[TABLE.c.pluggy_id], set_=updatable(insert, TABLE), where=changed
    )


def updatable(insert, table: sa.Table) -> dict:
    """What an upsert takes from the incoming row: everything Pluggy says, nothing of ours."""
    return {column.name: insert.excluded[column.name] for column in table.columns if column.name not in KEEP_ON_UPDATE}
