"""Investments and their movements (Pluggy's /investments and /investments/{id}/transactions),
each tied to its connection and deleted with it; tombstones for rows Pluggy no longer returns.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "investments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("pluggy_id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("subtype", sa.String(length=32), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=True),
        sa.Column("isin", sa.String(length=16), nullable=True),
        sa.Column("number", sa.String(length=64), nullable=True),
        sa.Column("issuer", sa.String(length=255), nullable=True),
        sa.Column("issuer_cnpj", sa.String(length=32), nullable=True),
        sa.Column("owner", sa.String(length=255), nullable=True),
        sa.Column("currency_code", sa.String(length=3), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=True),
        sa.Column("balance", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column("amount", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column("amount_original", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column("amount_profit", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column("amount_withdrawal", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column("taxes", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column("taxes2", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column("quantity", sa.Numeric(precision=28, scale=10), nullable=True),
        sa.Column("value", sa.Numeric(precision=28, scale=10), nullable=True),
        sa.Column("rate", sa.Numeric(precision=18, scale=8), nullable=True),
        sa.Column("rate_type", sa.String(length=32), nullable=True),
        sa.Column("fixed_annual_rate", sa.Numeric(precision=18, scale=8), nullable=True),
        sa.Column("last_month_rate", sa.Numeric(precision=18, scale=8), nullable=True),
        sa.Column("annual_rate", sa.Numeric(precision=18, scale=8), nullable=True),
        sa.Column("last_twelve_months_rate", sa.Numeric(precision=18, scale=8), nullable=True),
        sa.Column("date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("due_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("issue_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("purchase_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("raw", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False),
        sa.Column("movements_key", sa.String(length=255), nullable=True),
        sa.Column("movements_read_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_investments_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_investments")),
        sa.UniqueConstraint("pluggy_id", name=op.f("uq_investments_pluggy_id")),
    )
    with op.batch_alter_table("investments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_investments_connection_id"), ["connection_id"], unique=False)

    op.create_table(
        "investment_transactions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("investment_id", sa.Integer(), nullable=False),
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("pluggy_id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=True),
        sa.Column("movement_type", sa.String(length=16), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("quantity", sa.Numeric(precision=28, scale=10), nullable=True),
        sa.Column("value", sa.Numeric(precision=28, scale=10), nullable=True),
        sa.Column("amount", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column("net_amount", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column("date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trade_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("raw", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_investment_transactions_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["investment_id"],
            ["investments.id"],
            name=op.f("fk_investment_transactions_investment_id_investments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_investment_transactions")),
        sa.UniqueConstraint("pluggy_id", name=op.f("uq_investment_transactions_pluggy_id")),
    )
    with op.batch_alter_table("investment_transactions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_investment_transactions_connection_id"), ["connection_id"], unique=False)
        batch_op.create_index("ix_investment_transactions_investment_id_date", ["investment_id", "date"], unique=False)


def downgrade():
    with op.batch_alter_table("investment_transactions", schema=None) as batch_op:
        batch_op.drop_index("ix_investment_transactions_investment_id_date")
        batch_op.drop_index(batch_op.f("ix_investment_transactions_connection_id"))

    op.drop_table("investment_transactions")
    with op.batch_alter_table("investments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_investments_connection_id"))

    op.drop_table("investments")
