from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, utcnow

# 64-bit on PostgreSQL; SQLite only auto-increments an INTEGER primary key.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# Quotas and unit prices carry more decimals than money (fund quotas, fractional units).
Quantity = sa.Numeric(28, 10, asdecimal=True)
# Pluggy's rates are percentages (110.0 = 110% of CDI, 0.24 = 0.24% last month).
Rate = sa.Numeric(18, 8, asdecimal=True)


class Investment(Base):
    """One of an item's investments as Pluggy last listed it. One that a complete, non-empty list
    no longer holds is tombstoned (`deleted_at`), not deleted."""

    __tablename__ = "investments"

    id: Mapped[int] = mapped_column(primary_key=True)
    connection_id: Mapped[int] = mapped_column(sa.ForeignKey("connections.id", ondelete="CASCADE"), index=True)
    pluggy_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    type: Mapped[str] = mapped_column(sa.String(32))  # FIXED_INCOME, EQUITY, MUTUAL_FUND... in Pluggy's words
    subtype: Mapped[str | None] = mapped_column(sa.String(32))
    name: Mapped[str] = mapped_column(sa.String(255))
    code: Mapped[str | None] = mapped_column(sa.String(64))  # a ticker, or a fund's CNPJ
    isin: Mapped[str | None] = mapped_column(sa.String(16))
    number: Mapped[str | None] = mapped_column(sa.String(64))
    issuer: Mapped[str | None] = mapped_column(sa.String(255))
    issuer_cnpj: Mapped[str | None] = mapped_column(sa.String(32))
    owner: Mapped[str | None] = mapped_column(sa.String(255))
    currency_code: Mapped[str | None] = mapped_column(sa.String(3))
    status: Mapped[str | None] = mapped_column(sa.String(32))  # ACTIVE, PENDING, TOTAL_WITHDRAWAL

    balance: Mapped[Decimal | None]  # net: what it is worth after taxes
    amount: Mapped[Decimal | None]  # gross
    amount_original: Mapped[Decimal | None]  # what was put in
    amount_profit: Mapped[Decimal | None]
    amount_withdrawal: Mapped[Decimal | None]
    taxes: Mapped[Decimal | None]
    taxes2: Mapped[Decimal | None]
    quantity: Mapped[Decimal | None] = mapped_column(Quantity)
    value: Mapped[Decimal | None] = mapped_column(Quantity)  # the unit (quota) value at `date`
    rate: Mapped[Decimal | None] = mapped_column(Rate)
    rate_type: Mapped[str | None] = mapped_column(sa.String(32))
    fixed_annual_rate: Mapped[Decimal | None] = mapped_column(Rate)
    last_month_rate: Mapped[Decimal | None] = mapped_column(Rate)
    annual_rate: Mapped[Decimal | None] = mapped_column(Rate)
    last_twelve_months_rate: Mapped[Decimal | None] = mapped_column(Rate)
    date: Mapped[datetime | None]  # the date of `value`
    due_date: Mapped[datetime | None]
    issue_date: Mapped[datetime | None]
    purchase_date: Mapped[datetime | None]
    raw: Mapped[dict]

    # What the position stood at (quantity, amount originally invested, status) when its movements
    # were last read in full, and when: a new movement moves the first, time the second.
    movements_key: Mapped[str | None] = mapped_column(sa.String(255))
    movements_read_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:
        return f"<Investment {self.id} {self.pluggy_id} {self.type} {self.balance}>"


class InvestmentTransaction(Base):
    """A movement of an investment (a purchase, a redemption, a tax...) as Pluggy last returned it.
    One that a full read of its investment's movements no longer returns is tombstoned."""

    __tablename__ = "investment_transactions"
    __table_args__ = (
        # Serves listing an investment's movements newest first, and finding the ones not seen.
        sa.Index("ix_investment_transactions_investment_id_date", "investment_id", "date"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    investment_id: Mapped[int] = mapped_column(sa.ForeignKey("investments.id", ondelete="CASCADE"))
    connection_id: Mapped[int] = mapped_column(sa.ForeignKey("connections.id", ondelete="CASCADE"), index=True)
    pluggy_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    type: Mapped[str | None] = mapped_column(sa.String(32))  # BUY, SELL, TAX, TRANSFER, INTEREST...
    movement_type: Mapped[str | None] = mapped_column(sa.String(16))  # CREDIT (into the position) or DEBIT
    description: Mapped[str | None] = mapped_column(sa.Text)
    quantity: Mapped[Decimal | None] = mapped_column(Quantity)
    value: Mapped[Decimal | None] = mapped_column(Quantity)  # the unit value
    amount: Mapped[Decimal | None]
    net_amount: Mapped[Decimal | None]
    date: Mapped[datetime]
    trade_date: Mapped[datetime | None]
    raw: Mapped[dict]

    last_seen_at: Mapped[datetime | None]  # the start of the last full read that returned it
    deleted_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:
        return f"<InvestmentTransaction {self.id} {self.pluggy_id} {self.type} {self.amount}>"
