"""Deleted connections stay as tombstones that say why (`deleted_reason`) and when their copied data
was removed (`data_removed_at`); a connector's status is recorded under its id as text, whatever JSON
type the webhook spelled it in.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

DELETED_REASONS = "deleted_reason IN ('item_deleted', 'item_not_found', 'user_request')"


def upgrade():
    with op.batch_alter_table("connections") as batch:
        batch.add_column(sa.Column("deleted_reason", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("data_removed_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_check_constraint(op.f("ck_connections_deleted_reason"), DELETED_REASONS)
    # Connections deleted before this revision were marked by the item/deleted webhook or the sweep.
    op.execute("UPDATE connections SET deleted_reason = 'item_deleted' WHERE deleted_at IS NOT NULL")
    with op.batch_alter_table("connector_statuses") as batch:
        batch.alter_column(
            "connector_id",
            existing_type=sa.Integer(),
            type_=sa.String(length=255),
            existing_nullable=False,
            postgresql_using="connector_id::text",
        )


def downgrade():
    # Only ids that are whole numbers fit the older integer key.
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DELETE FROM connector_statuses WHERE connector_id !~ '^[0-9]{1,9}$'")
    else:
        op.execute(
            "DELETE FROM connector_statuses WHERE NOT (connector_id GLOB '[0-9]*' "
            "AND connector_id NOT GLOB '*[^0-9]*' AND length(connector_id) <= 9)"
        )
    with op.batch_alter_table("connector_statuses") as batch:
        batch.alter_column(
            "connector_id",
            existing_type=sa.String(length=255),
            type_=sa.Integer(),
            existing_nullable=False,
            postgresql_using="connector_id::integer",
        )
    with op.batch_alter_table("connections") as batch:
        batch.drop_constraint(op.f("ck_connections_deleted_reason"), type_="check")
        batch.drop_column("data_removed_at")
        batch.drop_column("deleted_reason")
