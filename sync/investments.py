"""Bringing an item's investments and their movements into the database (Pluggy's INVESTMENTS and
INVESTMENTS_TRANSACTIONS products).

On every fetch of an item that offers INVESTMENTS, `/investments?itemId=` is read page by page;
each page is upserted in one statement and committed. When the item also offers
INVESTMENTS_TRANSACTIONS, the movements of an investment are read again, all of them (Pluggy's
`/investments/{id}/transactions` takes no date filter), only when

- the investment is new, or its movements were never read in full;
- its position moved: quantity, amount originally invested or status differ from what they were at
  the last full read (a purchase, a sale, a transfer, a redemption moves them; the balance and the
  gross amount do not count, since prices and interest move those every day);
- or the last full read is older than MOVEMENTS_REREAD_AFTER, which catches what moves none of them
  (interest, taxes, a movement Pluggy restated under a new id).

So a fetch costs one call per page of investments plus, for the investments due, one call per page
of their movements: a week of daily syncs of an item with unchanged positions reads each
investment's movements once.

Rows Pluggy no longer returns are tombstoned (`deleted_at`), never deleted: an investment missing
from a complete, non-empty list; a movement missing from a complete, non-empty read of its
investment's movements (so a restated movement leaves one live row, the replacement), and only
once the item's Open Finance consent, read again, still stands (`ProductContext.may_tombstone`). An empty
answer deletes nothing: Pluggy answers empty data once an Open Finance consent has expired or been
revoked, which is not a deletion. A row stored under another connection (or investment) is refused,
as for transactions. A row that comes back is live again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult

from jobqueue import dialect_insert
from models import Investment, InvestmentTransaction
from models.base import dump_json, utcnow
from observability import logs, metrics
from pluggy_client import PluggyNotFound

from . import values

if TYPE_CHECKING:  # products.py lists this module's reader
    from .products import ProductContext

# A full read of an investment's movements at least this often, even when its position did not
# move: a week bounds how long a restated, taxed or interest movement can be missing, for the cost of
# one read of each investment's movements a week (a few pages at most: movements come 500 a page).
MOVEMENTS_REREAD_AFTER = timedelta(days=7)
# Columns an upsert never overwrites: identity, owner, first-seen time and our own read state.
KEEP_ON_UPDATE = frozenset(
    {"id", "pluggy_id", "connection_id", "investment_id", "created_at", "movements_key", "movements_read_at"}
)
LARGEST_MONEY = Decimal(10) ** 14  # NUMERIC(18, 4)
LARGEST_QUANTITY = Decimal(10) ** 18  # NUMERIC(28, 10)
LARGEST_RATE = Decimal(10) ** 10  # NUMERIC(18, 8)

log = logging.getLogger(__name__)


@dataclass
class Tally:
    investments: int = 0
    created: int = 0
    updated: int = 0
    deleted: int = 0
    movements_read: int = 0  # investments whose movements were read
    movements_created: int = 0
    movements_updated: int = 0
    movements_deleted: int = 0


def read(context: ProductContext) -> None:
    """The product reader (sync/products.py READERS)."""
    if context.offers("INVESTMENTS"):
        InvestmentReader(context).read()


class InvestmentReader:
    def __init__(self, context: ProductContext) -> None:
        self.session = context.session
        self.client = context.client
        self.connection_id = context.connection.id
        self.item_id = context.connection.item_id
        self.with_movements = context.offers("INVESTMENTS_TRANSACTIONS")
        self.may_tombstone = context.may_tombstone
        self.checkpoint = context.checkpoint
        self.tally = Tally()

    def read(self) -> Tally:
        started = utcnow()
        seen: set[str] = set()  # one item's investments: tens, not a history
        for page in self.client.iter_investments(self.item_id):
            seen.update(self.write_page(page, started))
        # Only a complete list (every page read: a failure raises before this) that holds something.
        if seen:
            self.tally.deleted = self.tombstone_investments(seen)
        logs.event(log, "investments read", connection_id=self.connection_id, **vars(self.tally))
        return self.tally

    def write_page(self, page: list[dict], started: datetime) -> list[str]:
        now = utcnow()
        rows = unique(investment_row(data, self.connection_id, now) for data in page)
        if not rows:
            return []
        ids = [row["pluggy_id"] for row in rows]
        owners = self.owners(Investment.connection_id, ids)
        ours = [row for row in rows if owners.get(row["pluggy_id"], self.connection_id) == self.connection_id]
        self.refused("investment", len(rows) - len(ours))
        created, updated = upsert(self.session, Investment.__table__, ours, "connection_id", now)
        self.session.commit()
        self.checkpoint(progressed=bool(created or updated))
        self.tally.investments += len(ours)
        self.tally.created += created
        self.tally.updated += updated
        if self.with_movements:
            keys = {row["pluggy_id"]: movements_key(row["raw"]) for row in ours}
            for investment_id, pluggy_id, key, read_at in self.stored_reads(list(keys)):
                if movements_due(key, keys[pluggy_id], read_at, started):
                    self.read_movements(investment_id, pluggy_id, keys[pluggy_id])
        return [row["pluggy_id"] for row in ours]

    def read_movements(self, investment_id: int, pluggy_id: str, key: str) -> None:
        """Every movement of one investment, a page at a time; then the ones not returned are
        tombstoned and the read is recorded. A read cut short records nothing: the next fetch
        reads the investment's movements again."""
        read_started = utcnow()
        returned = 0
        try:
            for page in self.client.iter_investment_transactions(pluggy_id):
                returned += self.write_movements(investment_id, page, read_started)
        except PluggyNotFound:
            # Gone between the list and this read: the next complete list tombstones it.
            logs.event(log, "investment gone before its movements were read", connection_id=self.connection_id)
            return
        self.tally.movements_read += 1
        if returned == 0 and self.has_live_movements(investment_id):
            # An empty answer for an investment with movements is no proof they are gone.
            logs.event(
                log, "investment movements answered empty: kept", logging.WARNING, connection_id=self.connection_id
            )
            return
        unseen = sa.and_(
            InvestmentTransaction.investment_id == investment_id,
            InvestmentTransaction.deleted_at.is_(None),
            sa.or_(InvestmentTransaction.last_seen_at.is_(None), InvestmentTransaction.last_seen_at < read_started),
        )
        if self.any(unseen):
            if not self.may_tombstone():
                return  # the consent ended meanwhile: what was not returned is withheld, not gone
            gone = self.session.execute(
                sa.update(InvestmentTransaction).where(unseen).values(deleted_at=utcnow(), updated_at=utcnow())
            )
            self.tally.movements_deleted += cast(CursorResult, gone).rowcount
        self.session.execute(
            sa.update(Investment)
            .where(Investment.id == investment_id)
            .values(movements_key=key, movements_read_at=read_started, updated_at=Investment.updated_at)
        )
        self.session.commit()

    def write_movements(self, investment_id: int, page: list[dict], read_started: datetime) -> int:
        now = utcnow()
        rows = unique(
            row for data in page if (row := movement_row(data, investment_id, self.connection_id, now)) is not None
        )
        if not rows:
            return 0
        ids = [row["pluggy_id"] for row in rows]
        owners = self.owners(InvestmentTransaction.investment_id, ids)
        ours = [row for row in rows if owners.get(row["pluggy_id"], investment_id) == investment_id]
        self.refused("investment transaction", len(rows) - len(ours))
        created, updated = upsert(self.session, InvestmentTransaction.__table__, ours, "investment_id", now)
        # Seen by this read, changed or not (updated_at stays: it says when Pluggy's data changed).
        self.session.execute(
            sa.update(InvestmentTransaction)
            .where(
                InvestmentTransaction.investment_id == investment_id,
                InvestmentTransaction.pluggy_id.in_([row["pluggy_id"] for row in ours]),
            )
            .values(last_seen_at=read_started, updated_at=InvestmentTransaction.updated_at)
        )
        self.session.commit()
        self.checkpoint(progressed=bool(created or updated))
        self.tally.movements_created += created
        self.tally.movements_updated += updated
        return len(ours)

    def tombstone_investments(self, seen: set[str]) -> int:
        unseen = sa.and_(
            Investment.connection_id == self.connection_id,
            Investment.deleted_at.is_(None),
            Investment.pluggy_id.not_in(seen),
        )
        if not self.any(unseen) or not self.may_tombstone():
            return 0
        result = self.session.execute(
            sa.update(Investment).where(unseen).values(deleted_at=utcnow(), updated_at=utcnow())
        )
        self.session.commit()
        return cast(CursorResult, result).rowcount

    def any(self, condition: sa.ColumnElement[bool]) -> bool:
        return bool(self.session.scalar(sa.select(sa.exists().where(condition))))

    def owners(self, owner: Any, ids: list[str]) -> dict[str, int]:
        """Who holds each of these Pluggy ids that is stored (its connection, or its investment)."""
        table = owner.class_
        found = self.session.execute(sa.select(table.pluggy_id, owner).where(table.pluggy_id.in_(ids)))
        return dict(found.all())  # (a Result has keys(): dict() would take it for a mapping)

    def stored_reads(self, ids: list[str]) -> list[tuple[int, str, str | None, datetime | None]]:
        found = self.session.execute(
            sa.select(Investment.id, Investment.pluggy_id, Investment.movements_key, Investment.movements_read_at)
            .where(Investment.connection_id == self.connection_id, Investment.pluggy_id.in_(ids))
            .order_by(Investment.id)
        )
        return [(row[0], row[1], row[2], row[3]) for row in found]

    def has_live_movements(self, investment_id: int) -> bool:
        live = sa.select(InvestmentTransaction.id).where(
            InvestmentTransaction.investment_id == investment_id, InvestmentTransaction.deleted_at.is_(None)
        )
        return self.session.execute(sa.select(live.exists())).scalar_one()

    def refused(self, kind: str, number: int) -> None:
        """Rows whose Pluggy ids are stored under another owner: left as they are, logged with our
        ids and how many (never their data), and counted."""
        if number:
            logs.event(
                log,
                f"{kind}s refused: their Pluggy ids are stored under another owner",
                logging.WARNING,
                refused=number,
                connection_id=self.connection_id,
            )
            metrics.count_refused(kind.replace(" ", "_"), number)


def movements_due(stored_key: str | None, key: str, read_at: datetime | None, started: datetime) -> bool:
    return read_at is None or stored_key != key or read_at <= started - MOVEMENTS_REREAD_AFTER


def movements_key(data: dict) -> str:
    """What a new movement changes in the position, as Pluggy states it."""
    return dump_json([data.get("quantity"), data.get("amountOriginal"), data.get("status")])[:255]


def upsert(session, table: sa.Table, rows: list[dict], owner: str, stamp: datetime) -> tuple[int, int]:
    """Insert the new rows and update the changed ones (Pluggy's payload differs, or the row was
    tombstoned) that belong to the same owner, in one statement. Answers (created, updated)."""
    if not rows:
        return 0, 0
    # The rows go as parameters (SQLAlchemy sends them as multi-row VALUES of its own): one compiled
    # statement serves every page, where rows in `.values()` cost a compilation of each page's
    # thousands of parameters, most of a page's time.
    insert = dialect_insert(session)(table)
    changed = sa.and_(
        table.c[owner] == insert.excluded[owner],
        sa.or_(table.c.raw.is_distinct_from(insert.excluded.raw), table.c.deleted_at.is_not(None)),
    )
    statement = insert.on_conflict_do_update(
        index_elements=[table.c.pluggy_id],
        set_={name: insert.excluded[name] for name in rows[0] if name not in KEEP_ON_UPDATE},
        where=changed,
    ).returning(table.c.created_at)
    # created_at is never overwritten, so a written row that carries this page's stamp is new.
    stamps = session.execute(statement, rows).scalars().all()
    created = sum(1 for written in stamps if written == stamp)
    return created, len(stamps) - created


def unique(rows: Iterable[dict]) -> list[dict]:
    """Once each (a page may repeat an id): the last one wins."""
    return list({row["pluggy_id"]: row for row in rows}.values())


def investment_row(data: dict, connection_id: int, now: datetime) -> dict:
    return {
        "connection_id": connection_id,
        "pluggy_id": str(data["id"]),
        "type": values.label(data.get("type"), 32) or "OTHER",
        "subtype": values.label(data.get("subtype"), 32),
        "name": values.label(data.get("name"), 255) or str(data["id"]),
        "code": values.label(data.get("code"), 64),
        "isin": values.label(data.get("isin"), 16),
        "number": values.label(data.get("number"), 64),
        "issuer": values.label(data.get("issuer"), 255),
        "issuer_cnpj": values.label(data.get("issuerCNPJ"), 32),
        "owner": values.label(data.get("owner"), 255),
        "currency_code": values.label(data.get("currencyCode"), 3),
        "status": values.label(data.get("status"), 32),
        "balance": values.money(data.get("balance"), LARGEST_MONEY),
        "amount": values.money(data.get("amount"), LARGEST_MONEY),
        "amount_original": values.money(data.get("amountOriginal"), LARGEST_MONEY),
        "amount_profit": values.money(data.get("amountProfit"), LARGEST_MONEY),
        "amount_withdrawal": values.money(data.get("amountWithdrawal"), LARGEST_MONEY),
        "taxes": values.money(data.get("taxes"), LARGEST_MONEY),
        "taxes2": values.money(data.get("taxes2"), LARGEST_MONEY),
        "quantity": values.money(data.get("quantity"), LARGEST_QUANTITY),
        "value": values.money(data.get("value"), LARGEST_QUANTITY),
        "rate": values.money(data.get("rate"), LARGEST_RATE),
        "rate_type": values.label(data.get("rateType"), 32),
        "fixed_annual_rate": values.money(data.get("fixedAnnualRate"), LARGEST_RATE),
        "last_month_rate": values.money(data.get("lastMonthRate"), LARGEST_RATE),
        "annual_rate": values.money(data.get("annualRate"), LARGEST_RATE),
        "last_twelve_months_rate": values.money(data.get("lastTwelveMonthsRate"), LARGEST_RATE),
        "date": values.moment(data.get("date")),
        "due_date": values.moment(data.get("dueDate")),
        "issue_date": values.moment(data.get("issueDate")),
        "purchase_date": values.moment(data.get("purchaseDate")),
        "raw": data,
        "deleted_at": None,
        "created_at": now,
        "updated_at": now,
    }


def movement_row(data: dict, investment_id: int, connection_id: int, now: datetime) -> dict | None:
    """A movement as a table row; None for one without a date (Pluggy requires one)."""
    when = values.moment(data.get("date")) or values.moment(data.get("tradeDate"))
    if when is None or data.get("id") is None:
        return None
    return {
        "investment_id": investment_id,
        "connection_id": connection_id,
        "pluggy_id": str(data["id"]),
        "type": values.label(data.get("type"), 32),
        "movement_type": values.label(data.get("movementType"), 16),
        "description": data.get("description") if isinstance(data.get("description"), str) else None,
        "quantity": values.money(data.get("quantity"), LARGEST_QUANTITY),
        "value": values.money(data.get("value"), LARGEST_QUANTITY),
        "amount": values.money(data.get("amount"), LARGEST_MONEY),
        "net_amount": values.money(data.get("netAmount"), LARGEST_MONEY),
        "date": when,
        "trade_date": values.moment(data.get("tradeDate")),
        "raw": data,
        "deleted_at": None,
        "created_at": now,
        "updated_at": now,
    }
