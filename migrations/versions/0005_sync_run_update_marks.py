"""Sync runs remember when Pluggy accepted their item update, and which of the item's updates they
fetched: a run whose PATCH never reached Pluggy can be told apart from one Pluggy is working on, and
a late webhook of an update already fetched joins the run that fetched it instead of opening another.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("sync_runs") as batch:
        batch.add_column(sa.Column("item_update_accepted_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("item_last_updated_at", sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table("sync_runs") as batch:
        batch.drop_column("item_last_updated_at")
        batch.drop_column("item_update_accepted_at")
