"""Bringing an item's accounts and transactions into the database.

First sync of an account: everything dated inside the backfill window. Later syncs: what Pluggy
ingested since the watermark (`createdAtFrom`, backdated rows included), then the lookback window
Pluggy re-collects, which refreshes rows in place (PENDING -> POSTED) and reveals deletions: a live
row dated inside that fully read window that Pluggy no longer returns is tombstoned. Pages are
written as they arrive, one upsert per page (`bulk.py`) committed on its own while the next page is
already being fetched, so memory stays flat and a re-read that changes nothing writes nothing. The
watermark moves only after the rows are committed.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult

from config import Settings
from jobqueue import dialect_insert
from models import Account, Connection, SyncRun, Transaction
from models.base import utcnow
from models.database import DbSession
from observability import logs, metrics
from pluggy_client import PluggyClient

from . import consents, runs, values
from .bulk import updatable, upsert_transactions
from .products import ProductContext, read_products
from .restatements import link_restatements
from .rows import money, page_rows
from .rows import transaction_row as transaction_row  # where the benchmarks find it

# Rows Pluggy ingests while we page may carry a createdAt just before the newest we saw;
# starting the next read this much earlier catches them (re-reading costs nothing: upserts).
WATERMARK_OVERLAP = timedelta(hours=1)

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


def ignore(*_args, **_kwargs) -> None:
    pass


@dataclass
class Counts:
    created: int = 0
    updated: int = 0
    deleted: int = 0

    def __iadd__(self, other: Counts) -> Counts:
        self.created += other.created
        self.updated += other.updated
        self.deleted += other.deleted
        return self

    def __bool__(self) -> bool:
        return bool(self.created or self.updated or self.deleted)


class TransactionService:
    """Fetches a connection's accounts and transactions from Pluggy into the database."""

    def __init__(
        self,
        session: DbSession,
        client: PluggyClient,
        settings: Settings,
        *,
        progress: Progress = ignore,
        checkpoint: Callable[..., None] = ignore,
        today: Callable[[], date] | None = None,
        run: SyncRun | None = None,
    ) -> None:
        self.session = session
        self.client = client
        self.settings = settings
        self.progress = progress
        self.checkpoint = checkpoint  # called between committed pages: lease upkeep, stop requests, progress
        self.today = today or (lambda: utcnow().date())
        # Every write is counted into the run (this one, or the one being fetched) in the same commit
        # as its rows, so a run's counts are what it stored, whichever attempt wrote them.
        self.run_id = run.id if run is not None else None

    def fetch(self, connection: Connection, run: SyncRun, *, only_account: Account | None = None) -> SyncRun:
        """Run `run` to the end, counting into it: accounts with balances, then each account's
        transactions. A failed attempt leaves the run open with what it committed: the job's retry
        resumes it from there, and a job that gives up closes it."""
        self.run_id = run.id
        run.status = "running"
        run.item_last_updated_at = connection.last_updated_at
        run.accounts = 0  # an attempt reads every account again, from where each one got to
        self.session.commit()
        # Decided once, before reading: under an ended consent every answer is empty, and empty
        # answers must not be taken for deletions (sync/consents.py).
        if consents.refresh(self.session, self.client, connection):
            return consents.close_withheld(self.session, connection, run)
        accounts = self.refresh_accounts(connection)
        if only_account is not None:
            accounts = [a for a in accounts if a.id == only_account.id]
        for account in accounts:
            counts = self.sync_account(account)
            run.accounts += 1
            self.session.commit()
            self.progress(
                f"  {account.name} ({account.type}): {counts.created} new, {counts.updated} updated, "
                f"{counts.deleted} deleted"
            )
        if only_account is None:
            read_products(ProductContext(self.session, self.client, self.settings, connection, run, self.checkpoint))
        if consents.ended_during_fetch(connection):
            return consents.close_withheld(self.session, connection, run, found=None)
        if only_account is None:
            connection.last_synced_at = utcnow()
        return runs.close_run(
            self.session, run, "partial" if connection.execution_status == "PARTIAL_SUCCESS" else "success"
        )

    def refresh_accounts(self, connection: Connection) -> list[Account]:
        """Write the item's accounts and answer the connection's own. An account whose Pluggy id is
        stored under another connection is refused: it stays as it is, with its owner."""
        rows = [account_row(data, connection.id) for data in self.client.list_accounts(connection.item_id)]
        if rows:
            insert = dialect_insert(self.session)(Account).values(rows)
            self.session.execute(
                insert.on_conflict_do_update(
                    index_elements=[Account.pluggy_id],
                    set_=updatable(insert, Account.__table__),
                    where=Account.connection_id == insert.excluded.connection_id,
                )
            )
            self.session.commit()
        pluggy_ids = {row["pluggy_id"] for row in rows}
        accounts = list(
            self.session.scalars(
                sa.select(Account)
                .where(Account.connection_id == connection.id, Account.pluggy_id.in_(pluggy_ids))
                .order_by(Account.id)
            )
        )
        if refused := len(pluggy_ids) - len(accounts):
            report_refused("account", refused, connection_id=connection.id)
        return accounts

    def sync_account(self, account: Account) -> Counts:
        started = utcnow()
        if account.transactions_watermark is None:
            since = self.today() - timedelta(days=self.settings.backfill_days)
            counts, newest = self.write_pages(
                account, self.client.iter_transactions(account.pluggy_id, date_from=since)
            )
        else:
            counts, newest = self.write_pages(
                account,
                self.client.iter_transactions(account.pluggy_id, created_at_from=account.transactions_watermark),
            )
            window_counts, window_newest, seen = self.reread_window(account)
            counts += window_counts
            newest = max_or_none(newest, window_newest)
            counts.deleted += self.tombstone_missing(account, self.window_floor(), seen)
        self.advance_watermark(account, newest, started)
        return counts

    def sync_created_since(self, account: Account, since: datetime) -> Counts:
        """Read what Pluggy ingested since a moment (transactions/created) and write it."""
        counts, _ = self.write_pages(account, self.client.iter_transactions(account.pluggy_id, created_at_from=since))
        return counts

    def sync_ids(self, account: Account, ids: Iterable[str]) -> Counts:
        """Re-read named transactions (transactions/updated) and write what changed. An id Pluggy
        no longer returns is left alone: a deletion arrives as its own event."""
        counts, _ = self.write_pages(account, self.client.iter_transactions(account.pluggy_id, ids=list(ids)))
        return counts

    def tombstone_ids(self, account: Account, ids: Iterable[str]) -> Counts:
        """Mark named transactions deleted (transactions/deleted)."""
        deleted = 0
        for chunk in chunks(list(ids), 500):
            # Session.execute is typed to answer a Result; an UPDATE's is a CursorResult, with a rowcount.
            result = self.session.execute(
                sa.update(Transaction)
                .where(
                    Transaction.account_id == account.id,
                    Transaction.pluggy_id.in_(chunk),
                    Transaction.deleted_at.is_(None),
                )
                .values(deleted_at=utcnow(), updated_at=utcnow())
            )
            deleted += cast(CursorResult, result).rowcount
        counts = Counts(deleted=deleted)
        self.count_into_run(counts)
        self.session.commit()
        metrics.count_transactions(deleted=deleted)
        if deleted:
            link_restatements(self.session, account.id)
        return counts

    def count_into_run(self, counts: Counts) -> None:
        # One UPDATE, and none for a page that changed nothing: no reload of the run per page.
        if self.run_id is None or not (counts.created or counts.updated or counts.deleted):
            return
        self.session.execute(
            sa.update(SyncRun)
            .where(SyncRun.id == self.run_id)
            .values(
                created=SyncRun.created + counts.created,
                updated=SyncRun.updated + counts.updated,
                deleted=SyncRun.deleted + counts.deleted,
            )
            .execution_options(synchronize_session=False)
        )

    def reread_window(self, account: Account) -> tuple[Counts, datetime | None, set[str]]:
        since = self.today() - timedelta(days=self.settings.lookback_days)
        seen: set[str] = set()
        pages = self.client.iter_transactions(account.pluggy_id, date_from=since)
        counts, newest = self.write_pages(account, remember_ids(pages, seen))
        return counts, newest, seen

    def window_floor(self) -> datetime:
        """The earliest date at which a missing row surely means deleted. Pluggy's dateFrom is a
        day in an unstated time zone, so the first day of the window is left out."""
        first_day = self.today() - timedelta(days=self.settings.lookback_days - 1)
        return datetime.combine(first_day, time.min, tzinfo=UTC)

    def write_pages(self, account: Account, pages: Iterable[list[dict]]) -> tuple[Counts, datetime | None]:
        counts, newest = Counts(), None
        account_id = account.id
        # Rows are made from each page on the read-ahead thread too, while the page before is written.
        for rows in read_ahead(page_rows(page, account_id) for page in pages):
            page_counts, page_newest = self.write_rows(rows)
            self.count_into_run(page_counts)
            self.session.commit()
            counts += page_counts
            newest = max_or_none(newest, page_newest)
            self.checkpoint(progressed=bool(page_counts))
        if counts.created:
            link_restatements(self.session, account_id)
        return counts, newest

    def write_rows(self, rows: list[dict]) -> tuple[Counts, datetime | None]:
        if not rows:
            return Counts(), None
        written = upsert_transactions(self.session.connection(), rows)
        if written.refused:
            account = self.session.get_one(Account, rows[0]["account_id"])
            report_refused("transaction", written.refused, connection_id=account.connection_id, account_id=account.id)
        metrics.count_transactions(created=written.created, updated=written.updated)
        newest = max((row["pluggy_created_at"] for row in rows if row["pluggy_created_at"]), default=None)
        return Counts(created=written.created, updated=written.updated), newest

    def tombstone_missing(self, account: Account, floor: datetime, seen: set[str]) -> int:
        live = self.session.scalars(
            sa.select(Transaction.pluggy_id).where(
                Transaction.account_id == account.id,
                Transaction.date >= floor,
                Transaction.deleted_at.is_(None),
            )
        )
        missing = [pluggy_id for pluggy_id in live if pluggy_id not in seen]
        if not missing or not consents.still_granted(self.session, self.client, account.connection):
            return 0  # the consent ended while we read: rows were withheld, not deleted
        return self.tombstone_ids(account, missing).deleted

    def advance_watermark(self, account: Account, newest: datetime | None, started: datetime) -> None:
        ceiling = started - WATERMARK_OVERLAP
        candidate = min(newest, ceiling) if newest else ceiling
        account.transactions_watermark = max_or_none(account.transactions_watermark, candidate)
        account.last_synced_at = utcnow()
        self.session.commit()


def report_refused(kind: str, refused: int, **our_ids: int) -> None:
    """Rows Pluggy sent whose ids are stored under another connection (accounts) or account
    (transactions): logged with our ids and how many, never the rows' data (a description is
    personal), and counted."""
    logs.event(
        log,
        f"{kind}s refused: their Pluggy ids are stored under another owner",
        logging.WARNING,
        refused=refused,
        **our_ids,
    )
    metrics.count_refused(kind, refused)


def read_ahead(pages: Iterable[list[dict]]) -> Iterator[list[dict]]:
    """Yield each page while the next one is already being fetched, so that downloading overlaps
    the database writes. One thread reads the pages, one at a time and in order."""
    iterator = iter(pages)
    fetcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead")
    # The fetching thread logs its Pluggy calls under the same job and event ids as this one.
    context = contextvars.copy_context()

    def next_page() -> list[dict] | None:
        return next(iterator, None)

    try:
        upcoming = fetcher.submit(context.run, next_page)
        while (page := upcoming.result()) is not None:
            upcoming = fetcher.submit(context.run, next_page)
            yield page
    finally:
        fetcher.shutdown(cancel_futures=True)


def remember_ids(pages: Iterable[list[dict]], seen: set[str]) -> Iterator[list[dict]]:
    for page in pages:
        seen.update(t["id"] for t in page)
        yield page


def account_row(data: dict, connection_id: int) -> dict:
    return {
        "connection_id": connection_id,
        "pluggy_id": data["id"],
        "type": data.get("type") or "UNKNOWN",
        "subtype": data.get("subtype"),
        "name": data.get("name") or data.get("marketingName") or data["id"],
        "marketing_name": data.get("marketingName"),
        "number": data.get("number"),
        "owner": data.get("owner"),
        "balance": money(data.get("balance")),
        "currency_code": data.get("currencyCode"),
        "raw": data,
        **credit_columns(values.mapping(data.get("creditData"))),
        **bank_columns(values.mapping(data.get("bankData"))),
        "created_at": utcnow(),
        "updated_at": utcnow(),
    }


def credit_columns(credit: dict) -> dict:
    """A card's creditData, typed (every key present, so each upsert rewrites them all)."""
    return {
        "credit_limit": values.money(credit.get("creditLimit")),
        "available_credit_limit": values.money(credit.get("availableCreditLimit")),
        "minimum_payment": values.money(credit.get("minimumPayment")),
        "balance_close_date": values.day(credit.get("balanceCloseDate")),
        "balance_due_date": values.day(credit.get("balanceDueDate")),
        "credit_brand": values.label(credit.get("brand"), 64),
        "credit_level": values.label(credit.get("level"), 64),
        "credit_status": values.label(credit.get("status"), 32),
    }


def bank_columns(bank: dict) -> dict:
    return {
        "transfer_number": values.label(bank.get("transferNumber"), 64),
        "closing_balance": values.money(bank.get("closingBalance")),
        "automatically_invested_balance": values.money(bank.get("automaticallyInvestedBalance")),
        "overdraft_contracted_limit": values.money(bank.get("overdraftContractedLimit")),
        "overdraft_used_limit": values.money(bank.get("overdraftUsedLimit")),
    }


def max_or_none(*values: datetime | None) -> datetime | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def chunks(values: list, size: int) -> Iterator[list]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
