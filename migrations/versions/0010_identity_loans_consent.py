"""Identities and loans of an item, and its Open Finance consent on the connection (whether the
item is Open Finance, the consent's id, when it was given and revoked, its products and
permissions; `consent_expires_at` is there already).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "identities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("pluggy_id", sa.String(length=64), nullable=True),
        sa.Column("full_name", sa.String(length=255), nullable=True),
        sa.Column("social_name", sa.String(length=255), nullable=True),
        sa.Column("document", sa.String(length=32), nullable=True),
        sa.Column("document_type", sa.String(length=16), nullable=True),
        sa.Column("tax_number", sa.String(length=32), nullable=True),
        sa.Column("birth_date", sa.Date(), nullable=True),
        sa.Column("job_title", sa.String(length=255), nullable=True),
        sa.Column("company_name", sa.String(length=255), nullable=True),
        sa.Column(
            "emails", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=True
        ),
        sa.Column(
            "phone_numbers",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column(
            "addresses", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=True
        ),
        sa.Column(
            "relations", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=True
        ),
        sa.Column("raw", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False),
        sa.Column("pluggy_created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pluggy_updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connections.id"],
            name=op.f("fk_identities_connection_id_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identities")),
        sa.UniqueConstraint("connection_id", name=op.f("uq_identities_connection_id")),
    )
    op.create_table(
        "loans",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("connection_id", sa.Integer(), nullable=False),
        sa.Column("pluggy_id", sa.String(length=64), nullable=False),
        sa.Column("contract_number", sa.String(length=64), nullable=True),
        sa.Column("ipoc_code", sa.String(length=128), nullable=True),
        sa.Column("product_name", sa.String(length=255), nullable=True),
        sa.Column("type", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=True),
        sa.Column("currency_code", sa.String(length=3), nullable=True),
        sa.Column("contract_amount", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column("outstanding_balance", sa.Numeric(precision=18, scale=4), nullable=True),
        sa.Column("cet", sa.Numeric(precision=12, scale=8), nullable=True),
        sa.Column("installment_periodicity", sa.String(length=32), nullable=True),
        sa.Column("total_installments", sa.Integer(), nullable=True),
        sa.Column("paid_installments", sa.Integer(), nullable=True),
        sa.Column("due_installments", sa.Integer(), nullable=True),
        sa.Column("past_due_installments", sa.Integer(), nullable=True),
        sa.Column("remaining_installments", sa.Integer(), nullable=True),
        sa.Column(
            "interest_rates",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("contract_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_installment_due_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("due_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("settlement_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("raw", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False),
        sa.Column("pluggy_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"], ["connections.id"], name=op.f("fk_loans_connection_id_connections"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_loans")),
        sa.UniqueConstraint("pluggy_id", name=op.f("uq_loans_pluggy_id")),
    )
    with op.batch_alter_table("loans", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_loans_connection_id"), ["connection_id"], unique=False)

    with op.batch_alter_table("connections", schema=None) as batch_op:
        batch_op.add_column(sa.Column("open_finance", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column("consent_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("consent_granted_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("consent_revoked_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column(
                "consent_products",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )
        batch_op.add_column(
            sa.Column(
                "consent_permissions",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )


def downgrade():
    with op.batch_alter_table("connections", schema=None) as batch_op:
        batch_op.drop_column("consent_permissions")
        batch_op.drop_column("consent_products")
        batch_op.drop_column("consent_revoked_at")
        batch_op.drop_column("consent_granted_at")
        batch_op.drop_column("consent_id")
        batch_op.drop_column("open_finance")

    with op.batch_alter_table("loans", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_loans_connection_id"))

    op.drop_table("loans")
    op.drop_table("identities")
