"""Restatements: a tombstoned transaction linked to the row Pluggy created in its place.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
DELETED = sa.text("deleted_at IS NOT NULL")
REPLACES = sa.text("replaces_id IS NOT NULL")
REPLACED_BY = sa.text("replaced_by_id IS NOT NULL")


def upgrade():
    with op.batch_alter_table("transactions") as batch:
        batch.add_column(sa.Column("replaces_id", BIG_ID, nullable=True))
        batch.add_column(sa.Column("replaced_by_id", BIG_ID, nullable=True))
        batch.create_foreign_key(
            batch.f("fk_transactions_replaces_id_transactions"),
            "transactions",
            ["replaces_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_foreign_key(
            batch.f("fk_transactions_replaced_by_id_transactions"),
            "transactions",
            ["replaced_by_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_index(
            "ix_transactions_account_id_deleted_at",
            ["account_id", "deleted_at"],
            sqlite_where=DELETED,
            postgresql_where=DELETED,
        )
        batch.create_index(
            "ix_transactions_replaces_id", ["replaces_id"], sqlite_where=REPLACES, postgresql_where=REPLACES
        )
        batch.create_index(
            "ix_transactions_replaced_by_id", ["replaced_by_id"], sqlite_where=REPLACED_BY, postgresql_where=REPLACED_BY
        )


def downgrade():
    with op.batch_alter_table("transactions") as batch:
        batch.drop_index("ix_transactions_replaced_by_id", sqlite_where=REPLACED_BY, postgresql_where=REPLACED_BY)
        batch.drop_index("ix_transactions_replaces_id", sqlite_where=REPLACES, postgresql_where=REPLACES)
        batch.drop_index("ix_transactions_account_id_deleted_at", sqlite_where=DELETED, postgresql_where=DELETED)
        batch.drop_constraint(batch.f("fk_transactions_replaced_by_id_transactions"), type_="foreignkey")
        batch.drop_constraint(batch.f("fk_transactions_replaces_id_transactions"), type_="foreignkey")
        batch.drop_column("replaced_by_id")
        batch.drop_column("replaces_id")
