from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, partial_index, utcnow

if TYPE_CHECKING:
    from .account import Account

# 64-bit on PostgreSQL; SQLite only auto-increments an INTEGER primary key.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class Transaction(Base):
    """A transaction as Pluggy last returned it. Rows Pluggy drops are tombstoned, not deleted."""

    __tablename__ = "transactions"
    __table_args__ = (
        # Serves listing by account and date, and the re-read window that finds deletions.
        sa.Index("ix_transactions_account_id_date", "account_id", "date"),
        # Serves a bill's rows (the `bill_id=` filter, a bill with its transactions); only card rows have one.
        partial_index("ix_transactions_bill_id", "bill_id", where="bill_id IS NOT NULL"),
        # Serve the restatement matching (sync/restatements.py: an account's recent tombstones) and
        # the foreign keys' ON DELETE SET NULL when rows go (few rows are linked: partial indexes).
        partial_index(
            "ix_transactions_account_id_deleted_at", "account_id", "deleted_at", where="deleted_at IS NOT NULL"
        ),
        partial_index("ix_transactions_replaces_id", "replaces_id", where="replaces_id IS NOT NULL"),
        partial_index("ix_transactions_replaced_by_id", "replaced_by_id", where="replaced_by_id IS NOT NULL"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("accounts.id", ondelete="CASCADE"))
    pluggy_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    date: Mapped[datetime]
    description: Mapped[str] = mapped_column(sa.Text)
    description_raw: Mapped[str | None] = mapped_column(sa.Text)
    amount: Mapped[Decimal]
    amount_in_account_currency: Mapped[Decimal | None]
    balance: Mapped[Decimal | None]
    currency_code: Mapped[str | None] = mapped_column(sa.String(3))
    type: Mapped[str | None] = mapped_column(sa.String(16))
    status: Mapped[str | None] = mapped_column(sa.String(16))
    category: Mapped[str | None] = mapped_column(sa.String(255))
    category_id: Mapped[str | None] = mapped_column(sa.String(32))
    provider_code: Mapped[str | None] = mapped_column(sa.String(255))
    provider_id: Mapped[str | None] = mapped_column(sa.String(255))
    operation_type: Mapped[str | None] = mapped_column(sa.String(64))
    # A card row's creditCardMetadata: the Pluggy id of the bill it falls in, and its installment.
    bill_id: Mapped[str | None] = mapped_column(sa.String(64))
    installment_number: Mapped[int | None]
    total_installments: Mapped[int | None]
    raw: Mapped[dict]

    # A restatement (sync/restatements.py): Pluggy deleted a row and created its replacement under a
    # new id. Our links, never written by an upsert (sync/bulk.py KEEP_ON_UPDATE).
    replaces_id: Mapped[int | None] = mapped_column(BigId, sa.ForeignKey("transactions.id", ondelete="SET NULL"))
    replaced_by_id: Mapped[int | None] = mapped_column(BigId, sa.ForeignKey("transactions.id", ondelete="SET NULL"))

    pluggy_created_at: Mapped[datetime | None]  # when Pluggy ingested it: the watermark's unit
    pluggy_updated_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    account: Mapped[Account] = relationship(back_populates="transactions")
    # Loaded with the rows they link (one IN query per listed page), for the API's Pluggy ids.
    replaces: Mapped[Transaction | None] = relationship(
        foreign_keys=[replaces_id], remote_side=[id], lazy="selectin", viewonly=True
    )
    replaced_by: Mapped[Transaction | None] = relationship(
        foreign_keys=[replaced_by_id], remote_side=[id], lazy="selectin", viewonly=True
    )

    # The API's names for the links; the change feed's rows carry columns of these names instead.
    @property
    def replaces_pluggy_id(self) -> str | None:
        return None if self.replaces is None else self.replaces.pluggy_id

    @property
    def replaced_by_pluggy_id(self) -> str | None:
        return None if self.replaced_by is None else self.replaced_by.pluggy_id

    def __repr__(self) -> str:
        return f"<Transaction {self.id} {self.pluggy_id} {self.amount} {self.status}>"
