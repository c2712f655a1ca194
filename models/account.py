from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, utcnow

if TYPE_CHECKING:
    from .connection import Connection
    from .transaction import Transaction


class Account(Base):
    """A bank or credit-card account of an item, with its balance as Pluggy last reported it."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    connection_id: Mapped[int] = mapped_column(sa.ForeignKey("connections.id", ondelete="CASCADE"), index=True)
    pluggy_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    type: Mapped[str] = mapped_column(sa.String(16))
    subtype: Mapped[str | None] = mapped_column(sa.String(32))
    name: Mapped[str] = mapped_column(sa.String(255))
    marketing_name: Mapped[str | None] = mapped_column(sa.String(255))
    number: Mapped[str | None] = mapped_column(sa.String(64))
    owner: Mapped[str | None] = mapped_column(sa.String(255))
    balance: Mapped[Decimal | None]
    currency_code: Mapped[str | None] = mapped_column(sa.String(3))
    raw: Mapped[dict]

    # A card's creditData, typed for what apps filter and sum on (the rest stays in raw).
    credit_limit: Mapped[Decimal | None]
    available_credit_limit: Mapped[Decimal | None]
    minimum_payment: Mapped[Decimal | None]
    balance_close_date: Mapped[date | None]  # the current period's closing day
    balance_due_date: Mapped[date | None]  # the day its bill is due
    credit_brand: Mapped[str | None] = mapped_column(sa.String(64))
    credit_level: Mapped[str | None] = mapped_column(sa.String(64))
    credit_status: Mapped[str | None] = mapped_column(sa.String(32))
    # A bank account's bankData, likewise.
    transfer_number: Mapped[str | None] = mapped_column(sa.String(64))
    closing_balance: Mapped[Decimal | None]
    automatically_invested_balance: Mapped[Decimal | None]
    overdraft_contracted_limit: Mapped[Decimal | None]
    overdraft_used_limit: Mapped[Decimal | None]

    # Pluggy's createdAt of the newest transaction we have committed: the next fetch starts here.
    transactions_watermark: Mapped[datetime | None]
    last_synced_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    connection: Mapped[Connection] = relationship(back_populates="accounts")
    transactions: Mapped[list[Transaction]] = relationship(back_populates="account", passive_deletes=True)

    def __repr__(self) -> str:
        return f"<Account {self.id} {self.pluggy_id} {self.type}>"
