"""Connections remember what Pluggy collects for their item (its `products`), which says what the
fetch reads beyond accounts and transactions.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("connections") as batch:
        batch.add_column(
            sa.Column("products", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"))
        )


def downgrade():
    with op.batch_alter_table("connections") as batch:
        batch.drop_column("products")
