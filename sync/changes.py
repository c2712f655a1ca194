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

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from functools import partial
from typing import Any, cast

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
from models.base import utcnow
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


@dataclass(frozen=True)
class Entry:
    """One object in a page: its kind, the id the API shows it by, and, unless removed, the object
    and its parent's Pluggy id where the API shows one (a transaction's or bill's account, a
    movement's investment)."""

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


def read_changes(session: DbSession, after: Position, limit: int, *, user_id: int | None = None) -> FeedPage:
    """The next `limit` changes after `after` (one user's, or everyone's). `session` must read one
    snapshot throughout (models.database.read_snapshot)."""
    if after != START and after.position < pruned_before(session):
        raise CursorExpired
    statement = (
        sa.select(Change)
        .where(sa.tuple_(Change.position, Change.id) > sa.tuple_(sa.literal(after.position), sa.literal(after.id)))
        .order_by(Change.position, Change.id)
        .limit(limit + 1)
    )
    horizon = settled_below(session)
    if horizon is not None:
        statement = statement.where(Change.position < horizon)
    if user_id is not None:
        statement = statement.where(Change.user_id == user_id)
    rows = list(session.scalars(statement))
    page = rows[:limit]
    live = live_objects(session, page)
    entries = [entry for change in page if (entry := entry_of(change, live.get((change.kind, change.key)), after))]
    last = Position(page[-1].position, page[-1].id) if page else after
    return FeedPage(entries, last, has_more=len(rows) > limit)


def settled_below(session: DbSession) -> int | None:
    """PostgreSQL: the oldest transaction still running; every position below it is final. None on
    SQLite, where a write holds the database until it commits."""
    if session.get_bind().dialect.name != "postgresql":
        return None
    return session.scalar(sa.text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"))


def pruned_before(session: DbSession) -> int:
    return session.scalar(sa.select(ChangeClock.pruned_before).where(ChangeClock.id == 1)) or 0


def entry_of(change: Change, found: tuple[Any, str | None] | None, after: Position) -> Entry | None:
    kind = ChangeKind(change.kind)
    new_to_reader = change.added_position is not None and Position(change.added_position, change.id) > after
    if found is None:
        # First appeared after the reader's position and gone already: the reader never had it.
        return None if new_to_reader else Entry(EntryState.REMOVED, kind, change.key, change.connection_id)
    state = EntryState.ADDED if new_to_reader else EntryState.MODIFIED
    return Entry(state, kind, change.key, change.connection_id, found[0], found[1])


Found = dict[tuple[str, str], tuple[Any, str | None]]


def live_objects(session: DbSession, changes: list[Change]) -> Found:
    """The objects the API serves among these changes, by (kind, key), with their parent's id."""
    keys: dict[str, list[str]] = {}
    for change in changes:
        keys.setdefault(change.kind, []).append(change.key)
    found: Found = {}
    for kind, wanted in keys.items():
        for key, obj, parent in LOADERS[ChangeKind(kind)](session, wanted):
            found[(kind, key)] = (obj, parent)
    return found


def served_connection(*conditions: Any) -> Any:
    return sa.and_(Connection.deleted_at.is_(None), *conditions)


def load_connections(session: DbSession, keys: list[str]) -> Iterable[tuple[str, Any, str | None]]:
    ids = [int(key) for key in keys]
    for connection in session.scalars(sa.select(Connection).where(Connection.id.in_(ids), served_connection())):
        yield str(connection.id), connection, None


def load_rows(model: Any, session: DbSession, keys: list[str]) -> Iterable[tuple[str, Any, str | None]]:
    """A kind shown without a parent's id (accounts, investments, loans): its served rows."""
    statement = sa.select(model).join(Connection).where(model.pluggy_id.in_(keys), served_connection())
    if "deleted_at" in model.__table__.c:
        statement = statement.where(model.deleted_at.is_(None))
    for row in session.scalars(statement):
        yield row.pluggy_id, row, None


def load_transactions(session: DbSession, keys: list[str]) -> Iterable[tuple[str, Any, str | None]]:
    statement = (
        sa.select(Transaction, Account.pluggy_id)
        .join(Account, Transaction.account_id == Account.id)
        .join(Connection, Account.connection_id == Connection.id)
        .where(Transaction.pluggy_id.in_(keys), Transaction.deleted_at.is_(None), served_connection())
    )
    for transaction, account_id in session.execute(statement):
        yield transaction.pluggy_id, transaction, account_id


def load_bills(session: DbSession, keys: list[str]) -> Iterable[tuple[str, Any, str | None]]:
    statement = (
        sa.select(Bill, Account.pluggy_id)
        .join(Account, Bill.account_id == Account.id)
        .join(Connection, Bill.connection_id == Connection.id)
        .where(Bill.pluggy_id.in_(keys), served_connection())
    )
    for bill, account_id in session.execute(statement):
        yield bill.pluggy_id, bill, account_id


def load_investment_transactions(session: DbSession, keys: list[str]) -> Iterable[tuple[str, Any, str | None]]:
    statement = (
        sa.select(InvestmentTransaction, Investment.pluggy_id)
        .join(Investment, InvestmentTransaction.investment_id == Investment.id)
        .join(Connection, InvestmentTransaction.connection_id == Connection.id)
        .where(
            InvestmentTransaction.pluggy_id.in_(keys),
            InvestmentTransaction.deleted_at.is_(None),
            Investment.deleted_at.is_(None),
            served_connection(),
        )
    )
    for movement, investment_id in session.execute(statement):
        yield movement.pluggy_id, movement, investment_id


def load_identities(session: DbSession, keys: list[str]) -> Iterable[tuple[str, Any, str | None]]:
    ids = [int(key) for key in keys]
    statement = sa.select(Identity).join(Connection).where(Identity.connection_id.in_(ids), served_connection())
    for identity in session.scalars(statement):
        yield str(identity.connection_id), identity, None


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
KEYS: dict[ChangeKind, tuple[type, Any]] = {
    ChangeKind.CONNECTION: (Connection, sa.cast(Connection.id, sa.String)),
    ChangeKind.ACCOUNT: (Account, Account.pluggy_id),
    ChangeKind.TRANSACTION: (Transaction, Transaction.pluggy_id),
    ChangeKind.BILL: (Bill, Bill.pluggy_id),
    ChangeKind.INVESTMENT: (Investment, Investment.pluggy_id),
    ChangeKind.INVESTMENT_TRANSACTION: (InvestmentTransaction, InvestmentTransaction.pluggy_id),
    ChangeKind.IDENTITY: (Identity, sa.cast(Identity.connection_id, sa.String)),
    ChangeKind.LOAN: (Loan, Loan.pluggy_id),
}


def prune_removed(session: DbSession, *, before: Any) -> int:
    """Delete the change rows of objects whose rows no longer exist, last changed before `before`,
    and move the horizon past them."""
    gone = sa.or_(
        *(sa.and_(Change.kind == kind, ~sa.exists().where(key == Change.key)) for kind, (_, key) in KEYS.items())
    )
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
