"""Dead jobs get a partial index: health checks and metrics count them on every call, and without
it that count reads the whole jobs table, done jobs included.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

DEAD_ONLY = sa.text("status = 'dead'")


def upgrade():
    op.create_index("ix_jobs_dead_id", "jobs", ["id"], sqlite_where=DEAD_ONLY, postgresql_where=DEAD_ONLY)


def downgrade():
    op.drop_index("ix_jobs_dead_id", table_name="jobs", sqlite_where=DEAD_ONLY, postgresql_where=DEAD_ONLY)
