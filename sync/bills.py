"""Credit-card bills: each card's bills (``GET /bills?accountId=``) into the `bills` table.

Read on every fetch of an item that offers CREDIT_CARDS, for each of the connection's CREDIT
accounts: one request per card (a card has a dozen bills or so: a page), one upsert per card,
committed. A bill Pluggy lists again is updated in place (payments arrive after its due day).

A bill that closes puts its id on the card's rows (`creditCardMetadata.billId`). Rows Pluggy
re-collects come back with it through the transaction fetch; rows older than the window Pluggy
re-collects are not read again by that fetch, so a bill new to us whose period still holds stored
posted rows without a bill has that period read again (``/v2/transactions`` with dateFrom/dateTo)
and upserted: at most once per new bill, about a month of one card.

A bill Pluggy no longer lists is kept, neither deleted nor tombstoned: a bill is a closed statement,
so a shorter or empty list is a consent or history-window effect (an Open Finance consent that
ended answers empty lists), not a deletion. `last_seen_at` says when Pluggy last listed it; bills go
with their connection (ON DELETE CASCADE).
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import sqlalchemy as sa

from jobqueue import dialect_insert
from models import Account, Bill, SyncRun, Transaction
from models.base import utcnow
from models.database import DbSession
from observability import logs, metrics
from pluggy_client import PluggyNotFound

from . import values
from .bulk import upsert_transactions
from .rows import page_rows

if TYPE_CHECKING:
    from .products import ProductContext

log = logging.getLogger(__name__)

TABLE = Bill.__table__
# What an upsert never overwrites: identity, owner, first-seen time; updated_at moves only on a change.
KEEP_ON_UPDATE = {"id", "pluggy_id", "connection_id", "account_id", "created_at", "updated_at"}
# A bill's rows are dated within the month before it closes; a little more is read, to be sure.
BILL_PERIOD = timedelta(days=40)


def read(context: ProductContext) -> None:
    if not context.offers("CREDIT_CARDS"):
        return
    session, connection = context.session, context.connection
    cards = session.scalars(
        sa.select(Account).where(Account.connection_id == connection.id, Account.type == "CREDIT").order_by(Account.id)
    ).all()
    for card in cards:
        try:
            listed = context.client.list_bills(card.pluggy_id)
        except PluggyNotFound:
            # A card Pluggy no longer has (the item dropped it): nothing to read, and nothing deleted.
            logs.event(
                log, "bills not read: Pluggy does not know the card", connection_id=connection.id, account_id=card.id
            )
            continue
        rows = bill_rows(card, listed)
        known = stored_ids(session, rows)
        new = [row for row in rows if row["pluggy_id"] not in known]
        # Before the new bills are stored: a retry after a failure here finds them new again.
        for first, last in periods_to_read_again(session, card, new, context.run.started_at):
            relink(context, card, first, last)
        write_bills(session, card, rows)
        session.commit()
        context.checkpoint(progressed=bool(rows))
        logs.event(log, "bills read", connection_id=connection.id, account_id=card.id, listed=len(listed), new=len(new))


def bill_rows(card: Account, listed: list[dict]) -> list[dict]:
    now = utcnow()
    rows = {}
    for data in listed:
        row = bill_row(data, card, now)
        if row is None:
            logs.event(log, "bill skipped: no id, due date or total", logging.WARNING, account_id=card.id)
            continue
        rows[row["pluggy_id"]] = row  # a repeated id (pages that moved) is written once
    return list(rows.values())


def stored_ids(session: DbSession, rows: list[dict]) -> set[str]:
    ids = [row["pluggy_id"] for row in rows]
    return set(session.scalars(sa.select(Bill.pluggy_id).where(Bill.pluggy_id.in_(ids)))) if ids else set()


def write_bills(session: DbSession, card: Account, rows: list[dict]) -> None:
    """Upsert the card's bills. A bill whose Pluggy id is stored under another connection is
    refused (left as it is, with its owner)."""
    if not rows:
        return
    # The rows go as parameters: one compiled statement serves every card (investments.upsert).
    insert = dialect_insert(session)(Bill)
    changed = TABLE.c.raw.is_distinct_from(insert.excluded.raw)
    update: dict[str, sa.ColumnElement] = {
        c.name: insert.excluded[c.name] for c in TABLE.columns if c.name not in KEEP_ON_UPDATE
    }
    update["updated_at"] = sa.case((changed, insert.excluded.updated_at), else_=TABLE.c.updated_at)
    session.execute(
        insert.on_conflict_do_update(
            index_elements=[TABLE.c.pluggy_id],
            set_=update,
            where=TABLE.c.connection_id == insert.excluded.connection_id,
        ),
        rows,
    )
    ids = [row["pluggy_id"] for row in rows]
    ours = session.execute(
        sa.select(sa.func.count()).where(TABLE.c.pluggy_id.in_(ids), TABLE.c.account_id == card.id)
    ).scalar_one()
    if refused := len(rows) - ours:
        logs.event(
            log,
            "bills refused: their Pluggy ids are stored under another owner",
            logging.WARNING,
            refused=refused,
            connection_id=card.connection_id,
            account_id=card.id,
        )
        metrics.count_refused("bill", refused)


def periods_to_read_again(
    session: DbSession, card: Account, new: list[dict], read_since: datetime
) -> list[tuple[date, date]]:
    """The periods of these new bills that hold stored posted rows naming no bill, written before
    `read_since` (this run's start): rows Pluggy tagged when the bill closed, which the transaction
    fetch did not read again. Rows this run wrote are as Pluggy has them now: on a card's first
    sync nothing is read twice."""
    found = []
    for row in sorted(new, key=lambda row: row["due_date"]):
        days = period(row["closing_date"] or row["due_date"])
        if has_untagged_rows(session, card, days, read_since):
            found.append(days)
    return found


def period(closing: date) -> tuple[date, date]:
    """The days whose rows may fall in a bill closing that day: the month before, and a little more."""
    return closing - BILL_PERIOD, closing + timedelta(days=1)


def has_untagged_rows(session: DbSession, card: Account, days: tuple[date, date], read_since: datetime) -> bool:
    first, last = days
    untagged = sa.select(Transaction.id).where(
        Transaction.account_id == card.id,
        Transaction.updated_at < read_since,
        Transaction.bill_id.is_(None),
        Transaction.status == "POSTED",
        Transaction.deleted_at.is_(None),
        Transaction.date >= datetime.combine(first, time.min, tzinfo=UTC),
        Transaction.date < datetime.combine(last + timedelta(days=1), time.min, tzinfo=UTC),
    )
    return session.execute(sa.select(untagged.exists())).scalar_one()


def relink(context: ProductContext, card: Account, first: date, last: date) -> None:
    """Read a bill's period again, so the rows that fall in it carry its id; each page one
    upsert, committed and counted into the run."""
    pages = context.client.iter_transactions(card.pluggy_id, date_from=first, date_to=last)
    session = context.session
    for page in pages:
        rows = page_rows(page, card.id)
        if not rows:
            continue
        written = upsert_transactions(session.connection(), rows)
        if written.created or written.updated:
            session.execute(
                sa.update(SyncRun)
                .where(SyncRun.id == context.run.id)
                .values(created=SyncRun.created + written.created, updated=SyncRun.updated + written.updated)
                .execution_options(synchronize_session=False)
            )
            metrics.count_transactions(created=written.created, updated=written.updated)
        session.commit()


def bill_row(data: dict, card: Account, now: datetime) -> dict | None:
    """A bill as a table row, or None without the fields a bill cannot be stored without."""
    if not isinstance(data, dict):
        return None
    pluggy_id = values.identifier(data.get("id"))
    due_date = values.day(data.get("dueDate"))
    total = values.money(data.get("totalAmount"))
    if pluggy_id is None or due_date is None or total is None:
        return None
    charges = dicts(data.get("financeCharges"))
    payments = dicts(data.get("payments"))
    allows_installments = data.get("allowsInstallments")
    return {
        "connection_id": card.connection_id,
        "account_id": card.id,
        "pluggy_id": pluggy_id,
        "due_date": due_date,
        "closing_date": values.day(data.get("billClosingDate")),
        "total_amount": total,
        "currency_code": values.label(data.get("totalAmountCurrencyCode"), 3),
        "minimum_payment_amount": values.money(data.get("minimumPaymentAmount")),
        "allows_installments": allows_installments if isinstance(allows_installments, bool) else None,
        "finance_charges": charges,
        "finance_charges_total": total_of(charges),
        "payments": payments,
        "payments_total": total_of(payments),
        "raw": data,
        "pluggy_created_at": values.moment(data.get("createdAt")),
        "pluggy_updated_at": values.moment(data.get("updatedAt")),
        "last_seen_at": now,
        "created_at": now,
        "updated_at": now,
    }


def dicts(value) -> list[dict]:
    return [entry for entry in value if isinstance(entry, dict)] if isinstance(value, list) else []


def total_of(entries: list[dict]) -> Decimal:
    return sum((values.money(entry.get("amount")) or Decimal(0) for entry in entries), Decimal(0))
