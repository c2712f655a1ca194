"""The change feed: what changed since a reader's position, over everything the API serves.

The triggers of models/change.py keep one change row per object, moved past every reader's position
each time the object changes. A page is the next rows in (position, id) order, each answered with
the object as it is now:
- `added` when it first appeared after the reader's position;
- `modified` when the reader may have it already (one deleted and created again, too);
- `removed` when the API no longer serves it (deleted, tombstoned, or under a deleted connection)
  and the reader may have it.
A reader that follows the positions to the end therefore holds exactly what the API serves, however
the writers interleave. Entries of removed objects are pruned after CHANGE_FEED_RETENTION_DAYS; a
position from before the last prune is expired (the reader starts over).
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from functools import cache, partial
from typing import Any, NamedTuple, cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult

from jobqueue import dialect_insert
from models import (
    Account,
    Bill,
    Change,
    ChangeClock,
    ChangeKind,
    Connection,
    Identity,
    Investment,
    InvestmentTransaction,
    Loan,
    Transaction,
)
from models.base import BuiltJSON, utcnow
from models.database import DbSession

from .job_context import SyncJobContext
from .scheduling import queue_changes_pruning

PRUNE_EVERY = timedelta(hours=6)


class EntryState(StrEnum):
    ADDED = "added"
    MODIFIED = "modified"
    REMOVED = "removed"


@dataclass(frozen=True, order=True)
class Position:
    """Where a reader is: after the change row at (`position`, `id`)."""

    position: int
    id: int


START = Position(0, 0)


class Entry(NamedTuple):
    """One object in a page: its kind, the id the API shows it by, and, unless removed, the object
    and its parent's Pluggy id where the API shows one (a transaction's or bill's account, a
    movement's investment). The object is its table's row read as a plain row (`plain_rows`: the
    model's attribute names, no ORM object), except a connection's: its model, which its
    serialiser's helpers take. A named tuple: a page makes hundreds, and a frozen dataclass takes
    several times as long to make."""

    state: EntryState
    kind: ChangeKind
    key: str
    connection_id: int
    found: Any = None
    parent_id: str | None = None


@dataclass(frozen=True)
class FeedPage:
    entries: list[Entry]
    next: Position
    has_more: bool


class CursorExpired(Exception):
    """The reader's position is older than the pruned entries: it may have missed a removal."""


# A page is read as plain rows, not ORM objects: building those was half of a page's time.
CHANGE_COLUMNS = (Change.id, Change.kind, Change.key, Change.connection_id, Change.position, Change.added_position)


def read_changes(session: DbSession, after: Position, limit: int, *, user_id: int | None = None) -> FeedPage:
    """The next `limit` changes after `after` (one user's, or everyone's). `session` must read one
    snapshot throughout (models.database.read_snapshot)."""
    if after != START and after.position < pruned_before(session):
        raise CursorExpired
    statement = (
        sa.select(*CHANGE_COLUMNS)
        .where(sa.tuple_(Change.position, Change.id) > sa.tuple_(sa.literal(after.position), sa.literal(after.id)))
        .order_by(Change.position, Change.id)
        .limit(limit + 1)
    )
    horizon = settled_below(session)
    if horizon is not None:
        statement = statement.where(Change.position < horizon)
    if user_id is not None:
        statement = statement.where(Change.user_id == user_id)
    rows = plain_rows(session.connection().execute(statement))
    page = rows[:limit]
    live = live_objects(session, page)
    entries = [
        entry
        for change in page
        if (entry := entry_of(change, live.get((change.kind, change.key, change.connection_id)), after))
    ]
    last = Position(page[-1].position, page[-1].id) if page else after
    return FeedPage(entries, last, has_more=len(rows) > limit)


@cache
def row_type(fields: tuple[str, ...]) -> Any:
    return namedtuple("FeedRow", fields)


def plain_rows(result: sa.Result) -> list[Any]:
    """The result's rows as named tuples: a SQLAlchemy row answers an attribute ten times slower,
    and the serialisers read twenty-odd of each."""
    make = row_type(tuple(result.keys()))._make
    return [make(row) for row in result.all()]


def settled_below(session: DbSession) -> int | None:
    """PostgreSQL: the oldest transaction still running; every position below it is final. None on
    SQLite, where a write holds the database until it commits."""
    if session.get_bind().dialect.name != "postgresql":
        return None
    return session.scalar(sa.text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"))


def pruned_before(session: DbSession) -> int:
    return session.scalar(sa.select(ChangeClock.pruned_before).where(ChangeClock.id == 1)) or 0


def entry_of(change: Any, found: tuple[Any, str | None] | None, after: Position) -> Entry | None:
    kind = KINDS[change.kind]
    # As Position's order, without making one a row.
    new_to_reader = change.added_position is not None and (change.added_position, change.id) > (
        after.position,
        after.id,
    )
    if found is None:
        # First appeared after the reader's position and gone already: the reader never had it.
        return None if new_to_reader else Entry(EntryState.REMOVED, kind, change.key, change.connection_id)
    state = EntryState.ADDED if new_to_reader else EntryState.MODIFIED
    return Entry(state, kind, change.key, change.connection_id, found[0], found[1])


KINDS = {kind.value: kind for kind in ChangeKind}  # faster than ChangeKind(value), once a row

Found = dict[tuple[str, str, int], tuple[Any, str | None]]


def live_objects(session: DbSession, changes: Sequence[Any]) -> Found:
    """The objects the API serves among these changes, by (kind, key, their connection's id), with
    their parent's id. An entry is served only the object of its own connection: Pluggy's ids can
    collide across items, and the entry of one user's removed object must not show another user's
    object that has its id now."""
    keys: dict[str, list[str]] = {}
    for change in changes:
        keys.setdefault(change.kind, []).append(change.key)
    found: Found = {}
    for kind, wanted in keys.items():
        for key, obj, parent in LOADERS[ChangeKind(kind)](session, wanted):
            owner = obj.id if kind == ChangeKind.CONNECTION else obj.connection_id
            found[(kind, key, owner)] = (obj, parent)
    return found


def served_connection(*conditions: Any) -> Any:
    return sa.and_(Connection.deleted_at.is_(None), *conditions)


def load_connections(session: DbSession, keys: list[str]) -> Iterable[tuple[str, Any, str | None]]:
    ids = [int(key) for key in keys]
    for connection in session.scalars(sa.select(Connection).where(Connection.id.in_(ids), served_connection())):
        yield str(connection.id), connection, None


def load_rows(model: Any, session: DbSession, keys: list[str]) -> Iterable[tuple[str, Any, str | None]]:
    """A kind shown without a parent's id (accounts, investments, loans): its served rows."""
    statement = sa.select(model.__table__).join(Connection).where(model.pluggy_id.in_(keys), served_connection())
    if "deleted_at" in model.__table__.c:
        statement = statement.where(model.deleted_at.is_(None))
    for row in plain_rows(session.connection().execute(statement)):
        yield row.pluggy_id, row, None


def load_transactions(session: DbSession, keys: list[str]) -> Iterable[tuple[str, Any, str | None]]:
    statement = transactions_statement(session.get_bind().dialect.name)
    for row in plain_rows(session.connection().execute(statement, {"keys": keys})):
        yield row.pluggy_id, row, row.account_pluggy_id


# What transaction_json does not show, left unread (`raw` is read cut down to SHOWN_TRANSACTION_RAW).
UNSHOWN_TRANSACTION_COLUMNS = frozenset({"raw", "created_at", "updated_at"})
# The members of a transaction's raw payload that transaction_json shows.
SHOWN_TRANSACTION_RAW = ("paymentData", "creditCardMetadata", "merchant")


@cache
def transactions_statement(dialect: str) -> sa.Select:
    """Served transactions by Pluggy id (`keys`, expanding): each one's row with its account's
    Pluggy id and connection, and its restatement links' Pluggy ids, under the names the model gives them too
    (`replaces_pluggy_id`, `replaced_by_pluggy_id`), and `raw` cut down to what the API shows.
    Built once: building it (its aliases' columns) took a few microseconds a row."""
    replaces, replaced_by = Transaction.__table__.alias("replaces"), Transaction.__table__.alias("replaced_by")
    return (
        sa.select(
            *(column for column in Transaction.__table__.c if column.name not in UNSHOWN_TRANSACTION_COLUMNS),
            shown_raw(dialect, Transaction.raw, SHOWN_TRANSACTION_RAW).label("raw"),
            Account.pluggy_id.label("account_pluggy_id"),
            Account.connection_id.label("connection_id"),
            replaces.c.pluggy_id.label("replaces_pluggy_id"),
            replaced_by.c.pluggy_id.label("replaced_by_pluggy_id"),
        )
        .join(Account, Transaction.account_id == Account.id)
        .join(Connection, Account.connection_id == Connection.id)
        .outerjoin(replaces, replaces.c.id == Transaction.replaces_id)
        .outerjoin(replaced_by, replaced_by.c.id == Transaction.replaced_by_id)
        .where(
            Transaction.pluggy_id.in_(sa.bindparam("keys", expanding=True)),
            Transaction.deleted_at.is_(None),
            served_connection(),
        )
    )


def shown_raw(dialect: str, raw: Any, members: tuple[str, ...]) -> Any:
    """A raw payload cut down by the database to `members` (null where it has none, as `.get` reads
    it): decoding the whole payload in Python was a fifth of a page's time. SQLite's `->` answers a
    member's JSON as stored, which json_object takes as JSON; the result is read by orjson."""
    postgresql = dialect == "postgresql"
    pairs = []
    for member in members:
        # Our own constants, written into the SQL: PostgreSQL cannot type a bound key of `->`.
        path = f"'{member}'" if postgresql else f"'$.\"{member}\"'"
        pairs += [sa.literal_column(f"'{member}'"), raw.op("->")(sa.literal_column(path))]
    build = sa.func.jsonb_build_object if postgresql else sa.func.json_object
    return sa.type_coerce(build(*pairs), BuiltJSON())


def load_bills(session: DbSession, keys: list[str]) -> Iterable[tuple[str, Any, str | None]]:
    statement = (
        sa.select(Bill.__table__, Account.pluggy_id.label("account_pluggy_id"))
        .join(Account, Bill.account_id == Account.id)
        .join(Connection, Bill.connection_id == Connection.id)
        .where(Bill.pluggy_id.in_(keys), served_connection())
    )
    for row in plain_rows(session.connection().execute(statement)):
        yield row.pluggy_id, row, row.account_pluggy_id


def load_investment_transactions(session: DbSession, keys: list[str]) -> Iterable[tuple[str, Any, str | None]]:
    statement = (
        sa.select(InvestmentTransaction.__table__, Investment.pluggy_id.label("investment_pluggy_id"))
        .join(Investment, InvestmentTransaction.investment_id == Investment.id)
        .join(Connection, InvestmentTransaction.connection_id == Connection.id)
        .where(
            InvestmentTransaction.pluggy_id.in_(keys),
            InvestmentTransaction.deleted_at.is_(None),
            Investment.deleted_at.is_(None),
            served_connection(),
        )
    )
    for row in plain_rows(session.connection().execute(statement)):
        yield row.pluggy_id, row, row.investment_pluggy_id


def load_identities(session: DbSession, keys: list[str]) -> Iterable[tuple[str, Any, str | None]]:
    ids = [int(key) for key in keys]
    statement = (
        sa.select(Identity.__table__).join(Connection).where(Identity.connection_id.in_(ids), served_connection())
    )
    for row in plain_rows(session.connection().execute(statement)):
        yield str(row.connection_id), row, None


LOADERS: dict[ChangeKind, Callable[[DbSession, list[str]], Iterable[tuple[str, Any, str | None]]]] = {
    ChangeKind.CONNECTION: load_connections,
    ChangeKind.ACCOUNT: partial(load_rows, Account),
    ChangeKind.TRANSACTION: load_transactions,
    ChangeKind.BILL: load_bills,
    ChangeKind.INVESTMENT: partial(load_rows, Investment),
    ChangeKind.INVESTMENT_TRANSACTION: load_investment_transactions,
    ChangeKind.IDENTITY: load_identities,
    ChangeKind.LOAN: partial(load_rows, Loan),
}


def prune_changes(context: SyncJobContext) -> None:
    """Forget the entries of objects deleted longer ago than the retention, and raise the horizon
    past them; then come back later."""
    retention = timedelta(days=context.settings.change_feed_retention_days)
    prune_removed(context.session, before=utcnow() - retention)
    queue_changes_pruning(context.session, after=PRUNE_EVERY)
    context.session.commit()


# Each kind's model and the column (as text) its change rows are keyed by.
KEYS: dict[ChangeKind, tuple[Any, Any]] = {
    ChangeKind.CONNECTION: (Connection, sa.cast(Connection.id, sa.String)),
    ChangeKind.ACCOUNT: (Account, Account.pluggy_id),
    ChangeKind.TRANSACTION: (Transaction, Transaction.pluggy_id),
    ChangeKind.BILL: (Bill, Bill.pluggy_id),
    ChangeKind.INVESTMENT: (Investment, Investment.pluggy_id),
    ChangeKind.INVESTMENT_TRANSACTION: (InvestmentTransaction, InvestmentTransaction.pluggy_id),
    ChangeKind.IDENTITY: (Identity, sa.cast(Identity.connection_id, sa.String)),
    ChangeKind.LOAN: (Loan, Loan.pluggy_id),
}


def still_there(kind: ChangeKind) -> sa.Exists:
    """Whether an entry of `kind` names an object that still exists in the entry's connection:
    another connection's object under the same Pluggy id is not it."""
    model, key = KEYS[kind]
    there = sa.exists().where(key == Change.key)
    if kind in (ChangeKind.CONNECTION, ChangeKind.IDENTITY):
        return there  # keyed by the connection's own id
    if model is Transaction:
        return there.where(Account.id == Transaction.account_id, Account.connection_id == Change.connection_id)
    return there.where(model.connection_id == Change.connection_id)


def prune_removed(session: DbSession, *, before: Any) -> int:
    """Delete the change rows of objects whose rows no longer exist, last changed before `before`,
    and move the horizon past them."""
    gone = sa.or_(*(sa.and_(Change.kind == kind, ~still_there(kind)) for kind in KEYS))
    doomed = sa.and_(Change.changed_at < before, gone)
    highest = session.scalar(sa.select(sa.func.max(Change.position)).where(doomed))
    if highest is None:
        return 0
    deleted = cast(CursorResult, session.execute(sa.delete(Change).where(doomed))).rowcount
    raise_horizon(session, highest + 1)
    return deleted


def raise_horizon(session: DbSession, pruned_before: int) -> None:
    insert = dialect_insert(session)(ChangeClock).values(id=1, value=0, pruned_before=pruned_before)
    session.execute(
        insert.on_conflict_do_update(
            index_elements=[ChangeClock.id],
            set_={"pruned_before": insert.excluded.pruned_before},
            where=ChangeClock.pruned_before < insert.excluded.pruned_before,
        )
    )
