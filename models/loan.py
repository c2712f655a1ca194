from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, JSONType, utcnow

if TYPE_CHECKING:
    from .connection import Connection

# Rates are fractions (0.2196 a year) with more digits than money keeps.
Rate = sa.Numeric(12, 8, asdecimal=True)


class Loan(Base):
    """A loan or financing contract of an item (Pluggy's /loans): amounts, installments, rates.
    `deleted_at` marks one Pluggy stopped listing (settled, or gone from the institution)."""

    __tablename__ = "loans"

    id: Mapped[int] = mapped_column(primary_key=True)
    connection_id: Mapped[int] = mapped_column(sa.ForeignKey("connections.id", ondelete="CASCADE"), index=True)
    pluggy_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    contract_number: Mapped[str | None] = mapped_column(sa.String(64))
    ipoc_code: Mapped[str | None] = mapped_column(sa.String(128))
    product_name: Mapped[str | None] = mapped_column(sa.String(255))
    type: Mapped[str | None] = mapped_column(sa.String(64))
    kind: Mapped[str | None] = mapped_column(sa.String(32))
    currency_code: Mapped[str | None] = mapped_column(sa.String(3))
    contract_amount: Mapped[Decimal | None]
    outstanding_balance: Mapped[Decimal | None]
    cet: Mapped[Decimal | None] = mapped_column(Rate)  # total effective cost, a yearly fraction
    installment_periodicity: Mapped[str | None] = mapped_column(sa.String(32))
    total_installments: Mapped[int | None]
    paid_installments: Mapped[int | None]
    due_installments: Mapped[int | None]
    past_due_installments: Mapped[int | None]
    remaining_installments: Mapped[int | None]
    interest_rates: Mapped[list | None] = mapped_column(JSONType)
    contract_date: Mapped[datetime | None]
    first_installment_due_date: Mapped[datetime | None]
    due_date: Mapped[datetime | None]  # the last installment's
    settlement_date: Mapped[datetime | None]
    raw: Mapped[dict]

    pluggy_date: Mapped[datetime | None]  # when the institution reported it
    deleted_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    connection: Mapped[Connection] = relationship()

    def __repr__(self) -> str:
        return f"<Loan {self.id} {self.pluggy_id}>"
