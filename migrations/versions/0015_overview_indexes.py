"""The console's overview reads the last hour of webhooks and the last day of sync runs: indexes on
when a webhook was received and processed, and on when a run started, so those reads stay within
their window however many rows the tables hold. It counts live connections by status as every
reported status but the tombstones': a partial index finds those.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

DELETED = sa.text("deleted_at IS NOT NULL")


def upgrade():
    op.create_index("ix_webhook_events_received_at", "webhook_events", ["received_at"])
    op.create_index("ix_webhook_events_processed_at", "webhook_events", ["processed_at"])
    op.create_index("ix_sync_runs_started_at_status", "sync_runs", ["started_at", "status"])
    op.create_index("ix_connections_deleted_id", "connections", ["id"], sqlite_where=DELETED, postgresql_where=DELETED)


def downgrade():
    op.drop_index("ix_connections_deleted_id", table_name="connections", sqlite_where=DELETED, postgresql_where=DELETED)
    op.drop_index("ix_sync_runs_started_at_status", table_name="sync_runs")
    op.drop_index("ix_webhook_events_processed_at", table_name="webhook_events")
    op.drop_index("ix_webhook_events_received_at", table_name="webhook_events")
