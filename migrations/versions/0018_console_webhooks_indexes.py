"""The console's webhooks pages: an index for each filter of the inbox (status, event type, item)
and of the deliveries (status, and status with endpoint), each ending with the id the lists are
ordered by. The item's replaces the index on item_id alone, which it serves as well.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03
"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_webhook_events_status_id", "webhook_events", ["status", "id"])
    op.create_index("ix_webhook_events_type_id", "webhook_events", ["event", "id"])
    op.create_index("ix_webhook_events_item_id_id", "webhook_events", ["item_id", "id"])
    op.drop_index("ix_webhook_events_item_id", table_name="webhook_events")
    op.create_index("ix_webhook_deliveries_status_id", "webhook_deliveries", ["status", "id"])
    op.create_index(
        "ix_webhook_deliveries_endpoint_id_status_id", "webhook_deliveries", ["endpoint_id", "status", "id"]
    )


def downgrade():
    op.drop_index("ix_webhook_deliveries_endpoint_id_status_id", table_name="webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_status_id", table_name="webhook_deliveries")
    op.create_index("ix_webhook_events_item_id", "webhook_events", ["item_id"])
    op.drop_index("ix_webhook_events_item_id_id", table_name="webhook_events")
    op.drop_index("ix_webhook_events_type_id", table_name="webhook_events")
    op.drop_index("ix_webhook_events_status_id", table_name="webhook_events")
