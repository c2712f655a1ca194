"""Reading what the service stores, for the API: a user's connections, accounts, transactions, runs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import InstrumentedAttribute

from models import (
    OPEN_SYNC_STATUSES,
    Account,
    Bill,
    Connection,
    Identity,
    Investment,
    InvestmentTransaction,
    Loan,
    SyncRun,
    Transaction,
    User,
)
from models.database import DbSession

from .values import fits_text_column


def user_connections(session: DbSession, user: User) -> list[Connection]:
    return list(
        session.scalars(
            sa.select(Connection)
            .where(Connection.user_id == user.id, Connection.deleted_at.is_(None))
            .order_by(Connection.id)
        )
    )


def user_connection(
    session: DbSession, user: User, *, connection_id: int | None = None, item_id: str | None = None
) -> Connection | None:
    """One of the user's live connections; another user's is as absent as a missing one."""
    statement = sa.select(Connection).where(Connection.user_id == user.id, Connection.deleted_at.is_(None))
    if connection_id is not None:
        statement = statement.where(Connection.id == connection_id)
    if item_id is not None:
        statement = statement.where(Connection.item_id == item_id)
    return session.scalars(statement).one_or_none()


def user_tombstone(session: DbSession, user: User, connection_id: int) -> Connection | None:
    """One of the user's deleted connections (kept as a tombstone); another user's is as absent."""
    return session.scalars(
        sa.select(Connection).where(
            Connection.user_id == user.id, Connection.id == connection_id, Connection.deleted_at.is_not(None)
        )
    ).one_or_none()


def open_runs(session: DbSession, connections: list[Connection]) -> dict[int, SyncRun]:
    """The open run of each connection that has one, in one query."""
    runs = session.scalars(
        sa.select(SyncRun).where(
            SyncRun.connection_id.in_([c.id for c in connections]), SyncRun.status.in_(OPEN_SYNC_STATUSES)
        )
    )
    return {run.connection_id: run for run in runs}


def account_by_pluggy_id(session: DbSession, connection: Connection, pluggy_id: str) -> Account | None:
    return session.scalars(
        sa.select(Account).where(Account.connection_id == connection.id, Account.pluggy_id == pluggy_id)
    ).one_or_none()


def sync_runs(session: DbSession, connection: Connection, limit: int = 50) -> list[SyncRun]:
    return list(
        session.scalars(
            sa.select(SyncRun)
            .where(SyncRun.connection_id == connection.id)
            .order_by(SyncRun.started_at.desc(), SyncRun.id.desc())
            .limit(limit)
        )
    )


@dataclass(frozen=True)
class TransactionFilter:
    account: Account | None = None
    date_from: date | None = None
    date_to: date | None = None
    status: str | None = None
    include_deleted: bool = False
    bill_id: str | None = None  # Pluggy's bill id: a card's rows of that bill


def transactions_page(session: DbSession, connection: Connection, filters: TransactionFilter, window: Window) -> Slice:
    """A window of the connection's transactions, newest first, each row (transaction, its Pluggy
    account id)."""
    statement = (
        sa.select(Transaction, Account.pluggy_id)
        .join(Account, Transaction.account_id == Account.id)
        .where(Account.connection_id == connection.id)
    )
    if filters.account is not None:
        statement = statement.where(Transaction.account_id == filters.account.id)
    if filters.date_from is not None:
        statement = statement.where(Transaction.date >= start_of(filters.date_from))
    if filters.date_to is not None and filters.date_to < date.max:  # the last day has no day after
        statement = statement.where(Transaction.date < start_of(filters.date_to + timedelta(days=1)))
    if filters.status is not None:
        statement = statement.where(Transaction.status == filters.status)
    if filters.bill_id is not None:
        statement = statement.where(Transaction.bill_id == filters.bill_id)
    if not filters.include_deleted:
        statement = statement.where(Transaction.deleted_at.is_(None))
    return read_window(session, statement, TRANSACTIONS, window)


def bills_page(session: DbSession, connection: Connection, *, account: Account | None, window: Window) -> Slice:
    """A window of the connection's bills, newest due first, each row (bill, its Pluggy account id)."""
    statement = (
        sa.select(Bill, Account.pluggy_id)
        .join(Account, Bill.account_id == Account.id)
        .where(Bill.connection_id == connection.id)
    )
    if account is not None:
        statement = statement.where(Bill.account_id == account.id)
    return read_window(session, statement, BILLS, window)


def bill_by_pluggy_id(session: DbSession, connection: Connection, pluggy_id: str) -> tuple[Bill, str] | None:
    """One of the connection's bills by Pluggy's id, with its Pluggy account id; another
    connection's is as absent as a missing one, and so is an id no Pluggy id can be (too long, or
    with a control character, which PostgreSQL would refuse)."""
    if not fits_text_column(pluggy_id, 64):
        return None
    row = session.execute(
        sa.select(Bill, Account.pluggy_id)
        .join(Account, Bill.account_id == Account.id)
        .where(Bill.connection_id == connection.id, Bill.pluggy_id == pluggy_id)
    ).one_or_none()
    return None if row is None else (row[0], row[1])


def bill_transactions(session: DbSession, bill: Bill) -> list[Transaction]:
    """The card's live rows that fall in the bill (their creditCardMetadata.billId), newest first."""
    return list(
        session.scalars(
            sa.select(Transaction)
            .where(
                Transaction.account_id == bill.account_id,
                Transaction.bill_id == bill.pluggy_id,
                Transaction.deleted_at.is_(None),
            )
            .order_by(Transaction.date.desc(), Transaction.id.desc())
        )
    )


def start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def investments_page(session: DbSession, connection: Connection, window: Window) -> Slice:
    """A window of the connection's live investments, in the order they were first stored."""
    live = sa.select(Investment).where(Investment.connection_id == connection.id, Investment.deleted_at.is_(None))
    return read_window(session, live, INVESTMENTS, window)


def live_investment(session: DbSession, connection: Connection, pluggy_id: str) -> Investment | None:
    """One of the connection's investments by Pluggy's id, unless Pluggy no longer lists it."""
    return session.scalars(
        sa.select(Investment).where(
            Investment.connection_id == connection.id,
            Investment.pluggy_id == pluggy_id,
            Investment.deleted_at.is_(None),
        )
    ).one_or_none()


def investment_transactions_page(
    session: DbSession, investment: Investment, *, include_deleted: bool, window: Window
) -> Slice:
    """A window of an investment's movements, newest first."""
    statement = sa.select(InvestmentTransaction).where(InvestmentTransaction.investment_id == investment.id)
    if not include_deleted:
        statement = statement.where(InvestmentTransaction.deleted_at.is_(None))
    return read_window(session, statement, INVESTMENT_TRANSACTIONS, window)


def identity(session: DbSession, connection: Connection) -> Identity | None:
    return session.scalars(sa.select(Identity).where(Identity.connection_id == connection.id)).one_or_none()


def loans_page(session: DbSession, connection: Connection, *, include_deleted: bool, window: Window) -> Slice:
    """A window of the connection's loans, by contract date (newest first, undated ones last)."""
    statement = sa.select(Loan).where(Loan.connection_id == connection.id)
    if not include_deleted:
        statement = statement.where(Loan.deleted_at.is_(None))
    return read_window(session, statement, LOANS, window)


def connections_page(session: DbSession, user: User, window: Window) -> Slice:
    """A window of the user's live connections, by id."""
    statement = sa.select(Connection).where(Connection.user_id == user.id, Connection.deleted_at.is_(None))
    return read_window(session, statement, CONNECTIONS, window)


def accounts_page(session: DbSession, connection: Connection, window: Window) -> Slice:
    """A window of the connection's accounts, by id."""
    return read_window(session, sa.select(Account).where(Account.connection_id == connection.id), ACCOUNTS, window)


def sync_runs_page(session: DbSession, connection: Connection, window: Window) -> Slice:
    """A window of the connection's sync runs, newest first."""
    return read_window(session, sa.select(SyncRun).where(SyncRun.connection_id == connection.id), SYNC_RUNS, window)


# Windows of a list ------------------------------------------------------------------------------
#
# Every list has one stable order, unique because its last column is the primary key. A window is
# either a numbered page (OFFSET, counted: what clients of `page` get) or the rows after a key, the
# last row's sort key of the window before (keyset: rows written meanwhile neither shift nor repeat
# what follows, and no COUNT is run). Each list's leading order column is indexed together with the
# column its lists are filtered by (connection, account or investment), so a keyset window is an
# index range scan.

Key = tuple[Any, ...]


@dataclass(frozen=True)
class Order:
    """A list's order: `columns` all descending or all ascending, the primary key last.
    `nulls_last`: the first column may be NULL, those rows come after every dated one."""

    name: str
    columns: tuple[InstrumentedAttribute, ...]
    descending: bool = True
    nulls_last: bool = False

    def key(self, row: Any) -> Key:
        return tuple(getattr(row, column.key) for column in self.columns)

    def order_by(self) -> list[sa.ColumnElement]:
        first, *rest = [column.desc() if self.descending else column.asc() for column in self.columns]
        return [first.nulls_last() if self.nulls_last else first, *rest]

    def after(self, key: Key) -> sa.ColumnElement[bool]:
        """The rows that come after the row whose key this is."""
        if self.nulls_last and key[0] is None:
            return sa.and_(self.columns[0].is_(None), self.beyond(self.columns[1:], key[1:]))
        beyond = self.beyond(self.columns, key)
        return sa.or_(beyond, self.columns[0].is_(None)) if self.nulls_last else beyond

    def beyond(self, columns: tuple[InstrumentedAttribute, ...], key: Key) -> sa.ColumnElement[bool]:
        # One row-value comparison, which both engines answer from an index on these columns.
        values = [sa.literal(value, type_=column.type) for column, value in zip(columns, key, strict=True)]
        left = columns[0] if len(columns) == 1 else sa.tuple_(*columns)
        right = values[0] if len(values) == 1 else sa.tuple_(*values)
        return left < right if self.descending else left > right


CONNECTIONS = Order("connections", (Connection.id,), descending=False)
ACCOUNTS = Order("accounts", (Account.id,), descending=False)
TRANSACTIONS = Order("transactions", (Transaction.date, Transaction.id))
BILLS = Order("bills", (Bill.due_date, Bill.id))
INVESTMENTS = Order("investments", (Investment.id,), descending=False)
INVESTMENT_TRANSACTIONS = Order("investment_transactions", (InvestmentTransaction.date, InvestmentTransaction.id))
LOANS = Order("loans", (Loan.contract_date, Loan.id), nulls_last=True)
SYNC_RUNS = Order("sync_runs", (SyncRun.started_at, SyncRun.id))


@dataclass(frozen=True)
class Window:
    """Which rows of a list: `size` of them (None: all), from numbered `page` if given (counted),
    else after the row whose key is `after` (from the start when None)."""

    size: int | None
    page: int | None = None
    after: Key | None = None


@dataclass(frozen=True)
class Slice:
    """The rows of a window (each a result row, the list's entity first), how many match over all
    pages (numbered pages only), and the key to continue after (None on the last page)."""

    rows: list[Any]
    total: int | None
    next_key: Key | None


def read_window(session: DbSession, statement: sa.Select, order: Order, window: Window) -> Slice:
    total = None
    if window.page is not None:
        total = session.execute(sa.select(sa.func.count()).select_from(statement.subquery())).scalar_one()
        if window.size is not None:
            statement = statement.offset((window.page - 1) * window.size)
    elif window.after is not None:
        statement = statement.where(order.after(window.after))
    statement = statement.order_by(*order.order_by())
    if window.size is not None:
        statement = statement.limit(window.size + 1)  # one more: whether there is a next page
    rows = list(session.execute(statement).all())
    if window.size is None or len(rows) <= window.size:
        return Slice(rows, total, None)
    rows = rows[: window.size]
    return Slice(rows, total, order.key(rows[-1][0]))
