"""Credit-card bills: each card's bills (``GET /bills?accountId=``) into the `bills` table.

Read on every fetch of an item that offers CREDIT_CARDS, for each of the connection's CREDIT
accounts: one request per card (a card has a dozen bills or so, a page or two), one upsert per
card, committed. A bill Pluggy lists again is updated in place (payments arrive after its due day),
and only when its payload changed is it counted as updated.

A bill Pluggy no longer lists is kept, never deleted nor tombstoned: a bill is a closed statement,
so a shorter or empty list is a consent or history-window effect (an Open Finance consent that
ended answers empty lists), not a deletion. `last_seen_at` says when Pluggy last listed it; bills go
with their connection (ON DELETE CASCADE).
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import sqlalchemy as sa

from jobqueue import dialect_insert
from models import Account, Bill
from models.base import utcnow
from models.database import DbSession
from observability import logs, metrics
from pluggy_client import PluggyNotFound, timestamp

from . import values

if TYPE_CHECKING:
    from .products import ProductContext

log = logging.getLogger(__name__)

TABLE = Bill.__table__
# What an upsert never overwrites: identity, owner, first-seen time.
KEEP_ON_UPDATE = {"id", "pluggy_id", "connection_id", "account_id", "created_at", "updated_at"}


def read(context: ProductContext) -> None:
    if not context.offers("CREDIT_CARDS"):
        return
    session, connection = context.session, context.connection
    cards = session.scalars(
        sa.select(Account)
        .where(Account.connection_id == connection.id, Account.type == "CREDIT")
        .order_by(Account.id)
    ).all()
    for card in cards:
        try:
            listed = context.client.list_bills(card.pluggy_id)
        except PluggyNotFound:
            # A card Pluggy no longer has (the item dropped it): nothing to read, and nothing deleted.
            logs.event(log, "bills not read: Pluggy does not know the card", connection_id=connection.id, account_id=card.id)
            continue
        written = write_bills(session, card, listed)
        session.commit()
        logs.event(log, "bills read", connection_id=connection.id, account_id=card.id, listed=len(listed), written=written)


def write_bills(session: DbSession, card: Account, listed: list[dict]) -> int:
    """Upsert the card's bills as listed; answers how many were new or changed. A bill whose
    Pluggy id is stored under another connection is refused (left as it is, with its owner)."""
    now = utcnow()
    rows = {}
    for data in listed:
        row = bill_row(data, card, now)
        if row is None:
            logs.event(log, "bill skipped: no id, due date or total", logging.WARNING, account_id=card.id)
            continue
        rows[row["pluggy_id"]] = row  # a repeated id (pages that moved) is written once
    if not rows:
        return 0
    insert = dialect_insert(session)(Bill).values(list(rows.values()))
    changed = TABLE.c.raw.is_distinct_from(insert.excluded.raw)
    update = {column.name: insert.excluded[column.name] for column in TABLE.columns if column.name not in KEEP_ON_UPDATE}
    update["updated_at"] = sa.case((changed, insert.excluded.updated_at), else_=TABLE.c.updated_at)
    session.execute(
        insert.on_conflict_do_update(
            index_elements=[TABLE.c.pluggy_id],
            set_=update,
            where=TABLE.c.connection_id == insert.excluded.connection_id,
        )
    )
    ours = session.execute(
        sa.select(sa.func.count()).where(
            TABLE.c.pluggy_id.in_(list(rows)), TABLE.c.account_id == card.id, TABLE.c.updated_at == now
        )
    ).scalar_one()
    stored = session.execute(
        sa.select(sa.func.count()).where(TABLE.c.pluggy_id.in_(list(rows)), TABLE.c.connection_id == card.connection_id)
    ).scalar_one()
    if refused := len(rows) - stored:
        logs.event(
            log,
            "bills refused: their Pluggy ids are stored under another owner",
            logging.WARNING,
            refused=refused,
            connection_id=card.connection_id,
            account_id=card.id,
        )
        metrics.count_refused("bill", refused)
    return ours


def bill_row(data: dict, card: Account, now: datetime) -> dict | None:
    """A bill as a table row, or None without the fields a bill cannot be stored without."""
    if not isinstance(data, dict):
        return None
    pluggy_id, due_date, total = values.identifier(data.get("id")), values.day(data.get("dueDate")), values.money(
        data.get("totalAmount")
    )
    if pluggy_id is None or due_date is None or total is None:
        return None
    charges = dicts(data.get("financeCharges"))
    payments = dicts(data.get("payments"))
    return {
        "connection_id": card.connection_id,
        "account_id": card.id,
        "pluggy_id": pluggy_id,
        "due_date": due_date,
        "closing_date": values.day(data.get("billClosingDate")),
        "total_amount": total,
        "currency_code": values.label(data.get("totalAmountCurrencyCode"), 3),
        "minimum_payment_amount": values.money(data.get("minimumPaymentAmount")),
        "allows_installments": data.get("allowsInstallments") if isinstance(data.get("allowsInstallments"), bool) else None,
        "finance_charges": charges,
        "finance_charges_total": total_of(charges),
        "payments": payments,
        "payments_total": total_of(payments),
        "raw": data,
        "pluggy_created_at": moment(data.get("createdAt")),
        "pluggy_updated_at": moment(data.get("updatedAt")),
        "last_seen_at": now,
        "created_at": now,
        "updated_at": now,
    }


def dicts(value) -> list[dict]:
    return [entry for entry in value if isinstance(entry, dict)] if isinstance(value, list) else []


def total_of(entries: list[dict]) -> Decimal:
    return sum((values.money(entry.get("amount")) or Decimal(0) for entry in entries), Decimal(0))


def moment(value) -> datetime | None:
    try:
        return timestamp(value) if isinstance(value, str) else None
    except ValueError:
        return None
