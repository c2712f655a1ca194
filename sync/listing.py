"""Reading what the service stores, for the API: a user's connections, accounts, transactions, runs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa

from models import OPEN_SYNC_STATUSES, Account, Connection, Identity, Loan, SyncRun, Transaction, User
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
    if not filters.include_deleted:
        statement = statement.where(Transaction.deleted_at.is_(None))
    total = session.execute(sa.select(sa.func.count()).select_from(statement.subquery())).scalar_one()
    rows = session.execute(
        statement.order_by(Transaction.date.desc(), Transaction.id.desc())
        .limit(page_size)
        .offset((page - 1) * page_size)
    ).all()
    return [(transaction, account_id) for transaction, account_id in rows], total


def start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


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
