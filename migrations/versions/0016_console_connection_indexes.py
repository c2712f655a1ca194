"""The operator console's connections list: an index for each of its filters, newest first (the
connector by id or by name, the reported sync_status, the user found by email); the index on a
user's connections gains their id, so it serves their order too.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03
"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade():
    op.drop_index("ix_connections_user_id", table_name="connections")
    op.create_index("ix_connections_user_id_id", "connections", ["user_id", "id"])
    op.create_index("ix_connections_connector_id_id", "connections", ["connector_id", "id"])
    op.create_index("ix_connections_connector_name_id", "connections", ["connector_name", "id"])
    op.create_index(
        "ix_reported_statuses_sync_status_connection_id", "reported_statuses", ["sync_status", "connection_id"]
    )


def downgrade():
    op.drop_index("ix_reported_statuses_sync_status_connection_id", table_name="reported_statuses")
    op.drop_index("ix_connections_connector_name_id", table_name="connections")
    op.drop_index("ix_connections_connector_id_id", table_name="connections")
    op.drop_index("ix_connections_user_id_id", table_name="connections")
    op.create_index("ix_connections_user_id", "connections", ["user_id"])
