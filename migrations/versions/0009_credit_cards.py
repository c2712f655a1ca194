"""Credit cards: accounts' creditData and bankData in typed columns, transactions' bill id and
installments (filled in from the stored payloads), and the cards' bills.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
MONEY = sa.Numeric(precision=18, scale=4)
HAS_BILL = sa.text("bill_id IS NOT NULL")

# The stored rows' creditCardMetadata, as the sync writes it (sync/rows.py): the bill id when it is
# a string that fits, an installment when it is a whole number that fits an INTEGER. A later re-read
# does not rewrite a row whose payload did not change, so this is done once here.


def postgresql_whole(key: str) -> str:
    value = f"(raw #>> '{{creditCardMetadata,{key}}}')::numeric"
    return (
        f"CASE WHEN jsonb_typeof(raw #> '{{creditCardMetadata,{key}}}') = 'number' "
        f"AND {value} BETWEEN 0 AND 2147483647 AND {value} = trunc({value}) THEN {value}::integer END"
    )


def sqlite_whole(key: str) -> str:
    value = f"json_extract(raw, '$.creditCardMetadata.{key}')"
    return (
        f"CASE WHEN json_type(raw, '$.creditCardMetadata.{key}') IN ('integer', 'real') "
        f"AND {value} BETWEEN 0 AND 2147483647 AND {value} = CAST({value} AS INTEGER) "
        f"THEN CAST({value} AS INTEGER) END"
    )


BACKFILL = {
    "postgresql": f"""
        UPDATE transactions SET
            bill_id = CASE WHEN jsonb_typeof(raw #> '{{creditCardMetadata,billId}}') = 'string'
                            AND length(raw #>> '{{creditCardMetadata,billId}}') <= 64
                           THEN raw #>> '{{creditCardMetadata,billId}}' END,
            installment_number = {postgresql_whole("installmentNumber")},
            total_installments = {postgresql_whole("totalInstallments")}
        WHERE jsonb_typeof(raw -> 'creditCardMetadata') = 'object'
    """,
    "sqlite": f"""
        UPDATE transactions SET
            bill_id = CASE WHEN json_type(raw, '$.creditCardMetadata.billId') = 'text'
                            AND length(json_extract(raw, '$.creditCardMetadata.billId')) <= 64
                           THEN json_extract(raw, '$.creditCardMetadata.billId') END,
            installment_number = {sqlite_whole("installmentNumber")},
            total_installments = {sqlite_whole("totalInstallments")}
        WHERE json_type(raw, '$.creditCardMetadata') = 'object'
    """,
}


def upgrade():
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("credit_limit", MONEY, nullable=True))
        batch.add_column(sa.Column("available_credit_limit", MONEY, nullable=True))
        batch.add_column(sa.Column("minimum_payment", MONEY, nullable=True))
        batch.add_column(sa.Column("balance_close_date", sa.Date(), nullable=True))
        batch.add_column(sa.Column("balance_due_date", sa.Date(), nullable=True))
        batch.add_column(sa.Column("credit_brand", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("credit_level", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("credit_status", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("transfer_number", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("closing_balance", MONEY, nullable=True))
        batch.add_column(sa.Column("automatically_invested_balance", MONEY, nullable=True))
        batch.add_column(sa.Column("overdraft_contracted_limit", MONEY, nullable=True))
        batch.add_column(sa.Column("overdraft_used_limit", MONEY, nullable=True))

    with op.batch_alter_table("transactions") as batch:
        batch.add_column(sa.Column("bill_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("installment_number", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("total_installments", sa.Integer(), nullable=True))
    op.execute(BACKFILL[op.get_bind().dialect.name])
    with op.batch_alter_table("transactions") as batch:
        batch.create_index("ix_transactions_bill_id", ["bill_id"], sqlite_where=HAS_BILL, postgresql_where=HAS_BILL)

    op.create_table(
        "bills",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("pluggy_id", sa.String(length=64), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("closing_date", sa.Date(), nullable=True),
        sa.Column("total_amount", MONEY, nullable=False),
        sa.Column("currency_code", sa.String(length=3), nullable=True),
        sa.Column("minimum_payment_amount", MONEY, nullable=True),
        sa.Column("allows_installments", sa.Boolean(), nullable=True),
        sa.Column("finance_charges", JSON, nullable=False),
        sa.Column("finance_charges_total", MONEY, nullable=False),
        sa.Column("payments", JSON, nullable=False),
        sa.Column("payments_total", MONEY, nullable=False),
        sa.Column("raw", JSON, nullable=False),
        sa.Column("pluggy_created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pluggy_updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_bills_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["connection_id"], ["connections.id"], name=op.f("fk_bills_connection_id_connections"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bills")),
        sa.UniqueConstraint("pluggy_id", name=op.f("uq_bills_pluggy_id")),
    )
    with op.batch_alter_table("bills") as batch:
        batch.create_index(batch.f("ix_bills_account_id"), ["account_id"], unique=False)
        batch.create_index("ix_bills_connection_id_due_date", ["connection_id", "due_date"], unique=False)


def downgrade():
    op.drop_table("bills")
    with op.batch_alter_table("transactions") as batch:
        batch.drop_index("ix_transactions_bill_id", sqlite_where=HAS_BILL, postgresql_where=HAS_BILL)
        batch.drop_column("total_installments")
        batch.drop_column("installment_number")
        batch.drop_column("bill_id")
    with op.batch_alter_table("accounts") as batch:
        for column in (
            "overdraft_used_limit",
            "overdraft_contracted_limit",
            "automatically_invested_balance",
            "closing_balance",
            "transfer_number",
            "credit_status",
            "credit_level",
            "credit_brand",
            "balance_due_date",
            "balance_close_date",
            "minimum_payment",
            "available_credit_limit",
            "credit_limit",
        ):
            batch.drop_column(column)
