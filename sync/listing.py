"""Reading what the service stores, for the API: a user's connections, accounts, transactions, runs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa

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


def accounts(session: DbSession, connection: Connection) -> list[Account]:
    return list(session.scalars(sa.select(Account).where(Account.connection_id == connection.id).order_by(Account.id)))


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


def transactions_page(
    session: DbSession, connection: Connection, filters: TransactionFilter, *, page: int, page_size: int
) -> tuple[list[tuple[Transaction, str]], int]:
    """One page of the connection's transactions, newest first, with each one's Pluggy account id,
    and the total that match."""
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
    total = session.execute(sa.select(sa.func.count()).select_from(statement.subquery())).scalar_one()
    rows = session.execute(
        statement.order_by(Transaction.date.desc(), Transaction.id.desc())
        .limit(page_size)
        .offset((page - 1) * page_size)
    ).all()
    return [(transaction, account_id) for transaction, account_id in rows], total


def bills_page(
    session: DbSession, connection: Connection, *, account: Account | None, page: int, page_size: int
) -> tuple[list[tuple[Bill, str]], int]:
    """One page of the connection's bills, newest due first, with each one's Pluggy account id,
    and the total."""
    statement = (
        sa.select(Bill, Account.pluggy_id)
        .join(Account, Bill.account_id == Account.id)
        .where(Bill.connection_id == connection.id)
    )
    if account is not None:
        statement = statement.where(Bill.account_id == account.id)
    total = session.execute(sa.select(sa.func.count()).select_from(statement.subquery())).scalar_one()
    rows = session.execute(
        statement.order_by(Bill.due_date.desc(), Bill.id.desc()).limit(page_size).offset((page - 1) * page_size)
    ).all()
    return [(bill, account_id) for bill, account_id in rows], total


def bill_by_pluggy_id(session: DbSession, connection: Connection, pluggy_id: str) -> tuple[Bill, str] | None:
    """One of the connection's bills by Pluggy's id, with its Pluggy account id; another
    connection's is as absent as a missing one, and so is an id no Pluggy id can be (too long, or
    with a control character, which PostgreSQL would refuse)."""
    if not 0 < len(pluggy_id) <= 64 or any(ord(c) < 0x20 or ord(c) == 0x7F for c in pluggy_id):
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


def investments_page(
    session: DbSession, connection: Connection, *, page: int, page_size: int
) -> tuple[list[Investment], int]:
    """One page of the connection's live investments, in the order they were first stored, and how
    many there are."""
    live = sa.select(Investment).where(Investment.connection_id == connection.id, Investment.deleted_at.is_(None))
    total = session.execute(sa.select(sa.func.count()).select_from(live.subquery())).scalar_one()
    found = session.scalars(live.order_by(Investment.id).limit(page_size).offset((page - 1) * page_size))
    return list(found), total


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
    session: DbSession, investment: Investment, *, include_deleted: bool, page: int, page_size: int
) -> tuple[list[InvestmentTransaction], int]:
    """One page of an investment's movements, newest first, and how many match."""
    statement = sa.select(InvestmentTransaction).where(InvestmentTransaction.investment_id == investment.id)
    if not include_deleted:
        statement = statement.where(InvestmentTransaction.deleted_at.is_(None))
    total = session.execute(sa.select(sa.func.count()).select_from(statement.subquery())).scalar_one()
    found = session.scalars(
        statement.order_by(InvestmentTransaction.date.desc(), InvestmentTransaction.id.desc())
        .limit(page_size)
        .offset((page - 1) * page_size)
    )
    return list(found), total


def identity(session: DbSession, connection: Connection) -> Identity | None:
    return session.scalars(sa.select(Identity).where(Identity.connection_id == connection.id)).one_or_none()


def loans_page(
    session: DbSession, connection: Connection, *, include_deleted: bool, page: int, page_size: int
) -> tuple[list[Loan], int]:
    """One page of the connection's loans, by contract date (newest first), and the total."""
    statement = sa.select(Loan).where(Loan.connection_id == connection.id)
    if not include_deleted:
        statement = statement.where(Loan.deleted_at.is_(None))
    total = session.execute(sa.select(sa.func.count()).select_from(statement.subquery())).scalar_one()
    rows = session.scalars(
        statement.order_by(Loan.contract_date.desc().nulls_last(), Loan.id.desc())
        .limit(page_size)
        .offset((page - 1) * page_size)
    )
    return list(rows), total
