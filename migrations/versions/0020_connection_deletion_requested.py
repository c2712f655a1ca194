"""connections.deletion_requested_at: a user's DELETE written before Pluggy is asked to delete the
item, so that the tombstone is named `user_request` whichever process makes it (sync/removal.py).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


# Plain ALTER TABLE on both engines: a batch operation would copy the table on SQLite and lose the
# change feed's trigger on it.
def upgrade():
    op.add_column("connections", sa.Column("deletion_requested_at", sa.DateTime(timezone=True), nullable=True))


def downgrade():
    op.drop_column("connections", "deletion_requested_at")
