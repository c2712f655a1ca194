from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, JSONType, utcnow


class Bill(Base):
    """A credit-card bill (a closed statement) as Pluggy last listed it. Kept when Pluggy stops
    listing it: a bill cannot be un-issued, and an empty or shorter list is a consent or window
    effect; `last_seen_at` tells when Pluggy last listed it."""

    __tablename__ = "bills"
    __table_args__ = (
        # Serves the connection's bills, newest due first.
        sa.Index("ix_bills_connection_id_due_date", "connection_id", "due_date"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    connection_id: Mapped[int] = mapped_column(sa.ForeignKey("connections.id", ondelete="CASCADE"))
    account_id: Mapped[int] = mapped_column(sa.ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    pluggy_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    due_date: Mapped[date]
    closing_date: Mapped[date | None]
    total_amount: Mapped[Decimal]
    currency_code: Mapped[str | None] = mapped_column(sa.String(3))
    minimum_payment_amount: Mapped[Decimal | None]
    allows_installments: Mapped[bool | None]
    # Pluggy's lists as sent, and their sums (in the bill's currency, as Pluggy gives them).
    finance_charges: Mapped[list[dict]] = mapped_column(JSONType)
    finance_charges_total: Mapped[Decimal]
    payments: Mapped[list[dict]] = mapped_column(JSONType)
    payments_total: Mapped[Decimal]
    raw: Mapped[dict]

    pluggy_created_at: Mapped[datetime | None]
    pluggy_updated_at: Mapped[datetime | None]
    last_seen_at: Mapped[datetime]  # the last read whose list had it
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"<Bill {self.id} {self.pluggy_id} {self.due_date} {self.total_amount}>"
